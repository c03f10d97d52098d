from django.utils.translation import gettext as _

from backups_app import services
from backups_app.humanize import human_size
from backups_app.models import BackupTrigger, Compression
from backups_app.selectors import backup_to_dict

from ._common import BackupCommand


class Command(BackupCommand):
    help = "Back up a database into the backup storage and record it in the catalog."

    def add_arguments(self, parser):
        self.add_database_argument(parser, "The database alias to back up (default: default).")
        parser.add_argument("--description", default="", help="A note stored with the backup.")
        parser.add_argument("--compression", choices=Compression.values, help="Override BACKUP_COMPRESSION.")
        parser.add_argument(
            "--trigger", choices=[BackupTrigger.MANUAL, BackupTrigger.SCHEDULED], default=BackupTrigger.MANUAL,
            help="Who started it: manual (default) or scheduled (as the schedule records it).",
        )
        parser.add_argument(
            "--background", action="store_true",
            help="Queue the backup for a worker (manage.py backup_worker), print its id and return at once.",
        )
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        request = services.request_backup if options["background"] else services.create_backup
        job = request(
            database=options["database"] or "default",
            trigger=options["trigger"],
            description=options["description"],
            compression=options["compression"],
        )
        if options["json"]:
            self.write_json(backup_to_dict(job))
            return
        if options["background"]:
            self.stdout.write(self.style.SUCCESS(
                _("Backup #%(id)s of %(database)s is queued; follow it with: manage.py backup_show %(id)s")
                % {"id": job.pk, "database": job.database}
            ))
            return
        self.stdout.write(self.style.SUCCESS(
            _("Backup #%(id)s of %(database)s completed: %(file)s (%(size)s).")
            % {"id": job.pk, "database": job.database, "file": job.file_name, "size": human_size(job.size_bytes)}
        ))
        if options["verbosity"] >= 2:
            self.stdout.write(f"sha256 {job.checksum_sha256}\n{job.server_version}\n{job.tool_version}")
