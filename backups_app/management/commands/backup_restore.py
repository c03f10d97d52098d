from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from backups_app import services
from backups_app.humanize import human_time
from backups_app.selectors import backup_to_dict, get_backup
from backups_app.services.restore import check_restore_options

from ._common import BackupCommand


class Command(BackupCommand):
    help = (
        "Replace a database's content with a backup, all or nothing. A safety backup of the database is "
        "taken first, and the backup catalog itself is kept as it is now. On PostgreSQL the backup is loaded "
        "into a new database while the live one keeps answering, then the two are swapped (sessions on the "
        "live database are ended at that moment) and the old one is kept for --undo; see --strategy. "
        "--into NAME makes a new database from the backup instead, touching nothing that exists."
    )

    def add_arguments(self, parser):
        parser.add_argument("backup_id", nargs="?", help="The id of the backup to restore (see backup_list).")
        parser.add_argument(
            "--undo", metavar="RESTORE_ID", type=int,
            help="Swap back the database that restore RESTORE_ID (a restore by swap) replaced, in one step; the "
            "restored database is dropped. Possible until cleanup drops it (BACKUP_KEEP_REPLACED_HOURS).",
        )
        parser.add_argument(
            "--strategy", choices=("auto", "swap", "in-place"),
            help="PostgreSQL: swap loads a new database in parallel, then ends the live database's sessions and "
            "renames the two in one step (the old one kept for --undo); in-place replaces the content in one "
            "transaction that locks every table until it ends; auto uses swap where the role may. "
            "Default: BACKUP_RESTORE_STRATEGY.",
        )
        parser.add_argument("--jobs", type=int, help="Parallel pg_restore jobs of a swap or --into (default: the cores).")
        parser.add_argument(
            "--into", metavar="NAME",
            help="Make the new database NAME (SQLite: the new file NAME) from the backup, on the server of the "
            "backup's database (or --database); nothing existing is touched and an existing NAME is refused.",
        )
        parser.add_argument(
            "--table", metavar="SCHEMA.TABLE", action="append", dest="tables", default=[],
            help="With --into (PostgreSQL): only this table, with its indexes and constraints; repeatable.",
        )
        self.add_database_argument(parser, "Restore into this database alias instead of the backup's own.")
        self.add_noinput_argument(parser)
        parser.add_argument(
            "--no-safety-backup", action="store_false", dest="safety_backup",
            help="Skip the safety backup of the database taken before the restore.",
        )
        parser.add_argument(
            "--terminate-connections", action="store_true",
            help="End other sessions connected to the database instead of waiting BACKUP_LOCK_TIMEOUT for their locks.",
        )
        parser.add_argument(
            "--trust-archive", action="store_true",
            help="Restore a backup imported without a manifest signed by this installation: its archive may hold "
            "any SQL, so only if you trust everyone who could write to the backup storage.",
        )
        parser.add_argument(
            "--background", action="store_true",
            help="Queue the restore for a worker (manage.py backup_worker), print its id and return at once.",
        )
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        if options["undo"] is not None:
            return self.undo(options)
        if options["backup_id"] is None:
            raise CommandError(_("Give the id of the backup to restore (see backup_list), or --undo RESTORE_ID."))
        check_restore_options(strategy=options["strategy"] or "", jobs=options["jobs"], into=options["into"] or "",
                              tables=options["tables"])
        backup = get_backup(options["backup_id"])
        database = options["database"] or backup.database
        facts = {
            "id": backup.pk,
            "source": backup.database,
            "taken": human_time(backup.created_at),
            "database": database,
            "into": options["into"],
            "tables": ", ".join(options["tables"]),
            "safety": _(" (a safety backup of it is taken first)") if options["safety_backup"] else "",
        }
        if options["into"] and options["tables"]:
            question = _("This makes the new database %(into)s from the tables %(tables)s of backup #%(id)s of "
                         "database %(source)s (taken %(taken)s).") % facts
        elif options["into"]:
            question = _("This makes the new database %(into)s from backup #%(id)s of database %(source)s "
                         "(taken %(taken)s).") % facts
        elif database == backup.database:
            question = _(
                "This restores backup #%(id)s of database %(source)s (taken %(taken)s) into database %(database)s, "
                "replacing its whole content.\nChanges made since then will be lost%(safety)s."
            ) % facts
        else:
            question = _(
                "This restores backup #%(id)s of database %(source)s (taken %(taken)s) into database %(database)s: "
                "a backup of another database.\nEverything database %(database)s holds now will be lost%(safety)s."
            ) % facts
        if not self.confirm(question, options):
            self.stdout.write(_("Restore cancelled."))
            return
        request = services.request_restore if options["background"] else services.restore_backup
        restore = request(
            backup=backup,
            database=database,
            safety_backup=options["safety_backup"],
            terminate_sessions=options["terminate_connections"],
            trust_archive=options["trust_archive"],
            strategy=options["strategy"] or "",
            jobs=options["jobs"],
            into=options["into"] or "",
            tables=options["tables"],
        )
        if options["json"]:
            self.write_json({
                "restore_id": restore.pk,
                "database": restore.database,
                "status": restore.status,
                "started": restore.started_at.isoformat(),
                "finished": restore.finished_at.isoformat() if restore.finished_at else None,
                "backup": backup_to_dict(restore.backup),
                "safety_backup": backup_to_dict(restore.safety_backup) if restore.safety_backup else None,
                "strategy": restore.strategy,
                "strategy_reason": restore.strategy_reason,
                "kept_database": restore.kept_database or None,
                "into": restore.into or None,
            })
            return
        if options["background"]:
            self.stdout.write(self.style.SUCCESS(
                _("Restore #%(id)s of backup #%(backup)s into %(database)s is queued; follow it with: "
                  "manage.py backup_show %(backup)s") % {"id": restore.pk, "backup": backup.pk, "database": database}
            ))
            return
        if restore.into:
            self.stdout.write(self.style.SUCCESS(
                _("Made the new database %(into)s from backup #%(id)s.") % {"into": restore.into, "id": backup.pk}
            ))
            return
        self.stdout.write(self.style.SUCCESS(
            _("Restored backup #%(id)s into %(database)s.") % {"id": backup.pk, "database": database}
        ))
        self.stdout.write(_("Strategy: %(strategy)s (%(why)s).") % {"strategy": restore.strategy,
                                                                    "why": restore.strategy_reason})
        if restore.kept_database:
            self.stdout.write(_(
                "The replaced database is kept as %(name)s; undo with: manage.py backup_restore --undo %(id)s"
            ) % {"name": restore.kept_database, "id": restore.pk})
        if restore.safety_backup:
            self.stdout.write(_("Safety backup taken before it: #%(id)s.") % {"id": restore.safety_backup.pk})

    def undo(self, options):
        question = _(
            "This swaps back the database that restore #%(id)s replaced: changes made since that restore, "
            "except to the backup catalog, are lost, and the sessions on the database are ended."
        ) % {"id": options["undo"]}
        if not self.confirm(question, options):
            self.stdout.write(_("Undo cancelled."))
            return
        restore = services.undo_restore(restore=options["undo"])
        if options["json"]:
            self.write_json({"restore_id": restore.pk, "database": restore.database, "undone": restore.undone_at.isoformat()})
            return
        self.stdout.write(self.style.SUCCESS(
            _("Undid restore #%(id)s: database %(database)s is back as it was before it.")
            % {"id": restore.pk, "database": restore.database}
        ))
