import re

from django import forms
from django.db import connections
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from backups_app.conf import setting
from backups_app.engines import ENGINES
from backups_app.errors import BackupError
from backups_app.models import BackupJob, Compression, RestoreStrategy
from backups_app.services.catalog import MAX_RETENTION_DAYS
from backups_app.services.restore import MAX_JOBS, check_confirmation, check_restore_options

from .display import seconds_text


def database_choices(engine: str | None = None) -> list[tuple[str, str]]:
    """Return the configured database aliases that can be backed up (of one engine, if given)."""
    choices = []
    for alias in connections:
        vendor = connections[alias].vendor
        if vendor in ENGINES and (engine is None or vendor == engine):
            choices.append((alias, f"{alias} ({connections[alias].settings_dict['NAME']}, {vendor})"))
    return choices


class CreateBackupForm(forms.Form):
    database = forms.ChoiceField(label=gettext_lazy("Database"))
    description = forms.CharField(
        label=gettext_lazy("Description"), max_length=255, required=False,
        help_text=gettext_lazy("A note stored with the backup, e.g. why it was taken."),
    )
    compression = forms.ChoiceField(label=gettext_lazy("Compression"), choices=Compression.choices)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["database"].choices = database_choices()
        self.fields["database"].initial = "default"
        self.fields["compression"].initial = setting("BACKUP_COMPRESSION")


class RestoreForm(forms.Form):
    database = forms.ChoiceField(
        label=gettext_lazy("Restore into database"),
        help_text=gettext_lazy("Its whole content is replaced by the backup's."),
    )
    safety_backup = forms.BooleanField(
        label=gettext_lazy("Take a safety backup of the database first"), required=False, initial=True,
        help_text=gettext_lazy("Lets you go back to the database as it is now."),
    )
    terminate_sessions = forms.BooleanField(
        label=gettext_lazy("End other sessions connected to the database"), required=False,
    )
    strategy = forms.ChoiceField(
        label=gettext_lazy("How (PostgreSQL)"), required=False,
        choices=[(value, label) for value, label in RestoreStrategy.choices if value != RestoreStrategy.INTO],
        help_text=gettext_lazy(
            "swap loads a new database while the live one keeps answering, then ends its sessions and renames the "
            "two in one step; the old one is kept for an undo. in-place locks every table until the restore ends."
        ),
    )
    jobs = forms.IntegerField(
        label=gettext_lazy("Parallel jobs"), min_value=1, max_value=MAX_JOBS, required=False,
        help_text=gettext_lazy("pg_restore jobs of a swap or of a new database; empty: the number of cores."),
    )
    into = forms.CharField(
        label=gettext_lazy("Or into a NEW database named"), max_length=63, required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
        help_text=gettext_lazy(
            "Makes this new database (SQLite: a new file path) on the chosen database's server from the backup; "
            "nothing that exists is touched, and a name that exists is refused."
        ),
    )
    tables = forms.CharField(
        label=gettext_lazy("Only these tables"), required=False,
        help_text=gettext_lazy("With a new database (PostgreSQL): schema.table names, separated by spaces or commas."),
    )
    confirm_database = forms.CharField(
        label=gettext_lazy("To confirm, type the database's alias or name"), max_length=255, required=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    trust_archive = forms.BooleanField(
        label=gettext_lazy("I trust everyone who could write to the backup storage"), required=False,
        help_text=gettext_lazy(
            "This archive was imported without a manifest signed by this installation: whoever could write to "
            "the backup storage may have made it, and restoring it runs whatever SQL it holds."
        ),
    )

    def __init__(self, *args, backup: BackupJob, **kwargs):
        super().__init__(*args, **kwargs)
        self.backup = backup
        if backup.trusted:
            del self.fields["trust_archive"]
        self.fields["database"].choices = database_choices(backup.engine)
        self.fields["database"].initial = self.initial.get("database", backup.database)
        self.fields["strategy"].initial = setting("BACKUP_RESTORE_STRATEGY")
        self.fields["terminate_sessions"].help_text = _(
            "Otherwise the restore waits at most %(timeout)s for their locks, then fails and changes nothing."
        ) % {"timeout": seconds_text(setting("BACKUP_LOCK_TIMEOUT"))}

    def clean(self):
        # Only what was typed; whether the backup can be restored is the service's to say.
        cleaned = super().clean()
        database = cleaned.get("database")
        typed = cleaned.get("confirm_database")
        cleaned["tables"] = [name for name in re.split(r"[\s,]+", cleaned.get("tables") or "") if name]
        try:
            check_restore_options(strategy=cleaned.get("strategy") or "", jobs=cleaned.get("jobs"),
                                  into=cleaned.get("into") or "", tables=cleaned["tables"])
        except BackupError as exc:
            self.add_error("tables", str(exc))
        # A new database replaces nothing: only a restore over one is confirmed by typing its name.
        if database and not cleaned.get("into"):
            try:
                check_confirmation(database=database, typed=typed or "")
            except BackupError as exc:
                self.add_error("confirm_database", str(exc))
        return cleaned


class CleanupForm(forms.Form):
    retention_days = forms.IntegerField(
        label=gettext_lazy("Keep completed backups for (days)"), min_value=0, max_value=MAX_RETENTION_DAYS,
        help_text=gettext_lazy("Each database's newest backup is always kept, and so is what BACKUP_KEEP_DAILY, "
                               "BACKUP_KEEP_WEEKLY and BACKUP_KEEP_MONTHLY keep."),
    )
