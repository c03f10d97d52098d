from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from backups_app import services
from backups_app.selectors import backup_to_dict

from ._common import BackupCommand


class Command(BackupCommand):
    help = (
        "Register archives that lie in the backup storage: one file by PATH, or with --scan every archive "
        "whose manifest is not in the catalog yet (disaster recovery on an empty database)."
    )

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("path", nargs="?", help="The archive, relative to the backup storage or inside it.")
        target.add_argument("--scan", action="store_true", help="Import every manifest in the backup storage.")
        self.add_database_argument(parser, "The database alias the archive belongs to (default: its manifest's).")
        self.add_json_argument(parser)

    def handle(self, *args, **options):
        if options["scan"]:
            jobs, problems = services.import_scan()
        else:
            jobs, problems = [services.import_archive(path=options["path"], database=options["database"])], []
        if options["json"]:
            self.write_json({"imported": [backup_to_dict(job) for job in jobs], "problems": problems})
        else:
            for job in jobs:
                self.stdout.write(self.style.SUCCESS(
                    _("Imported %(file)s as backup #%(id)s of %(database)s.")
                    % {"file": job.file_name, "id": job.pk, "database": job.database}
                ))
                if not job.trusted:
                    self.stdout.write(self.style.WARNING(
                        _("  Unverified: its manifest is not signed by this installation, so restoring it needs "
                          "--trust-archive.")
                    ))
            if not jobs and not problems:
                self.stdout.write(_("Nothing to import: every manifest is in the catalog already."))
        if problems:
            raise CommandError("\n".join(problems))
