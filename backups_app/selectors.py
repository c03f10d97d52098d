"""Reads of the catalog shared by the admin, the commands and monitoring."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, F, Q, QuerySet, Sum, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone
from django.utils.translation import gettext as _

from .errors import BackupError, NotFound
from .models import (
    ACTIVE_RESTORE_STATUSES,
    USABLE_STATUSES,
    BackupJob,
    BackupStatus,
    BackupTrigger,
    Drill,
    DrillStatus,
    Restore,
    RestoreStatus,
)


def get_backup(backup: BackupJob | int | str) -> BackupJob:
    """Return a backup by id (or the instance itself), or raise NotFound naming the bad id."""
    if isinstance(backup, BackupJob):
        return backup
    try:
        pk = int(backup)
    except (TypeError, ValueError):
        raise NotFound(_("%(id)r is not a backup id: ids are whole numbers (see backup_list).") % {"id": backup}) from None
    try:
        return BackupJob.objects.get(pk=pk)
    except BackupJob.DoesNotExist:
        raise NotFound(_("There is no backup #%(id)s (see backup_list).") % {"id": pk}) from None


def get_restore(restore: int | str) -> Restore:
    """Return a restore by id, or raise NotFound naming the bad id."""
    try:
        return Restore.objects.select_related("backup").get(pk=int(restore))
    except (TypeError, ValueError, Restore.DoesNotExist):
        raise NotFound(_("There is no restore #%(id)s (see backup_show).") % {"id": restore}) from None


def get_drill(drill: int | str) -> Drill:
    """Return a restore drill by id, or raise NotFound naming the bad id."""
    try:
        return Drill.objects.get(pk=int(drill))
    except (TypeError, ValueError, Drill.DoesNotExist):
        raise NotFound(_("There is no restore drill #%(id)s (see backup_show).") % {"id": drill}) from None


def list_backups(
    *, database: str | None = None, status: str | None = None, trigger: str | None = None
) -> QuerySet[BackupJob]:
    """The catalog, newest first, filtered as the admin's list filters; an unknown status or trigger is refused."""
    jobs = BackupJob.objects.all()
    for name, value, choices in (("status", status, BackupStatus), ("trigger", trigger, BackupTrigger)):
        if value and value not in choices.values:
            raise BackupError(
                _("Unknown %(name)s %(value)r: use one of %(choices)s.")
                % {"name": name, "value": value, "choices": ", ".join(choices.values)}
            )
    filters = {"database": database, "status": status, "trigger": trigger}
    return jobs.filter(**{name: value for name, value in filters.items() if value})


def running_jobs(database: str | None = None) -> QuerySet[BackupJob]:
    jobs = BackupJob.objects.filter(status=BackupStatus.RUNNING)
    return jobs.filter(database=database) if database else jobs


def restores_in_progress() -> QuerySet[Restore]:
    """Restores asked for or running: the backups they read must stay."""
    return Restore.objects.filter(status__in=ACTIVE_RESTORE_STATUSES)


def drills_in_progress() -> QuerySet:
    """Restore drills asked for or running: the backups they read must stay."""
    return Drill.objects.filter(status__in=[DrillStatus.PENDING, DrillStatus.RUNNING])


# Clocks of the hosts that make backups may differ by this much before a time counts as "in the future".
CLOCK_SKEW = timedelta(minutes=5)
# When a backup finished as recorded (a record without that time: when it was created).
FINISHED = Coalesce("finished_at", "created_at")
NEWEST_FIRST = [FINISHED.desc(), F("id").desc()]


def by_finish_time(now: datetime | None = None) -> QuerySet[BackupJob]:
    """Backups that finished by now, as recorded (a later time comes from a wrong clock or manifest)."""
    return BackupJob.objects.alias(finished=FINISHED).filter(finished__lte=(now or timezone.now()) + CLOCK_SKEW)


def dated_in_the_future(database: str | None = None, now: datetime | None = None) -> QuerySet[BackupJob]:
    jobs = BackupJob.objects.alias(finished=FINISHED).filter(finished__gt=(now or timezone.now()) + CLOCK_SKEW)
    return jobs.filter(database=database) if database else jobs


def finished_newest_first(database: str, now: datetime | None = None) -> QuerySet[BackupJob]:
    """A database's finished backups (usable or failed), by when they finished; none dated in the future."""
    finished = by_finish_time(now).filter(database=database, status__in=[*USABLE_STATUSES, BackupStatus.FAILED])
    return finished.order_by(*NEWEST_FIRST)


def latest_successful_per_database() -> dict[str, BackupJob]:
    """Each database's newest usable backup, by when it finished; one dated in the future never counts."""
    newest_first = Window(RowNumber(), partition_by=F("database"), order_by=NEWEST_FIRST)
    jobs = by_finish_time().filter(status__in=USABLE_STATUSES).annotate(rank=newest_first).filter(rank=1)
    return {job.database: job for job in jobs}


