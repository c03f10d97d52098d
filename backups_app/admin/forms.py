from django import forms
from django.db import connections
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from backups_app.conf import setting
from backups_app.engines import ENGINES
from backups_app.errors import BackupError
from backups_app.models import BackupJob, Compression
from backups_app.services.catalog import MAX_RETENTION_DAYS
from backups_app.services.restore import check_confirmation

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
    confirm_database = forms.CharField(
        label=gettext_lazy("To confirm, type the database's alias or name"), max_length=255,
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
        self.fields["terminate_sessions"].help_text = _(
            "Otherwise the restore waits at most %(timeout)s for their locks, then fails and changes nothing."
        ) % {"timeout": seconds_text(setting("BACKUP_LOCK_TIMEOUT"))}

    def clean(self):
        # Only what was typed; whether the backup can be restored is the service's to say.
        cleaned = super().clean()
        database = cleaned.get("database")
        typed = cleaned.get("confirm_database")
        if database and typed is not None:
            try:
                check_confirmation(database=database, typed=typed)
            except BackupError as exc:
                self.add_error("confirm_database", str(exc))
        return cleaned


class CleanupForm(forms.Form):
    retention_days = forms.IntegerField(
        label=gettext_lazy("Keep completed backups for (days)"), min_value=0, max_value=MAX_RETENTION_DAYS,
        help_text=gettext_lazy("Each database's newest backup is always kept, and so is what BACKUP_KEEP_DAILY, "
                               "BACKUP_KEEP_WEEKLY and BACKUP_KEEP_MONTHLY keep."),
    )
