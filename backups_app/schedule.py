"""The jobs that cron runs (django-crontab's CRONJOBS), and the validation of their schedules.

Each job runs the management command a person would run, through `call_command`: scheduled
backups are `backup_create --trigger scheduled`, one per database of BACKUP_DATABASES, and the
cleanup is `backup_cleanup`. Every outcome is logged, and the process exits non-zero unless
everything succeeded: 1 when something failed (a scheduled backup then is a FAILED job with its
reason), 75 (EX_TEMPFAIL) when a backup was skipped because another backup or restore of the
same database held its lock.
"""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import sys
from dataclasses import dataclass
from datetime import datetime

from croniter import croniter

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connections
from django.utils import timezone
from django.utils.translation import gettext as _

from .conf import setting
from .errors import DatabaseBusy
from .models import BackupJob, BackupStatus, BackupTrigger

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_SKIPPED = 0, 1, 75

COMPLETED, SKIPPED, FAILED = "completed", "skipped", "failed"


# Cron expressions -------------------------------------------------------------------------

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, lowest, highest, names that stand for lowest, lowest + 1, ...)
FIELDS = [
    ("minute", 0, 59, []),
    ("hour", 0, 23, []),
    ("day of month", 1, 31, []),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, WEEKDAYS),
]
ITEM = re.compile(r"\A(?:(?P<star>\*)|(?P<low>\d+)(?:-(?P<high>\d+))?)(?:/(?P<step>\d+))?\Z")


def validate_cron_expression(expression: str) -> None:
    """Raise ValueError saying what is wrong unless `expression` is a five-field cron schedule.

    Only what Debian's cron accepts: numbers, `*`, ranges, lists and steps, and the three-letter
    month and weekday names as single values. Macros such as @daily are refused because
    django-crontab recognises its own crontab lines by their five time fields.
    """
    fields = str(expression).split()
    if len(fields) != 5:
        raise ValueError(
            _("%(expression)r has %(count)s fields; a cron schedule has five (minute hour day-of-month month "
              "day-of-week), e.g. '0 2 * * *' for 02:00 every day.")
            % {"expression": expression, "count": len(fields)}
        )
    for value, (name, lowest, highest, names) in zip(fields, FIELDS):
        if value.lower() in names:
            continue
        for item in value.split(","):
            match = ITEM.match(item)
            if not match:
                raise ValueError(_("%(item)r is not a valid %(field)s in %(expression)r.")
                                 % {"item": item, "field": name, "expression": expression})
            numbers = [int(match[group]) for group in ("low", "high") if match[group] is not None]
            if any(number < lowest or number > highest for number in numbers):
                raise ValueError(
                    _("%(item)r is out of range in %(expression)r: the %(field)s goes from %(lowest)s to %(highest)s.")
                    % {"item": item, "expression": expression, "field": name, "lowest": lowest, "highest": highest}
                )
            if len(numbers) == 2 and numbers[0] > numbers[1]:
                raise ValueError(_("The range %(item)r in %(expression)r runs backwards.")
                                 % {"item": item, "expression": expression})
            if match["step"] is not None and not 1 <= int(match["step"]) <= highest - lowest + 1:
                raise ValueError(_("The step of %(item)r in %(expression)r must be between 1 and %(most)s.")
                                 % {"item": item, "expression": expression, "most": highest - lowest + 1})
            if match["step"] is not None and not match["star"] and len(numbers) == 1:
                raise ValueError(_("%(item)r in %(expression)r: cron takes a step only after '*' or a range.")
                                 % {"item": item, "expression": expression})


def next_run_of(expression: str, now: datetime) -> datetime:
    """Return the first time after `now` that a cron expression fires; ValueError if it is invalid."""
    return croniter(expression, now).get_next(datetime)


# The jobs -----------------------------------------------------------------------------------


def scheduled_databases() -> list[str]:
    """Return the aliases that the schedule backs up and monitoring watches (BACKUP_DATABASES, or all)."""
    return list(setting("BACKUP_DATABASES")) or list(connections)


@dataclass(frozen=True)
class ScheduledRun:
    database: str
    outcome: str  # COMPLETED, SKIPPED or FAILED
    message: str
    job: BackupJob | None = None


def _is_busy(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, DatabaseBusy):
            return True
        exc = exc.__cause__
    return False


