from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from backups_app import monitoring

from ._common import BackupCommand


class Command(BackupCommand):
    help = (
        "Check that every scheduled database has a recent successful backup, that its last backup did not "
        "fail, that it can be backed up now, and that the backup storage is writable. Prints one line and "
        "exits like a Nagios plugin: 0 OK, 1 WARNING, 2 CRITICAL. Backups left running by a process that "
        "died are marked failed first."
    )

    def add_arguments(self, parser):
        self.add_json_argument(parser)
        parser.epilog = _("Exit status: 0 OK, 1 WARNING, 2 CRITICAL or bad arguments.")

    def handle(self, *args, **options):
        report = monitoring.check_health(fail_dead=True)
        if options["json"]:
            self.write_json(report.to_dict())
        else:
            self.stdout.write(report.summary())
            if options["verbosity"] >= 2:
                for problem in report.problems:
                    self.stdout.write(f"{problem.level.label}: {problem.message}")
        if report.level != monitoring.Level.OK:
            # Monitors read the line above on stdout; the exit status carries the level.
            raise CommandError(report.summary(perfdata=False), returncode=int(report.level))
