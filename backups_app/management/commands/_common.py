"""What every backup command shares: JSON output, argument errors, prompts, BackupError as CommandError."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.utils.translation import gettext as _

from backups_app.errors import BackupError


class BackupCommand(BaseCommand):
    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("epilog", _("Exit status: 0 done, 1 failed, 2 bad arguments."))
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        if parser.called_from_command_line:
            # argparse would print the whole usage block, which buries the one line that matters.
            def error(message):
                parser.exit(2, _("%(command)s: error: %(message)s\nRun '%(prog)s --help' for usage.\n") % {
                    "command": subcommand, "message": message, "prog": parser.prog,
                })

            parser.error = error
        return parser

    def add_json_argument(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the result as JSON, for scripts.")

    def add_database_argument(self, parser, help_text):
        parser.add_argument("--database", choices=tuple(connections), help=help_text)

    def write_json(self, data):
        self.stdout.write(json.dumps(data, indent=2, default=str))

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc

    def confirm(self, question, options):
        """Ask like flush does; return True when the user typed 'yes' or gave --no-input."""
        if not options["interactive"]:
            return True
        try:
            answer = input(f"{question}\n" + _("Type 'yes' to continue, or 'no' to cancel: "))
        except EOFError:  # stdin closed or not a terminal: nobody said yes
            self.stdout.write("")
            return False
        return answer == "yes"

    def add_noinput_argument(self, parser):
        parser.add_argument(
            "--noinput", "--no-input", action="store_false", dest="interactive",
            help="Do not ask for confirmation.",
        )
        parser.epilog = _("Exit status: 0 done, or cancelled at the question; 1 failed; 2 bad arguments.")

