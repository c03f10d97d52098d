"""The backup operations. The admin, the management commands and cron only call these.

Every function takes keyword-only arguments, the acting user explicitly, and raises BackupError
with one sentence a person can act on.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import BinaryIO

from django.conf import settings
from django.db import router
from django.utils import timezone
from django.utils.translation import gettext as _

from . import archives
from .engines import CHUNK_SIZE, Engine, KeptTable, engine_for_archive, get_engine
from .errors import BackupError, DatabaseBusy
from .models import USABLE_STATUSES, BackupJob, BackupStatus, BackupTrigger, Restore, RestoreStatus
from .selectors import backup_to_dict, get_backup, latest_successful_per_database, running_jobs, storage_totals

PROGRESS_INTERVAL = 2.0  # seconds between two updates of a running job's bytes_written


def _user_fields(acting_user) -> dict:
    if acting_user is None or not acting_user.is_authenticated:
        return {"requested_by": None, "requested_by_name": ""}
    return {"requested_by": acting_user, "requested_by_name": acting_user.get_username()}


def _process_fields() -> dict:
    return {"hostname": socket.gethostname(), "pid": os.getpid()}


def _catalog_tables() -> list[KeptTable]:
    """Describe the catalog's tables, which every restore of the catalog's own database keeps."""
    tables = []
    for model in (BackupJob, Restore):
        outside_refs = {
            field.column: (field.related_model._meta.db_table, field.target_field.column)
            for field in model._meta.concrete_fields
            if field.is_relation and field.related_model not in (BackupJob, Restore)
        }
        tables.append(KeptTable(model._meta.db_table, model._meta.pk.column, outside_refs))
    return tables


def _busy_message(database: str) -> str:
    job = running_jobs(database).first()
    restore = Restore.objects.filter(database=database, status=RestoreStatus.RUNNING).first()
    if restore:
        return _("Restore #%(id)s into database %(database)r is running (started %(started)s); try again when it "
                 "has finished.") % {"id": restore.pk, "database": database, "started": restore.started_at}
    if job:
        return _("Backup #%(id)s of database %(database)r is running (started %(started)s); try again when it has "
                 "finished.") % {"id": job.pk, "database": database, "started": job.started_at or job.created_at}
    return _("Another backup or restore of database %(database)r is running; try again when it has finished.") % {
        "database": database
    }


def _fail_stale_jobs(database: str) -> None:
    """Mark jobs left RUNNING by a process that died; only call while holding the database's lock."""
    now = timezone.now()
    reason = _("The process running this job stopped before it finished (killed or crashed).")
    running_jobs(database).update(status=BackupStatus.FAILED, finished_at=now, error=reason)
    Restore.objects.filter(database=database, status=RestoreStatus.RUNNING).update(
        status=RestoreStatus.FAILED, finished_at=now, error=reason
    )


def fail_stale_jobs() -> int:
    """Find RUNNING jobs whose database lock is free (so nobody is running them) and mark them FAILED."""
    databases = set(running_jobs().values_list("database", flat=True))
    databases |= set(Restore.objects.filter(status=RestoreStatus.RUNNING).values_list("database", flat=True))
    failed = 0
    for database in databases:
        try:
            with get_engine(database).lock():
                failed += running_jobs(database).count()
                _fail_stale_jobs(database)
        except BackupError:
            continue  # busy (the job is alive) or the database is unreachable: nothing is known
    return failed


def _fail(job: BackupJob, reason: str) -> None:
    job.status = BackupStatus.FAILED
    job.error = reason
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "error", "finished_at"])


def _archive_name(job: BackupJob, engine: Engine) -> str:
    stamp = job.started_at.strftime("%Y%m%d-%H%M%S")
    return f"{job.database}/{job.database}-{stamp}-{job.pk}.{engine.suffix}{archives.SUFFIXES[job.compression]}"


def _run_backup(engine: Engine, job: BackupJob) -> BackupJob:
    """Dump, compress and hash in one streaming pass; the caller holds the database's lock."""
    job.status = BackupStatus.RUNNING
    job.started_at = timezone.now()
    job.engine = engine.name
    for field, value in _process_fields().items():
        setattr(job, field, value)
    job.save()  # gives a new job its id, which the archive's name carries
    job.file_name = _archive_name(job, engine)
    job.save(update_fields=["file_name"])
    try:
        info = engine.describe()
        job.server_version, job.tool_version = info.server_version, info.tool_version
        job.save(update_fields=["server_version", "tool_version"])
        with archives.write_archive(job.file_name, job.compression) as (writer, counter):
            with engine.dump() as stream:
                last_report = time.monotonic()
                for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
                    writer.write(chunk)
                    if time.monotonic() - last_report > PROGRESS_INTERVAL:
                        BackupJob.objects.filter(pk=job.pk).update(bytes_written=counter.size)
                        last_report = time.monotonic()
        job.size_bytes = job.bytes_written = counter.size
        job.checksum_sha256 = counter.sha256.hexdigest()
        job.finished_at = timezone.now()
        archives.write_manifest(job.file_name, _manifest(job))
    except BackupError as exc:
        _fail(job, str(exc))
        archives.delete(job.file_name)
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            reason = _("The backup storage is full (%(reason)s); free some space (backup_cleanup) or move "
                       "BACKUP_DIRECTORY.") % {"reason": exc.strerror}
        else:
            reason = _("Writing the archive failed: %(reason)s.") % {"reason": exc}
        _fail(job, reason)
        archives.delete(job.file_name)
        raise BackupError(reason) from exc
    except BaseException:
        _fail(job, _("The backup was interrupted."))
        archives.delete(job.file_name)
        raise
    job.status = BackupStatus.COMPLETED
    job.save()
    return job


