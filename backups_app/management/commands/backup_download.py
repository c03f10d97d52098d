import os
import shutil
import sys

from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from backups_app import services

from ._common import BackupCommand


class Command(BackupCommand):
    help = "Copy a backup's archive out of the backup storage to a file, or to standard output with '-'."

    def add_arguments(self, parser):
        parser.add_argument("backup_id", help="The backup to download.")
        parser.add_argument("--output", "-o", required=True, help="The file to write (must not exist), or - for stdout.")

    def handle(self, *args, **options):
        output = options["output"]
        with services.open_backup(backup=options["backup_id"]) as source:
            if output == "-":
                shutil.copyfileobj(source, sys.stdout.buffer, 1 << 20)
                sys.stdout.buffer.flush()
                return
            try:
                descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise CommandError(_("%(path)s already exists; choose another path or remove it.") % {"path": output})
            except OSError as exc:
                raise CommandError(_("Cannot create %(path)s: %(reason)s.") % {"path": output, "reason": exc.strerror})
            try:
                with os.fdopen(descriptor, "wb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
            except BaseException:
                os.unlink(output)
                raise
        self.stdout.write(self.style.SUCCESS(_("Wrote %(path)s.") % {"path": output}))
