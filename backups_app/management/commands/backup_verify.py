from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from backups_app import archives, services
from backups_app.models import USABLE_STATUSES, BackupJob

from ._common import BackupCommand


class Command(BackupCommand):
    help = "Recompute archives' SHA-256 checksums and read them through; fails if any archive is damaged."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("backup_id", nargs="?", help="The backup to verify.")
        target.add_argument("--all", action="store_true", help="Verify every completed backup.")
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        backups = BackupJob.objects.filter(status__in=USABLE_STATUSES) if options["all"] else [options["backup_id"]]
        results = [services.verify_backup(backup=backup) for backup in backups]
        if options["json"]:
            self.write_json([result.to_dict() for result in results])
        else:
            for result in results:
                if result.ok:
                    self.stdout.write(self.style.SUCCESS(_("Backup #%(id)s is intact.") % {"id": result.backup.pk}))
                else:
                    self.stdout.write(self.style.ERROR(
                        _("Backup #%(id)s is damaged: %(problem)s") % {"id": result.backup.pk, "problem": result.problem}
                    ))
                if result.note:
                    self.stdout.write(self.style.WARNING("  " + result.note))
                self.stdout.write(self.signature_line(result))
        damaged = [r for r in results if not r.ok]
        if damaged:
            raise CommandError(
                _("%(count)s of %(total)s backups failed verification.") % {"count": len(damaged), "total": len(results)}
            )

    def signature_line(self, result):
        line = _("  Manifest: %(state)s.") % {"state": result.signature.label}
        if not result.backup.trusted:
            line += " " + _("Imported unverified: restoring it needs --trust-archive.")
        style = self.style.SUCCESS if result.signature == archives.Signature.VALID else self.style.WARNING
        return style(line)
