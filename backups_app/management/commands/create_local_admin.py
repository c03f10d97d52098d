import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _


class Command(BaseCommand):
    help = "For local development (DEBUG only): create or reset the superuser 'admin' and print its login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/", help="The admin URL to print.")

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError(_("create_local_admin only runs with DJANGO_DEBUG=true; use createsuperuser in production."))
        password = secrets.token_urlsafe(12)
        user, _created = get_user_model().objects.get_or_create(
            username=options["username"], defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        self.stdout.write(self.style.SUCCESS(
            _("Admin login: %(url)s  user %(user)s  password %(password)s")
            % {"url": options["url"], "user": user.get_username(), "password": password}
        ))
