from django.utils.translation import gettext as _

from backups_app import services
from backups_app.humanize import human_size, human_time

from ._common import BackupCommand


class Command(BackupCommand):
    help = (
        "Delete completed and failed backups older than the retention (never a database's newest completed "
        "one), and partial files left by interrupted backups."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Only list what would be deleted.")
        parser.add_argument("--retention-days", type=int, help="Override BACKUP_RETENTION_DAYS.")
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        if options["dry_run"]:
            plan = services.plan_cleanup(retention_days=options["retention_days"])
        else:
            plan = services.cleanup_backups(retention_days=options["retention_days"])
        if options["json"]:
            self.write_json({"dry_run": options["dry_run"], **plan.to_dict()})
            return
        verb = _("Would delete") if options["dry_run"] else _("Deleted")
        for job in plan.expired + plan.failed:
            self.stdout.write(f"{verb} #{job.pk} {job.database} {job.status} {human_time(job.created_at)} {job.file_name}")
        for name in plan.leftovers:
            self.stdout.write(f"{verb} {name}")
        self.stdout.write(self.style.SUCCESS(
            _("%(verb)s %(count)s backups and %(leftovers)s leftover files, %(size)s.") % {
                "verb": verb, "count": len(plan.expired) + len(plan.failed),
                "leftovers": len(plan.leftovers), "size": human_size(plan.bytes_freed),
            }
        ))
