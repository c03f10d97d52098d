"""Verify, delete, clean up, download and count the backups in the catalog."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import BinaryIO

from django.contrib.admin.models import CHANGE, DELETION
from django.db import router, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import archives
from ..conf import setting
from ..engines import CHUNK_SIZE, RereadableHead, engine_class, engine_for_archive
from ..errors import BackupError
from ..models import USABLE_STATUSES, BackupJob, BackupStatus, Restore
from .restore_swap import drop_kept_database, expired_kept_databases, kept_databases, kept_databases_size
from ..selectors import (
    backup_to_dict,
    drills_in_progress,
    get_backup,
    latest_successful_per_database,
    restores_in_progress,
    running_jobs,
    storage_totals,
)
from . import retention
from .audit import log_action
from .retention import KeptBackup

logger = logging.getLogger(__name__)

# A hundred years: longer than anyone keeps backups, and far inside the dates Python can count back to.
MAX_RETENTION_DAYS = 36500


def checksum_problem(job: BackupJob) -> str:
    """Return what is wrong with a backup's archive file (missing, checksum), or "" when it is intact."""
    if not archives.exists(job.file_name):
        return _("its archive %(name)s is missing from the backup storage.") % {"name": job.file_name}
    digest, size = archives.stored_digest(job.file_name)
    if digest != job.checksum_sha256 or size != job.size_bytes:
        return _checksum_mismatch(job)
    return ""


def _checksum_mismatch(job: BackupJob) -> str:
    return _("its archive %(name)s does not match its checksum (corrupted or changed since the backup).") % {
        "name": job.file_name
    }


def _verify_archive(job: BackupJob) -> tuple[str, str]:
    """Return (what is wrong with a backup's archive or "", a note on what could not be checked or "").

    One pass over the stored bytes: hashed, decrypted, decompressed and read through by the engine as a
    restore would (an archive imported without a manifest has a checksum of the file as it was found,
    so the checksum alone cannot tell a truncated one). An encrypted archive whose identity is not here
    is checked by its checksum only, and the note says so.
    """
    if not archives.exists(job.file_name):
        return _("its archive %(name)s is missing from the backup storage.") % {"name": job.file_name}, ""
    header = None
    try:
        with archives.read_archive(job) as stream:
            head = RereadableHead(stream)
            header = head.reader(keep=True).read(64)  # an age identity that is missing or wrong fails here
            if engine_for_archive(header) != job.engine:
                return _("its archive %(name)s is not a %(engine)s archive.") % {
                    "name": job.file_name, "engine": job.engine}, ""
            engine_class(job.engine).check_archive(head.reader(keep=False))
            for _chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
                pass  # bytes after the dump's end must decompress too, up to the end of the stored stream
    except archives.ChecksumMismatch:  # read to its end and hashed already: no second read to say so
        return _checksum_mismatch(job), ""
    except BackupError as exc:
        # Reading stopped before the end, where the checksum is known: a changed archive is named as such.
        if job.encryption and header is None:
            return checksum_problem(job), _("Only the checksum was checked, not the content: %(reason)s") % {
                "reason": exc}
        return checksum_problem(job) or _("its archive %(name)s does not read through: %(reason)s") % {
            "name": job.file_name, "reason": exc}, ""
    except Exception as exc:  # noqa: BLE001  (any decoder error means the same thing to the user)
        return checksum_problem(job) or _("its archive %(name)s cannot be decompressed (%(reason)s).") % {
            "name": job.file_name, "reason": exc}, ""
    return "", ""


@dataclass(frozen=True)
class VerifyResult:
    backup: BackupJob
    ok: bool
    problem: str
    signature: archives.Signature  # of the manifest in the storage now
    note: str = ""  # what could not be checked (an encrypted archive without its identity here)

    def to_dict(self) -> dict:
        """The JSON shape of a verification (backup_verify --json, the API)."""
        return {"id": self.backup.pk, "ok": self.ok, "problem": self.problem or None, "note": self.note or None,
                "signature": self.signature, "trusted": self.backup.trusted}


def manifest_signature_state(job: BackupJob) -> archives.Signature:
    name = job.file_name + archives.MANIFEST_SUFFIX
    try:
        return archives.signature_state(archives.read_manifest(name)) if job.file_name else archives.Signature.MISSING
    except BackupError:
        return archives.Signature.MISSING


def verify_backup(*, backup: BackupJob | int, acting_user=None) -> VerifyResult:
    """Recompute an archive's checksum and read it through, and check its manifest's signature;
    changes nothing but the admin's history of who verified it."""
    backup = get_backup(backup)
    signature = manifest_signature_state(backup)
    if not backup.is_usable:
        problem, note = _("the backup is %(status)s.") % {"status": backup.get_status_display().lower()}, ""
    else:
        problem, note = _verify_archive(backup)
    if problem:
        message = _("Verification failed: %(problem)s") % {"problem": problem}
    elif note:
        message = _("Verified the checksum only: %(note)s") % {"note": note}
    else:
        message = _("Verified: the archive matches its checksum and reads through.")
    log_action(acting_user=acting_user, objects=[backup], action_flag=CHANGE, message=message)
    return VerifyResult(backup, not problem, problem, signature, note)


