"""System checks for the backup settings: bad values are reported at start-up, not at 2 a.m."""

import os

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.utils.translation import gettext as _

from .archives import local_path
from .conf import setting
from .engines.postgresql import MAX_LOCK_TIMEOUT
from .errors import BackupError
from .models import Compression
from .services.catalog import MAX_RETENTION_DAYS
from .services.retention import MAX_KEEP, PERIOD_RULES


@register()
def check_backup_settings(app_configs, **kwargs):
    errors = []
    if setting("BACKUP_COMPRESSION") not in Compression.values:
        errors.append(Error(
            _("BACKUP_COMPRESSION is %(value)r; use one of %(choices)s.")
            % {"value": setting("BACKUP_COMPRESSION"), "choices": ", ".join(Compression.values)},
            id="backups_app.E001",
        ))
    if not 0 <= setting("BACKUP_RETENTION_DAYS") <= MAX_RETENTION_DAYS:
        errors.append(Error(
            _("BACKUP_RETENTION_DAYS is %(value)s; it must be from 0 to %(max)s days.")
            % {"value": setting("BACKUP_RETENTION_DAYS"), "max": MAX_RETENTION_DAYS},
            id="backups_app.E002",
        ))
    for check_id, (_rule, name, _period) in enumerate(PERIOD_RULES, start=5):
        if not 0 <= setting(name) <= MAX_KEEP:
            errors.append(Error(
                _("%(name)s is %(value)s; it must be from 0 (off) to %(max)s.")
                % {"name": name, "value": setting(name), "max": MAX_KEEP},
                id=f"backups_app.E00{check_id}",
            ))
    if not 0 < setting("BACKUP_LOCK_TIMEOUT") <= MAX_LOCK_TIMEOUT:
        errors.append(Error(
            _("BACKUP_LOCK_TIMEOUT is %(value)s; it must be from 1 to %(max)s seconds (the most PostgreSQL accepts).")
            % {"value": setting("BACKUP_LOCK_TIMEOUT"), "max": MAX_LOCK_TIMEOUT},
            id="backups_app.E003",
        ))
    location = local_path("")
    if not location:
        return errors  # not on this file system (object storage): the web server cannot publish it
    backup_dir = os.path.realpath(location)
    for name in ("STATIC_ROOT", "MEDIA_ROOT"):
        root = getattr(settings, name, None)
        if root and os.path.commonpath([backup_dir, os.path.realpath(root)]) == os.path.realpath(root):
            errors.append(Error(
                _("BACKUP_DIRECTORY %(dir)s lies inside %(name)s, where the web server may publish it; move it out.")
                % {"dir": backup_dir, "name": name},
                id="backups_app.E004",
            ))
    return errors


@register()
def check_schedule_settings(app_configs, **kwargs):
    """Refuse a schedule cron would not run (crontab add and every job run these checks first)."""
    from .schedule import validate_cron_expression

    errors = []
    for name, check_id in (("BACKUP_SCHEDULE", "backups_app.E010"), ("BACKUP_CLEANUP_SCHEDULE", "backups_app.E011")):
        value = setting(name)
        if not value:
            continue  # empty: that job is not scheduled
        try:
            validate_cron_expression(value)
        except ValueError as exc:
            errors.append(Error(_("%(name)s is invalid: %(reason)s") % {"name": name, "reason": exc}, id=check_id))
    max_age = setting("BACKUP_MAX_AGE_HOURS")
    if max_age <= 0:
        errors.append(Error(
            _("BACKUP_MAX_AGE_HOURS is %(value)s; it must be a positive number of hours.") % {"value": max_age},
            id="backups_app.E012",
        ))
    unknown = [alias for alias in setting("BACKUP_DATABASES") if alias not in settings.DATABASES]
    if unknown:
        errors.append(Error(
            _("BACKUP_DATABASES names %(unknown)s, which DATABASES does not configure (configured: %(known)s).")
            % {"unknown": ", ".join(unknown), "known": ", ".join(settings.DATABASES)},
            id="backups_app.E013",
        ))
    return errors


# backup_check's conditions as deployment checks (`manage.py check --deploy`): what stops backups
# from running is an error; a database never backed up yet (a fresh install) or little free space
# is a warning.
HEALTH_CHECK_IDS = {
    "storage_not_writable": (Error, "backups_app.E020"),
    "cannot_back_up": (Error, "backups_app.E021"),
    "stale": (Error, "backups_app.E022"),
    "last_backup_failed": (Error, "backups_app.E023"),
    "interrupted": (Error, "backups_app.E024"),
    "catalog_unreadable": (Error, "backups_app.E025"),
    "never_backed_up": (Warning, "backups_app.W020"),
    "storage_low": (Warning, "backups_app.W021"),
    "dated_in_the_future": (Warning, "backups_app.W022"),
}


@register("backups", deploy=True)  # alone: `manage.py check --deploy --tag backups`
def check_backup_health(app_configs, **kwargs):
    from .monitoring import check_health

    messages = []
    for problem in check_health().problems:
        level, check_id = HEALTH_CHECK_IDS[problem.code]
        messages.append(level(problem.message, hint=_("Run `manage.py backup_check` for the whole picture."), id=check_id))
    return messages


@register()
def check_encryption_settings(app_configs, **kwargs):
    """Refuse public keys that are not age keys and an identity file that cannot be used (never showing a key)."""
    from .encryption import identity_file_problem, identity_public_keys, recipients

    errors = []
    try:
        public_keys = recipients()
    except BackupError as exc:
        public_keys = []
        errors.append(Error(str(exc), id="backups_app.E030"))
    problem = identity_file_problem()
    if problem:
        errors.append(Error(problem, id="backups_app.E031"))
    elif public_keys and setting("BACKUP_AGE_IDENTITY_FILE") and not set(public_keys) & set(identity_public_keys()):
        errors.append(Warning(
            _("None of the keys in BACKUP_AGE_IDENTITY_FILE belongs to BACKUP_AGE_RECIPIENTS: backups made here "
              "now cannot be restored with it."),
            hint=_("Add the private key of one of %(keys)s to that file.") % {"keys": ", ".join(public_keys)},
            id="backups_app.W030",
        ))
    return errors
