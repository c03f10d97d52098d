from django.utils.translation import gettext as _

from backups_app import services
from backups_app.humanize import human_size

from ._common import BackupCommand


class Command(BackupCommand):
    help = "Show catalog totals and each database's latest successful backup."

    def add_arguments(self, parser):
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        stats = services.backup_stats()
        if options["json"]:
            self.write_json(stats)
            return
        self.stdout.write(
            _("%(total)s backups: %(completed)s completed, %(failed)s failed, %(running)s running; %(size)s stored; "
              "retention %(days)s days.")
            % {**stats, "size": human_size(stats["total_size"]), "days": stats["retention_days"]}
        )
        for database, latest in stats["databases"].items():
            hours = latest["age_seconds"] / 3600
            self.stdout.write(
                _("%(database)s: latest backup #%(id)s, %(hours).1f hours ago.")
                % {"database": database, "id": latest["id"], "hours": hours}
            )
