from backups_app.selectors import backup_to_dict, get_backup

from ._common import BackupCommand


class Command(BackupCommand):
    help = "Show one backup: every field, and the restores made from it."

    def add_arguments(self, parser):
        parser.add_argument("backup_id", help="The backup's id.")
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        job = get_backup(options["backup_id"])
        data = backup_to_dict(job)
        data["restores"] = [
            {
                "id": restore.pk,
                "database": restore.database,
                "status": restore.status,
                "requested_by": restore.requested_by_name or None,
                "started": restore.started_at.isoformat(),
                "finished": restore.finished_at.isoformat() if restore.finished_at else None,
                "safety_backup": restore.safety_backup_id,
                "error": restore.error or None,
            }
            for restore in job.restores.all()
        ]
        if options["json"]:
            self.write_json(data)
            return
        for key, value in data.items():
            if key != "restores":
                self.stdout.write(f"{key:>15}: {'' if value is None else value}")
        for restore in data["restores"]:
            self.stdout.write(
                f"{'restore':>15}: #{restore['id']} into {restore['database']} {restore['status']} "
                f"at {restore['started']} by {restore['requested_by'] or '-'}"
            )
