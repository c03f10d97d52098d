import json
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _


class Command(BaseCommand):
    help = (
        "For local development (DEBUG only): create the superuser 'admin' once, keep its login in a 0600 "
        "file and print it; later runs print it again without changing anything. --reset sets a new password."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/", help="The admin URL to print.")
        parser.add_argument(
            "--login-file", default=str(settings.BASE_DIR / ".admin-login"),
            help="Where the login is kept (default: .admin-login in the project).",
        )
        parser.add_argument(
            "--reset", action="store_true", help="Set a new password (this logs the user's sessions out).",
        )

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError(_("create_local_admin only runs with DJANGO_DEBUG=true; use createsuperuser in production."))
        username, path = options["username"], options["login_file"]
        stored = read_login(path, username)
        user = get_user_model().objects.filter(username=username).first()
        if user is not None and not options["reset"]:
            # Setting a password ends the user's sessions: only do it when asked.
            if stored is None or not user.check_password(stored):
                self.stdout.write(self.style.WARNING(_(
                    "User %(user)s exists and %(path)s does not hold its password: log in with the one you "
                    "set, or run 'make admin-password' for a new one."
                ) % {"user": username, "path": path}))
                return
            password = stored
        else:
            # A login kept from an earlier database (db.sqlite3 removed) is reused for the new user.
            password = secrets.token_urlsafe(12) if options["reset"] or stored is None else stored
            user = user or get_user_model()(username=username)
            user.is_staff = user.is_superuser = user.is_active = True
            user.set_password(password)
            user.save()
            write_login(path, username, password)
        self.stdout.write(self.style.SUCCESS(
            _("Admin login: %(url)s  user %(user)s  password %(password)s")
            % {"url": options["url"], "user": username, "password": password}
        ))


def read_login(path, username):
    """Return the password kept in `path` for `username`, or None."""
    try:
        with open(path) as handle:
            login = json.load(handle)
    except (OSError, ValueError):
        return None
    return login.get("password") if isinstance(login, dict) and login.get("username") == username else None


def write_login(path, username, password):
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # O_CREAT's mode does not apply to a file that already exists
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"username": username, "password": password}, handle)
        handle.write("\n")
