from django.utils.translation import gettext as _

from backups_app.humanize import human_time
from backups_app.selectors import backup_to_dict, drill_to_dict, get_backup, restore_to_dict

from ._common import BackupCommand


class Command(BackupCommand):
    help = "Show one backup: every field, its last restore drill, and the restores made from it."

    def add_arguments(self, parser):
        parser.add_argument("backup_id", help="The backup's id.")
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        job = get_backup(options["backup_id"])
        data = backup_to_dict(job)
        restores = list(job.restores.all())
        drill = job.last_drill
        if options["json"]:
            data["last_drill"] = drill_to_dict(drill)
            data["restores"] = [restore_to_dict(restore) for restore in restores]
            self.write_json(data)
            return
        # Humans read times in the server's time zone; scripts get ISO 8601 from --json.
        data.update(created=human_time(job.created_at), started=human_time(job.started_at),
                    finished=human_time(job.finished_at))
        for key, value in data.items():
            self.stdout.write(f"{key:>15}: {'' if value is None else value}")
        if drill is None:
            self.stdout.write(f"{_('last drill'):>15}: " + _("never (nothing has proven yet that it restores)"))
        else:
            self.stdout.write(f"{_('last drill'):>15}: " + _(
                "#%(id)s %(status)s, finished %(finished)s, restored in %(seconds)s s, %(tables)s tables"
            ) % {"id": drill.pk, "status": drill.status, "finished": human_time(drill.finished_at),
                 "seconds": drill.restore_seconds if drill.restore_seconds is not None else "-",
                 "tables": len(drill.tables)})
            for table, counts in drill.tables.items():
                restored = "-" if counts["restored"] is None else counts["restored"]
                self.stdout.write(f"{'':>15}  {table}: {restored} / {counts['archive']}")
            for check in drill.failed_checks:
                self.stdout.write(f"{'':>15}  " + _("check failed: %(query)s -> %(result)s") % check)
            if drill.error:
                self.stdout.write(f"{'':>15}  {drill.error}")
        for restore in restores:
            self.stdout.write(f"{_('restore'):>15}: " + _(
                "#%(id)s into %(database)s, %(status)s; started %(started)s, finished %(finished)s, by %(user)s"
            ) % {
                "id": restore.pk, "database": restore.database, "status": restore.status,
                "started": human_time(restore.started_at), "finished": human_time(restore.finished_at),
                "user": restore.requested_by_name or "-",
            })