def _manifest(job: BackupJob) -> dict:
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
        "archive_format": f"{job.engine}{archives.SUFFIXES[job.compression]}",
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
) -> BackupJob:
    """Back up a database; return the COMPLETED job or raise BackupError (the job then is FAILED).

    `job` is a PENDING job created earlier (by the admin, before starting a worker process).
    """
    compression = compression or settings.BACKUP_COMPRESSION
    if compression not in archives.SUFFIXES:
        raise BackupError(
            _("Unknown compression %(value)r: use one of %(choices)s.")
            % {"value": compression, "choices": ", ".join(archives.SUFFIXES)}
        )
    try:
        engine = get_engine(database)
        with engine.lock():
            _fail_stale_jobs(database)
            if job is None:
                job = BackupJob(database=database, trigger=trigger, description=description, **_user_fields(acting_user))
            job.compression = compression
            return _run_backup(engine, job)
    except DatabaseBusy as exc:
        raise _refuse(job, BackupError(_busy_message(database))) from exc
    except BackupError as exc:
        raise _refuse(job, exc)


def _refuse(job: BackupJob | None, error: BackupError) -> BackupError:
    """Record on a job that never started why it did not."""
    if job is not None and job.pk and job.status == BackupStatus.PENDING:
        _fail(job, str(error))
    return error


def restore_backup(
    *,
    backup: BackupJob | int,
    acting_user=None,
    database: str | None = None,
    safety_backup: bool = True,
    terminate_sessions: bool = False,
    restore: Restore | None = None,
) -> Restore:
    """Replace a database's content with a backup, all or nothing, after a safety backup of it.

    Return the COMPLETED restore record, or raise BackupError (the record then is FAILED and the
    database as it was). Restoring the catalog's own database keeps the catalog as it is now.
    """
    backup = get_backup(backup)
    database = database or backup.database
    if not backup.is_usable:
        raise BackupError(
            _("Backup #%(id)s is %(status)s; only a completed backup can be restored.")
            % {"id": backup.pk, "status": backup.get_status_display().lower()}
        )
    engine = get_engine(database)
    if backup.engine != engine.name:
        raise BackupError(
            _("Backup #%(id)s is a %(archive)s archive and database %(database)r is %(engine)s; restore it into a "
              "%(archive)s database.")
            % {"id": backup.pk, "archive": backup.engine, "database": database, "engine": engine.name}
        )
    try:
        with engine.lock():
            _fail_stale_jobs(database)
            if restore is None:
                restore = Restore(backup=backup, database=database, **_user_fields(acting_user))
            restore.status = RestoreStatus.RUNNING
            for field, value in _process_fields().items():
                setattr(restore, field, value)
            restore.save()
            return _run_restore(engine, backup, restore, safety_backup, terminate_sessions)
    except DatabaseBusy as exc:
        error = BackupError(_busy_message(database))
        if restore is not None and restore.pk:
            _fail_restore(restore, str(error))
        raise error from exc


def _fail_restore(restore: Restore, reason: str) -> None:
    restore.status = RestoreStatus.FAILED
    restore.error = reason
    restore.finished_at = timezone.now()
    restore.save(update_fields=["status", "error", "finished_at"])


