"""The jobs that cron runs (django-crontab's CRONJOBS), and the validation of their schedules.

Scheduled backups go through the request path (services.request_backup, trigger SCHEDULED), one
per database of BACKUP_DATABASES, and run on a worker (manage.py backup_worker); the cleanup runs
`backup_cleanup` in place. Every outcome is logged, and the process exits 1 when a backup could not
be queued or the cleanup failed (0 otherwise); a backup that fails on the worker is a FAILED job,
which backup_check reports.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime

from croniter import croniter

from django.core.management import call_command
from django.db import connections
from django.utils.translation import gettext as _

from . import services
from .conf import setting
from .models import BackupJob, BackupTrigger

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED = 0, 1

QUEUED, FAILED = "queued", "failed"


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
    outcome: str  # QUEUED or FAILED
    message: str
    job: BackupJob | None = None


def run_scheduled_backup(database: str) -> ScheduledRun:
    """Ask for one database's scheduled backup, as the schedule does; log and return the outcome.

    It goes through the same request path as the admin's Create: a PENDING job (trigger SCHEDULED)
    that a worker runs, after any backup or restore of the database ahead of it in the queue.
    """
    try:
        job = services.request_backup(database=database, trigger=BackupTrigger.SCHEDULED)
    except Exception as exc:  # noqa: BLE001  (the catalog, the queue (Redis) or the check: all mean "not queued")
        message = _("Scheduled backup of database %(database)r could not be queued: %(reason)s") % {
            "database": database, "reason": str(exc).strip().splitlines()[0]}
        logger.error(message)
        return ScheduledRun(database, FAILED, message)
    message = _("Scheduled backup #%(id)s of database %(database)r is queued.") % {"id": job.pk, "database": database}
    logger.info(message)
    return ScheduledRun(database, QUEUED, message, job)


def run_scheduled_backups(databases: list[str] | None = None) -> list[ScheduledRun]:
    """Ask for each scheduled database's backup (one failing does not stop the others), after marking
    the jobs whose worker died as failed."""
    try:
        services.fail_dead_jobs()
    except Exception:  # noqa: BLE001  (the backups are still asked for; the next run looks again)
        logger.exception("Looking for jobs whose worker died failed.")
    return [run_scheduled_backup(database) for database in (databases or scheduled_databases())]


def exit_status(runs: list[ScheduledRun]) -> int:
    return EXIT_FAILED if any(run.outcome == FAILED for run in runs) else EXIT_OK


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


def run_scheduled_check() -> int:
    """Run backup_check as the schedule does (marking dead jobs failed); alert when it is CRITICAL.

    Every run that finds the backups CRITICAL alerts again: a reminder each BACKUP_CHECK_SCHEDULE
    until someone fixes it. Return the exit status (1: CRITICAL).
    """
    from . import notifications
    from .monitoring import Level, check_health

    report = check_health(fail_dead=True)
    logger.info(_("Scheduled check: %(summary)s") % {"summary": report.summary(perfdata=False)})
    if report.level < Level.CRITICAL:
        return EXIT_OK
    notifications.notify_monitoring(report)
    return EXIT_FAILED


def run_scheduled_drills(databases: list[str] | None = None) -> list[ScheduledRun]:
    """Ask for a restore drill of each scheduled database's newest usable backup (one without any is skipped)."""
    from .selectors import latest_successful_per_database

    latest = latest_successful_per_database()
    runs = []
    for database in databases or scheduled_databases():
        if database not in latest:
            logger.info(_("Scheduled drill: database %(database)r has no completed backup to drill.")
                        % {"database": database})
            continue
        try:
            drill = services.request_drill(backup=latest[database])
        except Exception as exc:  # noqa: BLE001  (as for a scheduled backup: all mean "not queued")
            message = _("Scheduled drill of database %(database)r could not be queued: %(reason)s") % {
                "database": database, "reason": str(exc).strip().splitlines()[0]}
            logger.error(message)
            runs.append(ScheduledRun(database, FAILED, message))
            continue
        message = _("Scheduled drill #%(id)s of backup #%(backup)s is queued.") % {
            "id": drill.pk, "backup": drill.backup_id}
        logger.info(message)
        runs.append(ScheduledRun(database, QUEUED, message))
    return runs


def scheduled_check() -> None:
    """The CRONJOBS entry of BACKUP_CHECK_SCHEDULE."""
    _exit(run_scheduled_check())


def scheduled_drill() -> None:
    """The CRONJOBS entry of BACKUP_DRILL_SCHEDULE."""
    _exit(exit_status(run_scheduled_drills()))


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
