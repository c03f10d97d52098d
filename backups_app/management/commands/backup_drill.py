from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from backups_app import services
from backups_app.models import DrillStatus
from backups_app.selectors import drill_to_dict, get_backup, latest_successful_per_database

from ._common import BackupCommand


class Command(BackupCommand):
    help = (
        "Prove that a backup restores: restore it into a new scratch database (on the database's server, or "
        "BACKUP_DRILL_DATABASE_URL's; SQLite: a temporary file), check that every table has as many rows as "
        "the archive holds and that the queries of BACKUP_DRILL_CHECKS return true, then drop it. No existing "
        "database is touched."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("epilog", _("Exit status: 0 the drill passed (or was queued), 1 it failed, 2 bad arguments."))
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("backup_id", nargs="?", help="The id of the backup to drill (see backup_list).")
        which.add_argument("--latest", action="store_true", help="Drill the newest completed backup of the database.")
        self.add_database_argument(parser, "With --latest: the database whose newest backup is drilled (default: default).")
        parser.add_argument(
            "--background", action="store_true",
            help="Queue the drill for a worker (manage.py backup_worker), print its id and return at once.",
        )
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        if options["latest"]:
            database = options["database"] or "default"
            backup = latest_successful_per_database().get(database)
            if backup is None:
                raise CommandError(_("Database %(database)r has no completed backup to drill; make one with "
                                     "backup_create.") % {"database": database})
        else:
            if options["database"]:
                raise CommandError(_("--database goes with --latest; a backup id already names its database."))
            backup = get_backup(options["backup_id"])
        if options["background"]:
            drill = services.request_drill(backup=backup)
        else:
            drill = services.drill_backup(backup=backup)
        if options["json"]:
            self.write_json(drill_to_dict(drill))
        elif options["background"]:
            self.stdout.write(self.style.SUCCESS(
                _("Restore drill #%(id)s of backup #%(backup)s is queued; follow it with: manage.py backup_show "
                  "%(backup)s") % {"id": drill.pk, "backup": backup.pk}))
        else:
            self._report(drill, options["verbosity"])
        if drill.status == DrillStatus.FAILED:
            raise CommandError(drill.error)

    def _report(self, drill, verbosity):
        tables = drill.tables
        if verbosity >= 2:
            for table, counts in tables.items():
                self.stdout.write(f"  {table}: {counts['restored']} / {counts['archive']}")
        if drill.status == DrillStatus.PASSED:
            self.stdout.write(self.style.SUCCESS(_(
                "Restore drill #%(id)s of backup #%(backup)s passed: restored in %(seconds).1f s, %(tables)s tables "
                "with every row the archive holds (%(rows)s rows), and every check returned true."
            ) % {"id": drill.pk, "backup": drill.backup_id, "seconds": drill.restore_seconds or 0,
                 "tables": len(tables), "rows": sum(counts["archive"] for counts in tables.values())}))
