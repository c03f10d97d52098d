from django.utils.translation import gettext as _

from backups_app.humanize import human_size, human_time
from backups_app.models import BackupStatus
from backups_app.selectors import backup_to_dict, list_backups

from ._common import BackupCommand


class Command(BackupCommand):
    help = "List the backups in the catalog, newest first."

    def add_arguments(self, parser):
        self.add_database_argument(parser, "Only backups of this database alias.")
        parser.add_argument("--status", choices=BackupStatus.values, help="Only backups with this status.")
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        jobs = list_backups(database=options["database"], status=options["status"])
        if options["json"]:
            self.write_json([backup_to_dict(job) for job in jobs])
            return
        self.stdout.write(
            f"{_('ID'):>6}  {_('DATABASE'):<12} {_('STATUS'):<10} {_('TRIGGER'):<18} {_('CREATED'):<18} "
            f"{_('SIZE'):>9}  {_('FILE')}"
        )
        for job in jobs:
            self.stdout.write(
                f"{job.pk:>6}  {job.database:<12} {job.status:<10} {job.trigger:<18} "
                f"{human_time(job.created_at):<18} {human_size(job.size_bytes):>9}  {job.file_name}"
            )