def run_scheduled_backup(database: str) -> ScheduledRun:
    """Back up one database as the schedule does; log and return the outcome, never raise for it.

    The job is recorded first (PENDING, trigger SCHEDULED, this process's id) and handed to
    `backup_create --job`, so even a backup refused before it started (database unreachable)
    leaves a FAILED job with its reason. A backup refused because another backup or restore of the
    database runs is skipped: its record is removed (it would read as a failed backup) and the
    skip is logged as a warning naming the job that runs.
    """
    try:
        job = BackupJob.objects.create(
            database=database,
            trigger=BackupTrigger.SCHEDULED,
            compression=setting("BACKUP_COMPRESSION"),
            hostname=socket.gethostname(),
            pid=os.getpid(),
        )
    except DatabaseError as exc:
        message = _("Scheduled backup of database %(database)r failed: the backup catalog cannot be written "
                    "(%(reason)s).") % {"database": database, "reason": str(exc).strip().splitlines()[0]}
        logger.error(message)
        return ScheduledRun(database, FAILED, message)
    output = io.StringIO()
    try:
        call_command("backup_create", database=database, job=job.pk, trigger=BackupTrigger.SCHEDULED,
                     stdout=output, stderr=output)
    except CommandError as exc:
        job.refresh_from_db()
        if _is_busy(exc):
            job.delete()
            message = _("Scheduled backup of database %(database)r skipped: %(reason)s") % {
                "database": database, "reason": exc}
            logger.warning(message)
            return ScheduledRun(database, SKIPPED, message)
        return _failed(job, str(exc))
    except Exception as exc:  # noqa: BLE001  (any error: record it on the job rather than lose it)
        logger.exception("Scheduled backup of database %r raised an unexpected error.", database)
        job.refresh_from_db()
        return _failed(job, str(exc) or exc.__class__.__name__)
    job.refresh_from_db()
    message = _("Scheduled backup #%(id)s of database %(database)r completed: %(file)s (%(size)s bytes).") % {
        "id": job.pk, "database": database, "file": job.file_name, "size": job.size_bytes}
    logger.info(message)
    return ScheduledRun(database, COMPLETED, message, job)


def _failed(job: BackupJob, reason: str) -> ScheduledRun:
    if job.status != BackupStatus.FAILED:  # the core records its own failures; anything else is ours
        job.status, job.error, job.finished_at = BackupStatus.FAILED, reason, timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
    message = _("Scheduled backup #%(id)s of database %(database)r failed: %(reason)s") % {
        "id": job.pk, "database": job.database, "reason": job.error}
    logger.error(message)
    return ScheduledRun(job.database, FAILED, message, job)


def run_scheduled_backups(databases: list[str] | None = None) -> list[ScheduledRun]:
    """Back up each scheduled database in turn (one failing does not stop the others)."""
    return [run_scheduled_backup(database) for database in (databases or scheduled_databases())]


def exit_status(runs: list[ScheduledRun]) -> int:
    outcomes = {run.outcome for run in runs}
    if FAILED in outcomes:
        return EXIT_FAILED
    if SKIPPED in outcomes:
        return EXIT_SKIPPED
    return EXIT_OK


def run_scheduled_cleanup() -> int:
    """Run `backup_cleanup` as the schedule does; log the outcome and return the exit status."""
    output = io.StringIO()
    try:
        call_command("backup_cleanup", stdout=output, stderr=output)
    except Exception as exc:  # noqa: BLE001  (CommandError or a broken catalog: both are a failed run)
        logger.error(_("Scheduled cleanup failed: %(reason)s") % {"reason": exc})
        return EXIT_FAILED
    lines = output.getvalue().strip().splitlines()
    logger.info(_("Scheduled cleanup: %(summary)s") % {"summary": lines[-1] if lines else _("done.")})
    return EXIT_OK


def scheduled_backup() -> None:
    """The CRONJOBS entry of BACKUP_SCHEDULE."""
    _exit(exit_status(run_scheduled_backups()))


def scheduled_cleanup() -> None:
    """The CRONJOBS entry of BACKUP_CLEANUP_SCHEDULE."""
    _exit(run_scheduled_cleanup())


def _exit(status: int) -> None:
    """End a failed cron job's process with `status`, so that cron and its wrappers see the failure.

    `manage.py crontab run` catches every exception its job raises, SystemExit included, logs it and
    exits 0: leaving the process directly is the only way to hand a status back. Everything the job
    recorded is committed by then (autocommit); output and log handlers are flushed first.
    """
    if status == EXIT_OK:
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    connections.close_all()
    os._exit(status)