def _run_restore(engine: Engine, backup: BackupJob, restore: Restore, safety: bool, terminate: bool) -> Restore:
    try:
        problem = _verify_archive(backup)
        if problem:
            raise BackupError(_("Backup #%(id)s is refused: %(problem)s") % {"id": backup.pk, "problem": problem})
        if safety:
            safety_job = BackupJob(
                database=restore.database,
                trigger=BackupTrigger.PRE_RESTORE_SAFETY,
                description=_("Before restoring backup #%(id)s") % {"id": backup.pk},
                compression=settings.BACKUP_COMPRESSION,
                requested_by=restore.requested_by,
                requested_by_name=restore.requested_by_name,
            )
            restore.safety_backup = _run_backup(engine, safety_job)
            restore.save(update_fields=["safety_backup"])
        keep = _catalog_tables() if router.db_for_write(BackupJob) == restore.database else []
        with archives.backup_storage().open(backup.file_name, "rb") as raw:
            engine.restore(
                archives.decompressor(raw, backup.compression),
                keep=keep,
                lock_timeout=settings.BACKUP_LOCK_TIMEOUT,
                terminate_sessions=terminate,
            )
    except BackupError as exc:
        _fail_restore(restore, str(exc))
        raise
    except BaseException:
        _fail_restore(restore, _("The restore was interrupted; the database is as it was before."))
        raise
    restore.status = RestoreStatus.COMPLETED
    restore.finished_at = timezone.now()
    restore.save()
    BackupJob.objects.filter(pk=backup.pk).update(status=BackupStatus.RESTORED)
    backup.refresh_from_db()
    return restore


def _verify_archive(job: BackupJob) -> str:
    """Return what is wrong with a backup's archive, or "" when it is whole and readable."""
    storage = archives.backup_storage()
    if not job.file_name or not storage.exists(job.file_name):
        return _("its archive %(name)s is missing from the backup storage.") % {"name": job.file_name}
    digest, size = archives.checksum(job.file_name)
    if digest != job.checksum_sha256 or size != job.size_bytes:
        return _("its archive %(name)s does not match its checksum (corrupted or changed since the backup).") % {
            "name": job.file_name
        }
    try:
        with storage.open(job.file_name, "rb") as raw:
            stream = archives.decompressor(raw, job.compression)
            header = stream.read(64)
            for _chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
                pass
    except Exception as exc:  # noqa: BLE001  (any decoder error means the same thing to the user)
        return _("its archive %(name)s cannot be decompressed (%(reason)s).") % {"name": job.file_name, "reason": exc}
    if engine_for_archive(header) != job.engine:
        return _("its archive %(name)s is not a %(engine)s archive.") % {"name": job.file_name, "engine": job.engine}
    return ""


@dataclass(frozen=True)
class VerifyResult:
    backup: BackupJob
    ok: bool
    problem: str


def verify_backup(*, backup: BackupJob | int) -> VerifyResult:
    """Recompute an archive's checksum and read it through; never changes anything."""
    backup = get_backup(backup)
    if not backup.is_usable:
        return VerifyResult(backup, False, _("the backup is %(status)s.") % {"status": backup.get_status_display().lower()})
    problem = _verify_archive(backup)
    return VerifyResult(backup, not problem, problem)


def delete_backup(*, backup: BackupJob | int, acting_user=None) -> None:
    """Delete a backup's archive, manifest and record together."""
    backup = get_backup(backup)
    if backup.status in (BackupStatus.RUNNING,):
        raise BackupError(_("Backup #%(id)s is still running; wait for it to finish.") % {"id": backup.pk})
    archives.delete(backup.file_name)
    archives.delete(backup.file_name + archives.MANIFEST_SUFFIX)
    backup.delete()


@dataclass(frozen=True)
class CleanupPlan:
    expired: list[BackupJob]
    failed: list[BackupJob]
    leftovers: list[str]
    bytes_freed: int


def plan_cleanup(*, retention_days: int | None = None) -> CleanupPlan:
    """Return what a cleanup would delete: completed and failed backups past retention (never a
    database's newest completed one), and partial files that no running job is writing.

    Failed backups stay for the retention period too, so that monitoring and people see them."""
    days = settings.BACKUP_RETENTION_DAYS if retention_days is None else retention_days
    if days < 0:
        raise BackupError(_("The retention must be zero or more days, not %(days)s.") % {"days": days})
    cutoff = timezone.now() - timedelta(days=days)
    usable = BackupJob.objects.filter(status__in=USABLE_STATUSES)
    newest = {job.pk for job in latest_successful_per_database().values()}
    expired = [job for job in usable.filter(created_at__lt=cutoff) if job.pk not in newest]
    failed = list(BackupJob.objects.filter(status=BackupStatus.FAILED, created_at__lt=cutoff))
    active = {archives.partial_name(name) for name in running_jobs().values_list("file_name", flat=True)}
    leftovers = [
        name
        for name in archives.list_names()
        if os.path.basename(name).startswith(archives.PARTIAL_PREFIX)
        and name.endswith(archives.PARTIAL_SUFFIX)
        and name not in active
    ]
    storage = archives.backup_storage()
    freed = sum(job.size_bytes or 0 for job in expired)
    freed += sum(storage.size(job.file_name) for job in failed if job.file_name and storage.exists(job.file_name))
    freed += sum(storage.size(name) for name in leftovers)
    return CleanupPlan(expired, failed, leftovers, freed)


