"""System checks for the backup settings: bad values are reported at start-up, not at 2 a.m."""

import os

from django.conf import settings
from django.core.checks import Error, register
from django.utils.translation import gettext as _

from .models import Compression


@register()
def check_backup_settings(app_configs, **kwargs):
    errors = []
    if settings.BACKUP_COMPRESSION not in Compression.values:
        errors.append(Error(
            _("BACKUP_COMPRESSION is %(value)r; use one of %(choices)s.")
            % {"value": settings.BACKUP_COMPRESSION, "choices": ", ".join(Compression.values)},
            id="backups_app.E001",
        ))
    if settings.BACKUP_RETENTION_DAYS < 0:
        errors.append(Error(
            _("BACKUP_RETENTION_DAYS is %(value)s; it must be zero or more.") % {"value": settings.BACKUP_RETENTION_DAYS},
            id="backups_app.E002",
        ))
    if settings.BACKUP_LOCK_TIMEOUT <= 0:
        errors.append(Error(
            _("BACKUP_LOCK_TIMEOUT is %(value)s; it must be a positive number of seconds.")
            % {"value": settings.BACKUP_LOCK_TIMEOUT},
            id="backups_app.E003",
        ))
    backup_dir = os.path.realpath(settings.BACKUP_DIRECTORY)
    for name in ("STATIC_ROOT", "MEDIA_ROOT"):
        root = getattr(settings, name, None)
        if root and os.path.commonpath([backup_dir, os.path.realpath(root)]) == os.path.realpath(root):
            errors.append(Error(
                _("BACKUP_DIRECTORY %(dir)s lies inside %(name)s, where the web server may publish it; move it out.")
                % {"dir": backup_dir, "name": name},
                id="backups_app.E004",
            ))
    return errors
