from django.utils.translation import gettext as _

from backups_app import services
from backups_app.selectors import get_backup

from ._common import BackupCommand


class Command(BackupCommand):
    help = "Delete a backup: its archive, its manifest and its catalog record."

    def add_arguments(self, parser):
        parser.add_argument("backup_id", help="The backup to delete.")
        self.add_noinput_argument(parser)

    def handle(self, *args, **options):
        backup = get_backup(options["backup_id"])
        question = _("This deletes backup #%(id)s of %(database)s (%(file)s) for good.") % {
            "id": backup.pk, "database": backup.database, "file": backup.file_name or "-",
        }
        if not self.confirm(question, options):
            self.stdout.write(_("Delete cancelled."))
            return
        services.delete_backup(backup=backup)
        self.stdout.write(self.style.SUCCESS(_("Deleted backup #%(id)s.") % {"id": options["backup_id"]}))
