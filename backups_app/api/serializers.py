"""What the API reads (the request bodies) and describes (the response shapes, for the schema).

Responses are the dicts the commands' --json prints (selectors.backup_to_dict, restore_to_dict,
VerifyResult.to_dict, CleanupPlan.to_dict, backup_stats), plus each record's `url`; the serializers
below only describe them, and tests/test_api.py checks that they match. Input is checked as little as
possible here: the services refuse bad values with the commands' sentences.
"""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from backups_app import archives
from backups_app.models import (
    BackupPhase,
    BackupStatus,
    BackupTrigger,
    Compression,
    DrillPhase,
    DrillStatus,
    RestorePhase,
    RestoreStatus,
    RestoreStrategy,
)


class CreateBackupRequest(serializers.Serializer):
    database = serializers.CharField(default="default", help_text=_("The database alias to back up."))
    description = serializers.CharField(default="", allow_blank=True, help_text=_("A note stored with the backup."))
    compression = serializers.CharField(
        required=False, allow_null=True,
        help_text=_("zstd, gzip or none (default: BACKUP_COMPRESSION)."),
    )


class RestoreRequest(serializers.Serializer):
    database = serializers.CharField(
        required=False, allow_null=True,
        help_text=_("The database alias to restore into, or on whose server `into` makes the new database "
                    "(default: the backup's own)."),
    )
    confirm_database = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text=_("The target database's alias or real name, typed again: its whole content is replaced. "
                    "Not asked with `into`, which replaces nothing."),
    )
    strategy = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text=_("auto, swap or in-place (PostgreSQL; default: BACKUP_RESTORE_STRATEGY). swap loads a new "
                    "database while the live one keeps answering, then swaps the two and keeps the old one for an undo."),
    )
    jobs = serializers.IntegerField(
        required=False, allow_null=True, default=None,
        help_text=_("Parallel pg_restore jobs of a swap or of `into`, from 1 to 64 (default: the cores)."),
    )
    into = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=63,
        help_text=_("Make this NEW database (SQLite: file path) on the target's server from the backup instead; "
                    "nothing that exists is touched, and a name that exists is refused."),
    )
    tables = serializers.ListField(
        child=serializers.CharField(), required=False, default=list,
        help_text=_("With `into` (PostgreSQL): only these schema.table names."),
    )
    safety_backup = serializers.BooleanField(default=True, help_text=_("Take a safety backup of the database first."))
    terminate_sessions = serializers.BooleanField(
        default=False, help_text=_("End other sessions connected to the database instead of waiting for their locks.")
    )
    trust_archive = serializers.BooleanField(
        default=False,
        help_text=_("Restore a backup imported without a manifest signed by this installation."),
    )


class CleanupRequest(serializers.Serializer):
    dry_run = serializers.BooleanField(default=False, help_text=_("Only say what would be deleted."))
    retention_days = serializers.IntegerField(
        required=False, allow_null=True, help_text=_("Override BACKUP_RETENTION_DAYS.")
    )


class BackupRecord(serializers.Serializer):
    id = serializers.IntegerField()
    database = serializers.CharField()
    engine = serializers.CharField()
    status = serializers.ChoiceField(BackupStatus.choices)
    trigger = serializers.ChoiceField(BackupTrigger.choices)
    description = serializers.CharField()
    requested_by = serializers.CharField(allow_null=True)
    created = serializers.DateTimeField()
    started = serializers.DateTimeField(allow_null=True)
    finished = serializers.DateTimeField(allow_null=True)
    size = serializers.IntegerField(allow_null=True)
    compression = serializers.ChoiceField(Compression.choices)
    encryption = serializers.ChoiceField([("age", "age")], allow_null=True, help_text=_("null: not encrypted."))
    checksum = serializers.CharField(allow_null=True, help_text=_("SHA-256 of the archive as stored (encrypted), hex."))
    file_name = serializers.CharField(allow_null=True)
    server_version = serializers.CharField(allow_null=True)
    tool_version = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    warning = serializers.CharField(allow_null=True)
    phase = serializers.ChoiceField(BackupPhase.choices, allow_null=True)
    trusted = serializers.BooleanField()