def cleanup_backups(*, retention_days: int | None = None, acting_user=None) -> CleanupPlan:
    """Delete what plan_cleanup() lists; return that plan."""
    plan = plan_cleanup(retention_days=retention_days)
    for job in plan.expired + plan.failed:
        delete_backup(backup=job, acting_user=acting_user)
    for name in plan.leftovers:
        archives.delete(name)
    return plan


def open_backup(*, backup: BackupJob | int, acting_user=None) -> BinaryIO:
    """Open a completed backup's archive for reading (a download); the caller closes it."""
    backup = get_backup(backup)
    if not backup.is_usable:
        raise BackupError(
            _("Backup #%(id)s is %(status)s and has no archive to download.")
            % {"id": backup.pk, "status": backup.get_status_display().lower()}
        )
    try:
        return archives.backup_storage().open(backup.file_name, "rb")
    except FileNotFoundError as exc:
        raise BackupError(_("The archive of backup #%(id)s is missing from the backup storage.") % {"id": backup.pk}) from exc


def import_archive(*, path: str, database: str | None = None, acting_user=None) -> BackupJob:
    """Register an archive file that lies in the backup storage (with its manifest, if it has one)."""
    name = archives.storage_name(path)
    if name.endswith(archives.MANIFEST_SUFFIX):
        name = name.removesuffix(archives.MANIFEST_SUFFIX)
    existing = BackupJob.objects.filter(file_name=name).first()
    if existing:
        raise BackupError(_("%(name)s is already in the catalog as backup #%(id)s.") % {"name": name, "id": existing.pk})
    digest, size = archives.checksum(name)
    manifest_name = name + archives.MANIFEST_SUFFIX
    manifest = archives.read_manifest(manifest_name) if archives.backup_storage().exists(manifest_name) else {}
    if manifest and (manifest.get("sha256") != digest or manifest.get("size") != size):
        raise BackupError(
            _("%(name)s does not match its manifest's checksum; the archive or the manifest was changed.") % {"name": name}
        )
    with archives.backup_storage().open(name, "rb") as raw:
        header = raw.read(16)
        compression = archives.detect_compression(header)
        raw.seek(0)
        engine = engine_for_archive(archives.decompressor(raw, compression).read(64))
    if engine is None:
        raise BackupError(_("%(name)s is not a PostgreSQL or SQLite backup archive.") % {"name": name})
    job = BackupJob(
        database=database or manifest.get("database") or "default",
        engine=engine,
        status=BackupStatus.COMPLETED,
        trigger=manifest.get("trigger") if manifest.get("trigger") in BackupTrigger.values else BackupTrigger.MANUAL,
        description=str(manifest.get("description") or _("Imported from %(name)s") % {"name": name})[:255],
        compression=compression,
        file_name=name,
        size_bytes=size,
        bytes_written=size,
        checksum_sha256=digest,
        server_version=str(manifest.get("server_version", ""))[:100],
        tool_version=str(manifest.get("tool_version", ""))[:100],
        **_user_fields(acting_user),
    )
    manifest_id = manifest.get("id")
    if isinstance(manifest_id, int) and not BackupJob.objects.filter(pk=manifest_id).exists():
        job.pk = manifest_id  # the id it had before the catalog was lost
    job.save()
    if manifest.get("created"):
        BackupJob.objects.filter(pk=job.pk).update(
            created_at=manifest["created"], started_at=manifest["created"], finished_at=manifest.get("finished")
        )
    else:
        BackupJob.objects.filter(pk=job.pk).update(started_at=job.created_at, finished_at=job.created_at)
    job.refresh_from_db()
    if not manifest:
        archives.write_manifest(name, _manifest(job))
    return job


def import_scan(*, acting_user=None) -> tuple[list[BackupJob], list[str]]:
    """Register every archive whose manifest lies in the storage and is not in the catalog yet.

    Return the imported jobs and, for each manifest that could not be imported, why.
    """
    known = set(BackupJob.objects.values_list("file_name", flat=True))
    imported, problems = [], []
    for name in archives.list_names():
        archive = name.removesuffix(archives.MANIFEST_SUFFIX)
        if not name.endswith(archives.MANIFEST_SUFFIX) or archive in known:
            continue
        try:
            imported.append(import_archive(path=archive, acting_user=acting_user))
        except BackupError as exc:
            problems.append(f"{name}: {exc}")
    return imported, problems


def backup_stats() -> dict:
    """Return catalog totals and each database's latest successful backup."""
    totals = storage_totals()
    latest = latest_successful_per_database()
    now = timezone.now()
    return {
        **totals,
        "retention_days": settings.BACKUP_RETENTION_DAYS,
        "databases": {
            database: {**backup_to_dict(job), "age_seconds": int((now - job.created_at).total_seconds())}
            for database, job in latest.items()
        },
    }
