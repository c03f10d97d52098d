from django.utils.translation import gettext as _

from backups_app.humanize import human_time
from backups_app.selectors import backup_to_dict, get_backup, restore_to_dict

from ._common import BackupCommand


class Command(BackupCommand):
    help = "Show one backup: every field, and the restores made from it."

    def add_arguments(self, parser):
        parser.add_argument("backup_id", help="The backup's id.")
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        job = get_backup(options["backup_id"])
        data = backup_to_dict(job)
        restores = list(job.restores.all())
        if options["json"]:
            data["restores"] = [restore_to_dict(restore) for restore in restores]
            self.write_json(data)
            return
        # Humans read times in the server's time zone; scripts get ISO 8601 from --json.
        data.update(created=human_time(job.created_at), started=human_time(job.started_at),
                    finished=human_time(job.finished_at))
        for key, value in data.items():
            self.stdout.write(f"{key:>15}: {'' if value is None else value}")
        for restore in restores:
            self.stdout.write(f"{_('restore'):>15}: " + _(
                "#%(id)s into %(database)s, %(status)s; started %(started)s, finished %(finished)s, by %(user)s"
            ) % {
                "id": restore.pk, "database": restore.database, "status": restore.status,
                "started": human_time(restore.started_at), "finished": human_time(restore.finished_at),
                "user": restore.requested_by_name or "-",
            })