class Backup(BackupRecord):
    url = serializers.URLField()


class Restore(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    backup = serializers.IntegerField(allow_null=True)
    database = serializers.CharField()
    status = serializers.ChoiceField(RestoreStatus.choices)
    phase = serializers.ChoiceField(RestorePhase.choices, allow_null=True)
    requested_by = serializers.CharField(allow_null=True)
    started = serializers.DateTimeField()
    finished = serializers.DateTimeField(allow_null=True)
    safety_backup = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    warning = serializers.CharField(allow_null=True)
    strategy = serializers.ChoiceField(
        RestoreStrategy.choices, allow_null=True,
        help_text=_("As asked for (null: BACKUP_RESTORE_STRATEGY), then, once it ran, the one used."))
    strategy_reason = serializers.CharField(allow_null=True, help_text=_("Why that strategy was used."))
    jobs = serializers.IntegerField(allow_null=True)
    into = serializers.CharField(allow_null=True, help_text=_("The new database made from the backup."))
    tables = serializers.ListField(child=serializers.CharField(), help_text=_("Only these tables (with `into`)."))
    kept_database = serializers.CharField(
        allow_null=True, help_text=_("The database a swap replaced, kept for an undo until cleanup drops it."))
    kept_dropped = serializers.DateTimeField(allow_null=True, help_text=_("When cleanup dropped the kept database."))
    undone = serializers.DateTimeField(allow_null=True, help_text=_("When the restore was undone."))


class Drill(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.URLField()
    backup = serializers.IntegerField()
    database = serializers.CharField()
    status = serializers.ChoiceField(DrillStatus.choices, help_text=_("passed or failed once it ended."))
    phase = serializers.ChoiceField(DrillPhase.choices, allow_null=True)
    started = serializers.DateTimeField(allow_null=True)
    finished = serializers.DateTimeField(allow_null=True)
    duration_seconds = serializers.FloatField(allow_null=True)
    restore_seconds = serializers.FloatField(allow_null=True)
    tables = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField(allow_null=True)),
        help_text=_("Each table's rows: `archive` (in the archive) and `restored` (in the scratch database; "
                    "null: missing)."),
    )
    failed_checks = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField(allow_null=True)),
        help_text=_("The BACKUP_DRILL_CHECKS queries that did not return true: query and result."),
    )
    error = serializers.CharField(allow_null=True)


class BackupWithRestores(Backup):
    restores = Restore(many=True)


class Verification(serializers.Serializer):
    id = serializers.IntegerField()
    ok = serializers.BooleanField()
    problem = serializers.CharField(allow_null=True)
    note = serializers.CharField(
        allow_null=True, help_text=_("What was not checked: the content of an encrypted archive without its key here.")
    )
    signature = serializers.ChoiceField(archives.Signature.choices)
    trusted = serializers.BooleanField()


class LatestBackup(Backup):
    age_seconds = serializers.IntegerField()


class Stats(serializers.Serializer):
    total = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    running = serializers.IntegerField()
    total_size = serializers.IntegerField()
    kept_databases = serializers.IntegerField(help_text=_("Databases that restores by swap replaced and keep for an undo."))
    kept_databases_size = serializers.IntegerField(help_text=_("Their size on the database servers, in bytes."))
    retention_days = serializers.IntegerField()
    databases = serializers.DictField(child=LatestBackup(), help_text=_("Each database's newest successful backup."))


class Cleanup(serializers.Serializer):
    dry_run = serializers.BooleanField()
    expired = BackupRecord(many=True)
    failed = BackupRecord(many=True)
    leftovers = serializers.ListField(child=serializers.CharField())
    bytes_freed = serializers.IntegerField()
    replaced_databases = serializers.ListField(
        child=serializers.CharField(), help_text=_("Databases kept for an undo past BACKUP_KEEP_REPLACED_HOURS: dropped."))


class Error(serializers.Serializer):
    detail = serializers.CharField()