def archive_tables(*, backup: BackupJob | int) -> list[str]:
    """Return the tables that a backup's archive holds, read from the archive itself."""
    backup = get_backup(backup)
    if not backup.is_usable:
        raise BackupError(_("Backup #%(id)s has no archive.") % {"id": backup.pk})
    with archives.read_archive(backup) as stream:
        return engine_class(backup.engine).archive_tables(stream)


def delete_backup(*, backup: BackupJob | int, acting_user=None) -> None:
    """Delete a backup's archive, manifest and record together; refuse one that is in use."""
    backup = get_backup(backup)
    with transaction.atomic(using=router.db_for_write(BackupJob)):
        # The row lock makes a restore that is being asked for right now wait (its record's foreign
        # key needs this row), so the check below sees it.
        backup = BackupJob.objects.select_for_update().filter(pk=backup.pk).first() or backup
        if backup.status in (BackupStatus.PENDING, BackupStatus.RUNNING):
            raise BackupError(_("Backup #%(id)s is still running; wait for it to finish.") % {"id": backup.pk})
        restore = restores_in_progress().filter(backup=backup).first()
        if restore:
            raise BackupError(
                _("Backup #%(id)s is being restored (restore #%(restore)s into database %(database)s); delete it "
                  "once that restore has finished.")
                % {"id": backup.pk, "restore": restore.pk, "database": restore.database}
            )
        drill = drills_in_progress().filter(backup=backup).first()
        if drill:
            raise BackupError(
                _("Backup #%(id)s is being drilled (restore drill #%(drill)s); delete it once that drill has finished.")
                % {"id": backup.pk, "drill": drill.pk}
            )
        log_action(acting_user=acting_user, objects=[backup], action_flag=DELETION)
        archives.delete(backup.file_name)
        archives.delete(backup.file_name + archives.MANIFEST_SUFFIX)
        backup.delete()


@dataclass(frozen=True)
class CleanupPlan:
    expired: list[BackupJob]
    failed: list[BackupJob]
    leftovers: list[str]
    bytes_freed: int
    # The completed backups that stay, each with the rules that keep it (services.retention).
    kept: list[KeptBackup] = field(default_factory=list)
    # Restores by swap whose replaced database is kept past BACKUP_KEEP_REPLACED_HOURS: it is dropped.
    replaced: list[Restore] = field(default_factory=list)

    @property
    def signature(self) -> str:
        """Identify what the plan deletes, so that confirming a preview deletes exactly what it showed."""
        names = sorted(str(job.pk) for job in self.expired + self.failed) + sorted(self.leftovers)
        names += sorted(restore.kept_database for restore in self.replaced)
        return hashlib.sha256("\n".join(names).encode()).hexdigest()[:32]

    def to_dict(self) -> dict:
        """The JSON shape of a cleanup (backup_cleanup --json, the API)."""
        return {
            "expired": [backup_to_dict(job) for job in self.expired],
            "failed": [backup_to_dict(job) for job in self.failed],
            "leftovers": self.leftovers,
            "bytes_freed": self.bytes_freed,
            "kept": [{**backup_to_dict(kept.backup), "kept_because": [reason.as_dict() for reason in kept.reasons]}
                     for kept in self.kept],
            "replaced_databases": [restore.kept_database for restore in self.replaced],
        }


def plan_cleanup(
    *,
    retention_days: int | None = None,
    keep_daily: int | None = None,
    keep_weekly: int | None = None,
    keep_monthly: int | None = None,
) -> CleanupPlan:
    """Return what a cleanup would delete: completed and failed backups past retention that no keep
    rule keeps (services.retention: never a database's newest completed one), and partial files that
    no running job is writing. Each argument left out is read from its setting.

    Failed backups stay for the retention period too, so that monitoring and people see them."""
    days = setting("BACKUP_RETENTION_DAYS") if retention_days is None else retention_days
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise BackupError(
            _("The retention must be from 0 to %(max)s days, not %(days)s.") % {"max": MAX_RETENTION_DAYS, "days": days}
        )
    counts = {}
    for (rule, name, _period), given in zip(retention.PERIOD_RULES, (keep_daily, keep_weekly, keep_monthly)):
        counts[rule] = setting(name) if given is None else given
        if not 0 <= counts[rule] <= retention.MAX_KEEP:
            raise BackupError(_("%(name)s must be from 0 to %(max)s, not %(value)s.")
                              % {"name": name, "max": retention.MAX_KEEP, "value": counts[rule]})
    cutoff = timezone.now() - timedelta(days=days)
    # Never a database's newest backup, nor one that a restore is about to read or reads.
    reasons = retention.keep_reasons(days=days, cutoff=cutoff, keep=counts)
    keep = set(reasons)
    usable = BackupJob.objects.filter(status__in=USABLE_STATUSES, created_at__lt=cutoff)
    expired = [job for job in usable if job.pk not in keep]
    failed = list(BackupJob.objects.filter(status=BackupStatus.FAILED, created_at__lt=cutoff))
    leftovers = archives.leftovers(set(running_jobs().values_list("file_name", flat=True)))
    storage = archives.backup_storage()
    freed = sum(job.size_bytes or 0 for job in expired)
    freed += sum(storage.size(job.file_name) for job in failed if archives.exists(job.file_name))
    freed += sum(size for _name, size in leftovers)
    return CleanupPlan(expired, failed, [name for name, _size in leftovers], freed, retention.kept_backups(reasons),
                       expired_kept_databases())


