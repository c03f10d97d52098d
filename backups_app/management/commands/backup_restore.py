from django.utils.translation import gettext as _

from backups_app import services
from backups_app.humanize import human_time
from backups_app.selectors import backup_to_dict, get_backup

from ._common import BackupCommand


class Command(BackupCommand):
    help = (
        "Replace a database's content with a backup, all or nothing. A safety backup of the database is "
        "taken first, and the backup catalog itself is kept as it is now."
    )

    def add_arguments(self, parser):
        parser.add_argument("backup_id", help="The id of the backup to restore (see backup_list).")
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
        backup = get_backup(options["backup_id"])
        database = options["database"] or backup.database
        if database == backup.database:
            question = _(
                "This restores backup #%(id)s of database %(source)s (taken %(taken)s) into database %(database)s, "
                "replacing its whole content.\nChanges made since then will be lost%(safety)s."
            )
        else:
            question = _(
                "This restores backup #%(id)s of database %(source)s (taken %(taken)s) into database %(database)s: "
                "a backup of another database.\nEverything database %(database)s holds now will be lost%(safety)s."
            )
        question %= {
            "id": backup.pk,
            "source": backup.database,
            "taken": human_time(backup.created_at),
            "database": database,
            "safety": _(" (a safety backup of it is taken first)") if options["safety_backup"] else "",
        }
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
            })
            return
        if options["background"]:
            self.stdout.write(self.style.SUCCESS(
                _("Restore #%(id)s of backup #%(backup)s into %(database)s is queued; follow it with: "
                  "manage.py backup_show %(backup)s") % {"id": restore.pk, "backup": backup.pk, "database": database}
            ))
            return
        self.stdout.write(self.style.SUCCESS(
            _("Restored backup #%(id)s into %(database)s.") % {"id": backup.pk, "database": database}
        ))
        if restore.safety_backup:
            self.stdout.write(_("Safety backup taken before it: #%(id)s.") % {"id": restore.safety_backup.pk})
