"""The backup operations. The admin, the management commands and cron only call these.

Every function takes keyword-only arguments, the acting user explicitly, and raises BackupError
with one sentence a person can act on.
"""

from ..errors import BackupError
from .backup import create_backup
from .catalog import (
    CleanupPlan,
    VerifyResult,
    archive_tables,
    backup_stats,
    cleanup_backups,
    delete_backup,
    download_url,
    open_backup,
    plan_cleanup,
    verify_backup,
)
from .common import fail_dead_jobs, find_dead_jobs
from .drills import drill_backup, drop_leftover_scratch_databases
from .imports import import_archive, import_scan
from .requests import (
    request_backup,
    request_drill,
    request_restore,
    retry_backup,
    run_requested_backup,
    run_requested_drill,
    run_requested_restore,
)
from .restore import restore_backup, undo_restore
from .restore_swap import drop_expired_kept_databases, kept_databases_size

__all__ = [
    "BackupError",
    "CleanupPlan",
    "VerifyResult",
    "archive_tables",
    "backup_stats",
    "cleanup_backups",
    "create_backup",
    "delete_backup",
    "drill_backup",
    "drop_leftover_scratch_databases",
    "fail_dead_jobs",
    "find_dead_jobs",
    "download_url",
    "import_archive",
    "import_scan",
    "open_backup",
    "plan_cleanup",
    "request_backup",
    "request_drill",
    "request_restore",
    "restore_backup",
    "undo_restore",
    "drop_expired_kept_databases",
    "kept_databases_size",
    "retry_backup",
    "run_requested_backup",
    "run_requested_drill",
    "run_requested_restore",
    "verify_backup",
]
