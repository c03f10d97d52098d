"""What the API reads (the request bodies) and describes (the response shapes, for the schema).

Responses are the dicts the commands' --json prints (selectors.backup_to_dict, restore_to_dict,
VerifyResult.to_dict, CleanupPlan.to_dict, backup_stats), plus each record's `url`; the serializers
below only describe them, and tests/test_api.py checks that they match. Input is checked as little as
possible here: the services refuse bad values with the commands' sentences.
"""

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from backups_app import archives
from backups_app.models import BackupPhase, BackupStatus, BackupTrigger, Compression, RestorePhase, RestoreStatus


class CreateBackupRequest(serializers.Serializer):
    database = serializers.CharField(default="default", help_text=_("The database alias to back up."))
    description = serializers.CharField(default="", allow_blank=True, help_text=_("A note stored with the backup."))
    compression = serializers.CharField(
        required=False, allow_null=True,
        help_text=_("zstd, gzip or none (default: BACKUP_COMPRESSION)."),
    )


class RestoreRequest(serializers.Serializer):
    database = serializers.CharField(
        required=False, allow_null=True, help_text=_("The database alias to restore into (default: the backup's own).")
    )
    confirm_database = serializers.CharField(
        help_text=_("The target database's alias or real name, typed again: its whole content is replaced.")
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