def storage_totals() -> dict:
    totals = BackupJob.objects.aggregate(
        total=Count("id"),
        completed=Count("id", filter=Q(status__in=USABLE_STATUSES)),
        failed=Count("id", filter=Q(status=BackupStatus.FAILED)),
        running=Count("id", filter=Q(status__in=[BackupStatus.RUNNING, BackupStatus.PENDING])),
        total_size=Sum("size_bytes", filter=Q(status__in=USABLE_STATUSES)),
    )
    totals["total_size"] = totals["total_size"] or 0
    return totals


def backup_to_dict(job: BackupJob) -> dict:
    """The JSON shape of a backup in every --json output."""

    def iso(value):
        return value.isoformat() if value else None

    return {
        "id": job.pk,
        "database": job.database,
        "engine": job.engine,
        "status": job.status,
        "trigger": job.trigger,
        "description": job.description,
        "requested_by": job.requested_by_name or None,
        "created": iso(job.created_at),
        "started": iso(job.started_at),
        "finished": iso(job.finished_at),
        "size": job.size_bytes,
        "compression": job.compression,
        "encryption": job.encryption or None,
        "checksum": job.checksum_sha256 or None,
        "file_name": job.file_name or None,
        "server_version": job.server_version or None,
        "tool_version": job.tool_version or None,
        "error": job.error or None,
        "warning": job.warning or None,
        # The step it is at, or stopped at; none once it completed.
        "phase": (job.phase or None) if job.status not in USABLE_STATUSES else None,
        "trusted": job.trusted,
    }


def latest_drill_per_database() -> dict[str, Drill]:
    """Each database's newest finished restore drill (passed or failed), by when it finished."""
    newest_first = Window(RowNumber(), partition_by=F("database"), order_by=[F("finished_at").desc(), F("id").desc()])
    drills = Drill.objects.filter(status__in=[DrillStatus.PASSED, DrillStatus.FAILED], finished_at__isnull=False)
    return {drill.database: drill for drill in drills.annotate(rank=newest_first).filter(rank=1)}


def failures_by_kind() -> dict[tuple[str, str], int]:
    """How many failed backups, restores and drills the catalog holds, per (database, kind)."""
    counts = {}
    for kind, model, failed in (("backup", BackupJob, BackupStatus.FAILED), ("restore", Restore, RestoreStatus.FAILED),
                                ("drill", Drill, DrillStatus.FAILED)):
        for row in model.objects.filter(status=failed).values("database").annotate(count=Count("id")).order_by():
            counts[(row["database"], kind)] = row["count"]
    return counts


def storage_per_database() -> dict[str, int]:
    """The bytes of the archives each database's usable backups keep in the storage."""
    rows = (BackupJob.objects.filter(status__in=USABLE_STATUSES).values("database")
            .annotate(total=Sum("size_bytes")).order_by())
    return {row["database"]: row["total"] or 0 for row in rows}


def drill_to_dict(drill) -> dict | None:
    """The JSON shape of a restore drill (backup_drill --json, backup_show --json)."""
    if drill is None:
        return None
    return {
        "id": drill.pk,
        "backup": drill.backup_id,
        "database": drill.database,
        "status": drill.status,
        # The step it is at, or stopped at; none before its worker began and once it passed.
        "phase": (drill.phase or None) if drill.status != DrillStatus.PASSED else None,
        "started": drill.started_at.isoformat() if drill.started_at else None,
        "finished": drill.finished_at.isoformat() if drill.finished_at else None,
        "duration_seconds": drill.duration.total_seconds() if drill.duration else None,
        "restore_seconds": drill.restore_seconds,
        "tables": drill.tables,
        "failed_checks": drill.failed_checks,
        "error": drill.error or None,
    }


def restore_to_dict(restore: Restore) -> dict:
    """The JSON shape of a restore (backup_show --json, the API)."""
    return {
        "id": restore.pk,
        "backup": restore.backup_id,
        "database": restore.database,
        "status": restore.status,
        # The step it is at, or stopped at; none before its worker began and once it completed.
        "phase": (restore.phase or None) if restore.status != RestoreStatus.COMPLETED else None,
        "requested_by": restore.requested_by_name or None,
        "started": restore.started_at.isoformat(),
        "finished": restore.finished_at.isoformat() if restore.finished_at else None,
        "safety_backup": restore.safety_backup_id,
        "error": restore.error or None,
        "warning": restore.warning or None,
        # How: asked for (auto, swap, in-place, into; null: BACKUP_RESTORE_STRATEGY), then the one used, with why.
        "strategy": restore.strategy or None,
        "strategy_reason": restore.strategy_reason or None,
        "jobs": restore.jobs,
        "into": restore.into or None,
        "tables": [table for table in restore.tables.split(",") if table],
        # The database a swap replaced, kept for an undo until cleanup drops it.
        "kept_database": restore.kept_database or None,
        "kept_dropped": restore.kept_dropped_at.isoformat() if restore.kept_dropped_at else None,
        "undone": restore.undone_at.isoformat() if restore.undone_at else None,
    }
