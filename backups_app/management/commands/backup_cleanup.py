from django.utils.translation import gettext as _

from backups_app import services
from backups_app.humanize import human_size, human_time

from ._common import BackupCommand


class Command(BackupCommand):
    help = (
        "Delete completed and failed backups older than the retention that no keep rule keeps (never a "
        "database's newest completed one), and partial files left by interrupted backups. --dry-run lists what "
        "would be deleted, and each backup kept with the rules that keep it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true",
                            help="Only list what would be deleted and what is kept, and why.")
        parser.add_argument("--retention-days", type=int, help="Override BACKUP_RETENTION_DAYS.")
        parser.add_argument("--keep-daily", type=int, metavar="N", help=(
            "Override BACKUP_KEEP_DAILY: keep the newest backup of each of the N most recent days that have one."))
        parser.add_argument("--keep-weekly", type=int, metavar="N", help="Override BACKUP_KEEP_WEEKLY (ISO weeks).")
        parser.add_argument("--keep-monthly", type=int, metavar="N", help="Override BACKUP_KEEP_MONTHLY.")
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        rules = {name: options[name] for name in ("retention_days", "keep_daily", "keep_weekly", "keep_monthly")}
        if options["dry_run"]:
            plan = services.plan_cleanup(**rules)
        else:
            plan = services.cleanup_backups(**rules)
        if options["json"]:
            self.write_json({"dry_run": options["dry_run"], **plan.to_dict()})
            return
        verb = _("Would delete") if options["dry_run"] else _("Deleted")
        for job in plan.expired + plan.failed:
            self.stdout.write(f"{verb} #{job.pk} {job.database} {job.status} {human_time(job.created_at)} {job.file_name}")
        for name in plan.leftovers:
            self.stdout.write(f"{verb} {name}")
        if options["dry_run"] or options["verbosity"] >= 2:
            for kept in plan.kept:
                job = kept.backup
                self.stdout.write(_("Keep #%(id)s %(database)s %(finished)s %(file)s: %(reasons)s") % {
                    "id": job.pk, "database": job.database, "finished": human_time(job.finished_at or job.created_at),
                    "file": job.file_name, "reasons": kept.reasons_text,
                })
        self.stdout.write(self.style.SUCCESS(
            _("%(verb)s %(count)s backups and %(leftovers)s leftover files, %(size)s; %(kept)s backups kept.") % {
                "verb": verb, "count": len(plan.expired) + len(plan.failed),
                "leftovers": len(plan.leftovers), "size": human_size(plan.bytes_freed), "kept": len(plan.kept),
            }
        ))
