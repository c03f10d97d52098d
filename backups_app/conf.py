"""The app's settings and their defaults, in one place (like django-dbbackup's and DRF's settings).

`setting("BACKUP_LOCK_TIMEOUT")` reads Django's setting when it is called, so tests can override it,
and falls back to the default here. config/settings.py fills them from the environment with these
same defaults; .env.example documents each one. Nothing else in the app reads a BACKUP_* setting.
"""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # zstd, gzip or none.
    "BACKUP_COMPRESSION": "zstd",
    # Completed and failed backups older than this are removed by cleanup unless a keep rule below keeps them
    # (each database's newest is always kept).
    "BACKUP_RETENTION_DAYS": 7,
    # Also kept, like restic's --keep-daily/-weekly/-monthly: the newest completed backup of each of the N most
    # recent days, ISO weeks and months that have one, per database (0: that rule is off).
    "BACKUP_KEEP_DAILY": 0,
    "BACKUP_KEEP_WEEKLY": 0,
    "BACKUP_KEEP_MONTHLY": 0,
    # Seconds pg_dump and a restore wait for locks held by other sessions.
    "BACKUP_LOCK_TIMEOUT": 30,
    # How a PostgreSQL restore replaces the database: auto (swap where the role can), swap or in-place.
    "BACKUP_RESTORE_STRATEGY": "auto",
    # Hours a swap keeps the replaced database (for backup_restore --undo) before cleanup drops it.
    "BACKUP_KEEP_REPLACED_HOURS": 24.0,
    # Signs the manifests (HMAC-SHA256); empty: derived from SECRET_KEY.
    "BACKUP_SIGNING_KEY": "",
    # The aliases the schedule backs up and monitoring watches (empty: every configured database).
    "BACKUP_DATABASES": [],
    # Cron expressions of the scheduled backups and cleanup (empty: none).
    "BACKUP_SCHEDULE": "0 2 * * *",
    "BACKUP_CLEANUP_SCHEDULE": "0 3 * * *",
    # Monitoring turns CRITICAL when a database's newest successful backup is older than this.
    "BACKUP_MAX_AGE_HOURS": 26.0,
    # The task backend of background jobs: db (the application's database) or rq (Redis, several hosts).
    "BACKUP_TASK_BACKEND": "db",
    "BACKUP_REDIS_URL": "redis://127.0.0.1:6379/0",
    # Cron expression of the monitoring run that alerts while backup_check is CRITICAL (empty: none).
    "BACKUP_CHECK_SCHEDULE": "30 * * * *",
    # Alerts: e-mail addresses (empty: Django's ADMINS) and a Slack-compatible webhook URL (empty: none).
    "BACKUP_NOTIFY_EMAILS": [],
    "BACKUP_NOTIFY_WEBHOOK_URL": "",
    # Also announce the jobs that succeeded.
    "BACKUP_NOTIFY_ON_SUCCESS": False,
    # The site's address, for links to the admin in alerts, e.g. https://backups.example.com (empty: paths only).
    "BACKUP_SITE_URL": "",
    # The bearer token /metrics asks for (empty: /metrics answers 404).
    "BACKUP_METRICS_TOKEN": "",
    # Restore drills: the server of the scratch databases (empty: the backed-up database's own server),
    # a SQL file of queries that must each return true, a cron expression drilling each database's newest
    # backup (empty: none), a drill of every new backup, and the age (days) after which an undrilled newest
    # backup is a WARNING (0: never).
    "BACKUP_DRILL_DATABASE_URL": "",
    "BACKUP_DRILL_CHECKS": "",
    "BACKUP_DRILL_SCHEDULE": "",
    "BACKUP_DRILL_AFTER_BACKUP": False,
    "BACKUP_DRILL_MAX_AGE_DAYS": 0,
    # On S3: the admin's download redirects to a presigned URL (5 minutes) instead of streaming through the app.
    "BACKUP_S3_PRESIGNED_DOWNLOADS": False,
    # age public keys (age1..., separated by commas or spaces) that new archives are encrypted to; empty: none.
    "BACKUP_AGE_RECIPIENTS": "",
    # The file of age private keys (AGE-SECRET-KEY-1... lines) that restore, deep verify and table listing
    # decrypt with; only where backups are restored, never needed to make them.
    "BACKUP_AGE_IDENTITY_FILE": "",
}


def setting(name: str) -> Any:
    """Return the value of one of the app's settings (Django's, or the default above)."""
    from django.conf import settings

    if name not in DEFAULTS:
        raise KeyError(f"{name} is not a setting of the backups app; the known ones are {', '.join(DEFAULTS)}.")
    return getattr(settings, name, DEFAULTS[name])
