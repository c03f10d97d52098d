"""Create a backup: dump, compress, encrypt and hash in one streaming pass (archives), then the manifest."""

from __future__ import annotations

import errno
import logging
import time

from django.utils import timezone
from django.utils.translation import gettext as _

from .. import archives, encryption, notifications
from ..conf import setting
from ..engines import CHUNK_SIZE, Engine, get_engine
from ..errors import BackupError
from ..models import BackupJob, BackupPhase, BackupStatus, BackupTrigger, Encryption
from .common import _process_fields, _user_fields, database_lock, mark_failed, set_phase

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 2.0  # seconds between two updates of a running job's bytes_written


def _archive_name(job: BackupJob, engine: Engine) -> str:
    stamp = job.started_at.strftime("%Y%m%d-%H%M%S")
    suffix = archives.archive_suffix(job.compression, job.encryption)
    return f"{job.database}/{job.database}-{stamp}-{job.pk}.{engine.suffix}{suffix}"


def _run_backup(engine: Engine, job: BackupJob) -> BackupJob:
    """Dump, compress, encrypt and hash in one streaming pass; the caller holds the database's lock."""
    recipients = encryption.recipients()  # a bad key is refused before anything starts
    job.encryption = Encryption.AGE if recipients else Encryption.NONE
    job.status = BackupStatus.RUNNING
    job.engine = engine.name
    job.phase = BackupPhase.DUMPING
    job.heartbeat_at = timezone.now()
    for field, value in _process_fields().items():
        setattr(job, field, value)
    if job.pk is None:
        # The first save sets created_at (auto_now_add) and gives the id the archive's name carries;
        # it comes before started_at so that no backup reads as started before it was created.
        job.save()
    job.started_at = timezone.now()
    job.file_name = _archive_name(job, engine)
    job.save()
    try:
        engine.warnings.clear()
        info = engine.describe()
        job.server_version, job.tool_version = info.server_version, info.tool_version
        job.save(update_fields=["server_version", "tool_version"])
        with archives.write_archive(job.file_name, job.compression, recipients=recipients) as (writer, counter):
            with engine.dump() as stream:
                last_report = time.monotonic()
                for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
                    writer.write(chunk)
                    if time.monotonic() - last_report > PROGRESS_INTERVAL:
                        BackupJob.objects.filter(pk=job.pk).update(
                            bytes_written=counter.size, heartbeat_at=timezone.now()
                        )
                        last_report = time.monotonic()
        job.warning = " ".join(engine.warnings)
        job.size_bytes = job.bytes_written = counter.size
        job.checksum_sha256 = counter.sha256.hexdigest()
        job.finished_at = timezone.now()
        archives.write_manifest(job.file_name, _manifest(job, recipients=recipients))
    except BackupError as exc:
        mark_failed(job, str(exc))
        archives.delete(job.file_name)
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            reason = _(
                "The backup storage is full (%(reason)s); free some space (backup_cleanup) or move BACKUP_STORAGE_URL."
            ) % {"reason": exc.strerror}
        else:
            reason = _("Writing the archive failed: %(reason)s.") % {"reason": exc}
        mark_failed(job, reason)
        archives.delete(job.file_name)
        raise BackupError(reason) from exc
    except BaseException:
        mark_failed(job, _("The backup was interrupted."))
        archives.delete(job.file_name)
        raise
    job.status = BackupStatus.COMPLETED
    job.save()
    return job


def _manifest(job: BackupJob, *, recipients: list[str]) -> dict:
    """Describe an archive; its sha256 is that of the stored (encrypted) bytes, checked without any key."""
    return {
        "id": job.pk,
        "database": job.database,
        "engine": job.engine,
        "trigger": job.trigger,
        "description": job.description,
        "created": job.created_at.isoformat(),
        "finished": job.finished_at.isoformat() if job.finished_at else None,
        "file_name": job.file_name,
        "size": job.size_bytes,
        "sha256": job.checksum_sha256,
        "compression": job.compression,
        "archive_format": f"{job.engine}{archives.archive_suffix(job.compression, job.encryption)}",
        "encryption": job.encryption or None,
        "recipients": list(recipients),  # public keys only: whoever holds one of their identities can read it
        "server_version": job.server_version,
        "tool_version": job.tool_version,
    }


def create_backup(
    *,
    database: str = "default",
    acting_user=None,
    trigger: str = BackupTrigger.MANUAL,
    description: str = "",
    compression: str | None = None,
    job: BackupJob | None = None,
    wait: float = 0,
) -> BackupJob:
    """Back up a database; return the COMPLETED job or raise BackupError (the job then is FAILED).

    `job` is a PENDING job recorded by request_backup(), run by a worker; it waits up to `wait`
    seconds for a backup or restore of the same database that holds its lock. A job that is no
    longer PENDING when its turn comes (run already, or failed) is returned as it is: never run twice.
    """
    compression = _checked_compression(compression)
    try:
        _check_description(description)
        engine = get_engine(database)
        with database_lock(engine, wait=wait, on_wait=lambda: set_phase(job, BackupPhase.WAITING)):
            if job is None:
                job = BackupJob(
                    database=database, trigger=trigger, description=description, **_user_fields(acting_user)
                )
            elif job.pk:
                job.refresh_from_db()
                if job.status != BackupStatus.PENDING:
                    return job
            job.compression = compression
            _run_backup(engine, job)
        error = None
    except BackupError as exc:
        error = _refuse(job, exc)
    if job is not None and job.pk:  # it ran, or was refused: say so once it is recorded
        notifications.notify_job(notifications.BACKUP, job)
    if error is not None:
        raise error
    if setting("BACKUP_DRILL_AFTER_BACKUP"):
        from .requests import request_drill  # requests imports this module

        try:
            request_drill(backup=job, acting_user=job.requested_by)
        except BackupError as exc:  # the backup itself completed
            logger.error("The drill of backup #%s could not be asked for: %s", job.pk, exc)
    return job


def _checked_compression(compression: str | None) -> str:
    """Return the compression to use (BACKUP_COMPRESSION when none is given), or say it is unknown."""
    compression = compression or setting("BACKUP_COMPRESSION")
    if compression not in archives.SUFFIXES:
        raise BackupError(
            _("Unknown compression %(value)r: use one of %(choices)s.")
            % {"value": compression, "choices": ", ".join(archives.SUFFIXES)}
        )
    return compression


def _check_description(description: str) -> None:
    limit = BackupJob._meta.get_field("description").max_length
    if len(description) > limit:
        raise BackupError(
            _("The description is %(length)s characters long; shorten it to at most %(limit)s.")
            % {"length": len(description), "limit": limit}
        )


def _refuse(job: BackupJob | None, error: BackupError) -> BackupError:
    """Record on a job that never started why it did not."""
    if job is not None and job.pk and job.status == BackupStatus.PENDING:
        mark_failed(job, str(error))
    return error
