from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BackupsAppConfig(AppConfig):
    name = "backups_app"
    verbose_name = _("Backups")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from . import tasks  # noqa: F401  (queues the tasks of requested backups and restores)
