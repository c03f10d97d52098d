"""What every backup command shares: JSON output and turning BackupError into CommandError."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from backups_app.errors import BackupError


class BackupCommand(BaseCommand):
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
        answer = input(f"{question}\nType 'yes' to continue, or 'no' to cancel: ")
        return answer == "yes"

    def add_noinput_argument(self, parser):
        parser.add_argument(
            "--noinput", "--no-input", action="store_false", dest="interactive",
            help="Do not ask for confirmation.",
        )


def human_size(size):
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
