"""How a backup or a restore reads in the console; shared by the pages and the live status JSON."""

from django.template.defaultfilters import filesizeformat
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext as _

from backups_app.models import ACTIVE_RESTORE_STATUSES, BackupStatus, RestoreStatus

ACTIVE_STATUSES = (BackupStatus.PENDING, BackupStatus.RUNNING)


def when(value) -> str:
    return formats.localize(timezone.template_localtime(value)) if value else "-"


def seconds_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return _("%(s)d s") % {"s": seconds}
    if seconds < 3600:
        return _("%(m)d min %(s)02d s") % {"m": seconds // 60, "s": seconds % 60}
    return _("%(h)d h %(m)02d min") % {"h": seconds // 3600, "m": seconds // 60 % 60}


def elapsed_text(started, finished) -> str:
    """Return how long something took, or has been running so far ("-" before it started)."""
    if not started:
        return "-"
    return seconds_text(((finished or timezone.now()) - started).total_seconds())


def size_text(job) -> str:
    if job.status in ACTIVE_STATUSES:
        if not job.bytes_written:
            return "-"
        return _("%(size)s written") % {"size": filesizeformat(job.bytes_written)}
    return filesizeformat(job.size_bytes) if job.size_bytes is not None else "-"


def backup_fields(job) -> dict[str, str]:
    """Return the text of each live field of a backup, by the name its `data-field` carries."""
    return {
        "status": job.get_status_display(),
        "phase": capfirst(job.get_phase_display()) if job.phase and job.status in ACTIVE_STATUSES else "-",
        "started": when(job.started_at),
        "finished": when(job.finished_at),
        "duration": elapsed_text(job.started_at, job.finished_at),
        "size": size_text(job),
        "bytes_written": filesizeformat(job.bytes_written),
        "checksum_full": job.checksum_sha256 or "-",
        "file_name": job.file_name or "-",
        "error": job.error or "-",
    }


def backup_json(job) -> dict:
    return {
        "id": job.pk,
        "status": job.status,
        "active": job.status in ACTIVE_STATUSES,
        "bytes_written": job.bytes_written,
        "size": job.size_bytes,
        "checksum": job.checksum_sha256 or None,
        "fields": backup_fields(job),
    }


def safety_text(restore) -> str:
    job = restore.safety_backup
    if job is None:
        return "-"
    return _("Backup #%(id)s: %(status)s, %(size)s") % {
        "id": job.pk, "status": job.get_status_display().lower(), "size": size_text(job),
    }


def phase_text(restore) -> str:
    """Say which step a running restore is at, or at which step a failed one stopped."""
    if restore.status in ACTIVE_RESTORE_STATUSES:
        return capfirst(restore.get_phase_display()) if restore.phase else _("Queued, waiting for a worker")
    if restore.status == RestoreStatus.FAILED and restore.phase:
        return _("Stopped while %(phase)s") % {"phase": restore.get_phase_display()}
    return "-"


def restore_fields(restore) -> dict[str, str]:
    running = restore.status in ACTIVE_RESTORE_STATUSES
    status = restore.get_status_display()
    return {
        "phase": phase_text(restore),
        "safety": safety_text(restore),
        "status": status,
        "started": when(restore.started_at),
        "finished": "-" if running else when(restore.finished_at),
        "duration": elapsed_text(restore.started_at, None if running else restore.finished_at),
        "error": "-" if running else (restore.error or "-"),
        "strategy": kept_text(restore),
    }


def kept_text(restore) -> str:
    """Say how a restore replaced its database, why, and what became of the database it replaced."""
    if restore.strategy == "into":
        text = _("into the new database %(name)s") % {"name": restore.into}
        return text + (_(", only %(tables)s") % {"tables": restore.tables.replace(",", ", ")} if restore.tables else "")
    if not restore.strategy:
        return "-"
    text = f"{restore.get_strategy_display()}" + (f" ({restore.strategy_reason})" if restore.strategy_reason else "")
    if restore.kept_database:
        if restore.undone_at:
            state = _("undone %(when)s") % {"when": when(restore.undone_at)}
        elif restore.kept_dropped_at:
            state = _("dropped by cleanup %(when)s") % {"when": when(restore.kept_dropped_at)}
        else:
            state = _("kept for an undo")
        text += "; " + _("replaced database %(name)s: %(state)s") % {"name": restore.kept_database, "state": state}
    return text


def restore_json(restore, *, safety_url: str = "") -> dict:
    safety = restore.safety_backup
    return {
        "id": restore.pk,
        "status": restore.status,
        "active": restore.status in ACTIVE_RESTORE_STATUSES,
        "fields": restore_fields(restore),
        "links": {"safety": safety_url},
        "safety_backup": backup_json(safety) if safety else None,
    }


def live(kind: str, pk, field: str, text: str, *, status: str = ""):
    """Render a value that console.js keeps current: <span data-backup-id=".." data-field="..">."""
    if field == "status":
        return format_html(
            '<span class="backup-badge backup-badge--{}" data-{}-id="{}" data-field="status" data-status="{}">{}</span>',
            status, kind, pk, status, text,
        )
    return format_html('<span data-{}-id="{}" data-field="{}">{}</span>', kind, pk, field, text)


def live_backup(job, field: str):
    return live("backup", job.pk, field, backup_fields(job)[field], status=job.status)