def cleanup_backups(
    *,
    retention_days: int | None = None,
    keep_daily: int | None = None,
    keep_weekly: int | None = None,
    keep_monthly: int | None = None,
    acting_user=None,
    previewed: str | None = None,
) -> CleanupPlan:
    """Delete what plan_cleanup() lists; return what was deleted (and what the plan kept).

    With `previewed` (the signature of a plan someone looked at), refuse unless the plan is still the
    same. A backup that a restore started to use since the plan was made is kept (delete_backup refuses it).
    """
    plan = plan_cleanup(
        retention_days=retention_days, keep_daily=keep_daily, keep_weekly=keep_weekly, keep_monthly=keep_monthly
    )
    if previewed is not None and previewed != plan.signature:
        raise BackupError(_("What the cleanup would delete has changed since the preview; check the list again."))
    kept = set()
    for job in plan.expired + plan.failed:
        try:
            delete_backup(backup=job.pk, acting_user=acting_user)
        except BackupError:
            kept.add(job.pk)
    for name in plan.leftovers:
        archives.remove_leftover(name)
    from .drills import drop_leftover_scratch_databases  # drills reads the catalog through this module

    for name in drop_leftover_scratch_databases():
        logger.info("Dropped the scratch database %s that a killed restore drill left behind.", name)
    dropped = []
    for restore in plan.replaced:
        try:
            drop_kept_database(restore)
        except BackupError:
            continue  # its server is unreachable now: the next cleanup drops it
        dropped.append(restore)
    return CleanupPlan(
        [job for job in plan.expired if job.pk not in kept],
        [job for job in plan.failed if job.pk not in kept],
        plan.leftovers,
        plan.bytes_freed - sum(job.size_bytes or 0 for job in plan.expired if job.pk in kept),
        plan.kept,
        dropped,
    )


def open_backup(*, backup: BackupJob | int, acting_user=None) -> BinaryIO:
    """Open a completed backup's archive as stored (a download), checked against its SHA-256 at its end;
    the caller closes it."""
    backup = get_backup(backup)
    if not backup.is_usable:
        raise BackupError(
            _("Backup #%(id)s is %(status)s and has no archive to download.")
            % {"id": backup.pk, "status": backup.get_status_display().lower()}
        )
    archive = archives.read_stored(backup)
    log_action(acting_user=acting_user, objects=[backup], action_flag=CHANGE, message=_("Downloaded the archive."))
    return archive


def download_url(*, backup: BackupJob | int, acting_user=None) -> str | None:
    """Return a short-lived presigned URL of a completed backup's archive when the storage is S3 and
    BACKUP_S3_PRESIGNED_DOWNLOADS is on; else None (the caller streams open_backup())."""
    backup = get_backup(backup)
    if not setting("BACKUP_S3_PRESIGNED_DOWNLOADS") or not backup.is_usable:
        return None
    url = archives.download_url(backup.file_name, os.path.basename(backup.file_name))
    if url:
        log_action(acting_user=acting_user, objects=[backup], action_flag=CHANGE,
                   message=_("Downloaded the archive (presigned S3 URL)."))
    return url


def backup_stats() -> dict:
    """Return catalog totals and each database's latest successful backup."""
    totals = storage_totals()
    kept = kept_databases()
    latest = latest_successful_per_database()
    now = timezone.now()
    return {
        **totals,
        # The databases restores by swap replaced and keep for an undo, and their size on the servers.
        "kept_databases": len(kept),
        "kept_databases_size": kept_databases_size(kept),
        "retention_days": setting("BACKUP_RETENTION_DAYS"),
        "databases": {
            database: {**backup_to_dict(job), "age_seconds": int((now - job.created_at).total_seconds())}
            for database, job in latest.items()
        },
    }
