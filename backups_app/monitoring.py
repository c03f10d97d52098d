"""Can the backups be trusted right now? What `backup_check`, the deployment checks and /health/ report.

Each scheduled database (BACKUP_DATABASES) is CRITICAL when it has no successful backup, when its
newest successful backup is older than BACKUP_MAX_AGE_HOURS, when its newest finished backup
failed, when a backup of it was left RUNNING by a process that died, or when it cannot be backed
up now (server unreachable, pg_dump missing or older than the server). The storage is CRITICAL
when a file cannot be written to it, and a WARNING when its free space is less than twice the
largest newest backup. Levels and exit codes follow the Nagios plugin convention.

/health/ is public and may be called often: its check writes nothing (the storage's permissions are
read instead of a file being written) and keeps the costly probes (a connection to each database,
`pg_dump --version`, the storage) in Django's cache for PROBE_CACHE_SECONDS.

Restore drills: a database whose newest drill failed is CRITICAL; one where no drill has passed for
BACKUP_DRILL_MAX_AGE_DAYS (when set) is a WARNING.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.utils import timezone
from django.utils.translation import gettext as _

from . import archives
from .conf import setting
from .engines import get_engine
from .errors import BackupError
from .models import USABLE_STATUSES, BackupJob, BackupStatus, Drill, DrillStatus
from .schedule import scheduled_databases
from .selectors import dated_in_the_future, finished_newest_first
from .services import fail_dead_jobs, find_dead_jobs, kept_databases_size


class Level(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name


# Problem codes: stable, and the only thing /health/ says about a problem (messages can name hosts and paths).
NEVER = "never_backed_up"
STALE = "stale"
FAILED = "last_backup_failed"
INTERRUPTED = "interrupted"
UNAVAILABLE = "cannot_back_up"
CATALOG = "catalog_unreadable"
STORAGE = "storage_not_writable"
STORAGE_LOW = "storage_low"
FUTURE = "dated_in_the_future"
DRILL_FAILED = "drill_failed"
NOT_DRILLED = "not_drilled"

PROBE_CACHE_SECONDS = 60
# Free space means nothing on S3: a small object is written and deleted instead, at most this often.
OBJECT_STORE_PROBE_SECONDS = 300


@dataclass(frozen=True)
class Problem:
    level: Level
    code: str
    message: str  # one line, for people
    database: str | None = None


@dataclass
class DatabaseState:
    database: str
    latest: BackupJob | None = None  # the newest successful backup
    age_hours: float | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def level(self) -> Level:
        return max((problem.level for problem in self.problems), default=Level.OK)


@dataclass
class HealthReport:
    checked_at: datetime
    max_age_hours: float
    databases: dict[str, DatabaseState]
    problems: list[Problem]  # every problem, the databases' included
    dead_jobs_failed: int = 0
    # Bytes taken on the database servers by the databases restores by swap keep for an undo.
    kept_databases_bytes: int = 0

    @property
    def level(self) -> Level:
        return max((problem.level for problem in self.problems), default=Level.OK)

    def summary(self, *, perfdata: bool = True) -> str:
        """Return the one-line summary of a Nagios plugin: status, what is wrong (or right), perfdata."""
        if self.problems:
            worst = sorted(self.problems, key=lambda problem: -problem.level)
            text = "; ".join(problem.message for problem in worst)
        else:
            text = "; ".join(
                _("%(database)s: newest backup #%(id)s is %(hours).1f hours old") % {
                    "database": state.database, "id": state.latest.pk, "hours": state.age_hours}
                for state in self.databases.values()
            ) + " " + _("(limit %(limit)s hours)") % {"limit": _number(self.max_age_hours)}
        line = f"BACKUP {self.level.label} - {text}"
        ages = " ".join(
            f"'age_{state.database}'={int(state.age_hours * 3600)}s;;{int(self.max_age_hours * 3600)};0"
            for state in self.databases.values()
            if state.age_hours is not None
        )
        if self.kept_databases_bytes:
            ages = f"{ages} 'kept_replaced_databases'={self.kept_databases_bytes}B;;;0".strip()
        return f"{line} | {ages}" if perfdata and ages else line

    def to_dict(self) -> dict:
        """Everything, for `backup_check --json` (messages may name hosts and paths: not for the public)."""
        return {
            "status": self.level.label.lower(),
            "exit_code": int(self.level),
            "summary": self.summary(),
            "checked": self.checked_at.isoformat(),
            "max_age_hours": self.max_age_hours,
            "dead_jobs_failed": self.dead_jobs_failed,
            "kept_databases_bytes": self.kept_databases_bytes,
            "databases": {
                name: {
                    "status": state.level.label.lower(),
                    "latest_backup": state.latest.pk if state.latest else None,
                    "latest_backup_created": state.latest.created_at.isoformat() if state.latest else None,
                    "age_hours": _rounded(state.age_hours),
                }
                for name, state in self.databases.items()
            },
            "problems": [
                {"level": problem.level.label.lower(), "code": problem.code, "database": problem.database,
                 "message": problem.message}
                for problem in self.problems
            ],
        }

    def to_public_dict(self) -> dict:
        """What an uptime monitor may see: statuses, ages and problem codes; no messages, paths or hosts."""
        return {
            "status": self.level.label.lower(),
            "checked": self.checked_at.isoformat(),
            "max_age_hours": self.max_age_hours,
            "databases": {
                name: {
                    "status": state.level.label.lower(),
                    "latest_backup_created": state.latest.created_at.isoformat() if state.latest else None,
                    "age_hours": _rounded(state.age_hours),
                    "problems": [problem.code for problem in state.problems],
                }
                for name, state in self.databases.items()
            },
            "problems": [
                {"level": problem.level.label.lower(), "code": problem.code, "database": problem.database}
                for problem in self.problems
            ],
        }


def _number(value: float) -> str:
    return f"{value:g}"


def _rounded(hours: float | None) -> float | None:
    return None if hours is None else round(hours, 2)


def _first_line(error: object) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else error.__class__.__name__


def check_health(*, fail_dead: bool = False, light: bool = False) -> HealthReport:
    """Return the health of the scheduled databases and the storage.

    With `fail_dead`, jobs whose process died are first marked FAILED with a reason (what
    `backup_check` does); without it nothing is changed and such jobs are only reported.
    With `light` (/health/), nothing is written to the storage and the probes of the database
    servers and the storage are reused for PROBE_CACHE_SECONDS.
    """
    now = timezone.now()
    max_age = float(setting("BACKUP_MAX_AGE_HOURS"))
    report = HealthReport(checked_at=now, max_age_hours=max_age, databases={}, problems=[])
    try:
        if fail_dead:
            report.dead_jobs_failed = fail_dead_jobs()
        interrupted = _interrupted_jobs()
        if not light:  # asks each server that holds one
            report.kept_databases_bytes = kept_databases_size()
        for database in scheduled_databases():
            report.databases[database] = _database_state(
                database, now, max_age, [job for job in interrupted if job.database == database], light=light
            )
    except DatabaseError as exc:
        report.problems.append(Problem(
            Level.CRITICAL, CATALOG,
            _("The backup catalog cannot be read (%(reason)s); check DATABASE_URL and run migrate.")
            % {"reason": _first_line(exc)},
        ))
    for state in report.databases.values():
        report.problems += state.problems
    report.problems += _storage_problems(report.databases.values(), light=light)
    return report


def _probe(key: str, probe, *, cached: bool, seconds: int = PROBE_CACHE_SECONDS) -> str:
    """Return what `probe()` returns (a problem, or ""), from the cache when `cached` and fresh enough."""
    if cached and (result := cache.get(key)) is not None:
        return result
    result = probe()
    cache.set(key, result, seconds)
    return result


def _database_state(
    database: str, now: datetime, max_age: float, interrupted: list[BackupJob], *, light: bool = False
) -> DatabaseState:
    state = DatabaseState(database)
    # By when they finished, as recorded; a backup dated in the future is reported, never counted.
    finished = finished_newest_first(database, now)
    state.latest = finished.filter(status__in=USABLE_STATUSES).first()
    last = finished.first()
    values = {"database": database, "limit": _number(max_age)}
    for job in dated_in_the_future(database, now):
        state.problems.append(Problem(
            Level.WARNING, FUTURE,
            _("%(database)s: backup #%(id)s is dated in the future (finished %(finished)s); it does not count as "
              "the newest backup: check the clock of host %(host)s, or the manifest it was imported from")
            % {**values, "id": job.pk, "finished": (job.finished_at or job.created_at).isoformat(timespec="minutes"),
               "host": job.hostname or "-"},
            database,
        ))
    if state.latest is None:
        state.problems.append(Problem(
            Level.CRITICAL, NEVER, _("%(database)s: no successful backup yet") % values, database))
    else:
        state.age_hours = (now - state.latest.created_at).total_seconds() / 3600
        if state.age_hours > max_age:
            state.problems.append(Problem(
                Level.CRITICAL, STALE,
                _("%(database)s: newest backup #%(id)s is %(hours).1f hours old (limit %(limit)s hours)")
                % {**values, "id": state.latest.pk, "hours": state.age_hours},
                database,
            ))
    if last is not None and last.status == BackupStatus.FAILED:
        state.problems.append(Problem(
            Level.CRITICAL, FAILED,
            _("%(database)s: last backup #%(id)s failed: %(reason)s")
            % {**values, "id": last.pk, "reason": _first_line(last.error or _("no reason recorded"))},
            database,
        ))
    for job in interrupted:
        state.problems.append(Problem(
            Level.CRITICAL, INTERRUPTED,
            _("%(database)s: backup #%(id)s is marked running but its process is gone (run backup_check to "
              "mark it failed)") % {**values, "id": job.pk},
            database,
        ))
    state.problems += _drill_problems(database, now, state.latest)
    reason = _probe(f"backups_app.health.describe.{database}", lambda: _cannot_back_up(database), cached=light)
    if reason:
        state.problems.append(Problem(
            Level.CRITICAL, UNAVAILABLE, _("%(database)s: cannot be backed up: %(reason)s") % {**values, "reason": reason},
            database,
        ))
    return state


def _drill_problems(database: str, now: datetime, latest: BackupJob | None) -> list[Problem]:
    """A database's newest restore drill failed (CRITICAL); none passed within BACKUP_DRILL_MAX_AGE_DAYS (WARNING)."""
    drills = Drill.objects.filter(database=database, status__in=[DrillStatus.PASSED, DrillStatus.FAILED],
                                  finished_at__isnull=False).order_by("-finished_at", "-id")
    problems = []
    newest = drills.first()
    if newest is not None and newest.status == DrillStatus.FAILED:
        problems.append(Problem(
            Level.CRITICAL, DRILL_FAILED,
            _("%(database)s: the restore drill of backup #%(backup)s failed: %(reason)s")
            % {"database": database, "backup": newest.backup_id, "reason": _first_line(newest.error or "-")},
            database,
        ))
    max_days = float(setting("BACKUP_DRILL_MAX_AGE_DAYS") or 0)
    if max_days > 0 and latest is not None:
        passed = drills.filter(status=DrillStatus.PASSED).first()
        if passed is None or (now - passed.finished_at).total_seconds() > max_days * 86400:
            problems.append(Problem(
                Level.WARNING, NOT_DRILLED,
                _("%(database)s: no restore drill has passed in the last %(days)s days (newest backup #%(id)s is "
                  "not proven to restore); run backup_drill --latest --database %(database)s")
                % {"database": database, "days": _number(max_days), "id": latest.pk},
                database,
            ))
    return problems


def _cannot_back_up(database: str) -> str:
    """Return why a database cannot be backed up now (server, pg_dump), or ""."""
    try:
        get_engine(database).describe()
    except BackupError as exc:
        return _first_line(exc)
    return ""


def _interrupted_jobs() -> list[BackupJob]:
    """Return the running backups whose worker died, by the one rule of services.find_dead_jobs; change nothing."""
    return [
        record for record, _reason in find_dead_jobs()
        if isinstance(record, BackupJob) and record.status == BackupStatus.RUNNING
    ]


def _storage_problems(states, *, light: bool = False) -> list[Problem]:
    root = archives.local_path("")
    where = hashlib.sha256(str(root or settings.STORAGES["backups"]).encode()).hexdigest()[:16]
    if root is None:  # object storage: writing and deleting a small object is the only test, cached
        reason = _probe(f"backups_app.health.storage.{where}", _storage_write_problem, cached=True,
                        seconds=OBJECT_STORE_PROBE_SECONDS)
    elif light:
        reason = _probe(f"backups_app.health.storage.{where}", lambda: _storage_permission_problem(root), cached=True)
    else:
        reason = _storage_write_problem()
    if reason:
        return [Problem(Level.CRITICAL, STORAGE, _("the backup storage is not writable: %(reason)s") % {"reason": reason})]
    largest = max((state.latest.size_bytes or 0 for state in states if state.latest), default=0)
    if root and largest:
        free = shutil.disk_usage(nearest_existing(root)).free
        if free < 2 * largest:
            return [Problem(
                Level.WARNING, STORAGE_LOW,
                _("the backup storage has %(free)s MB free, less than twice the largest backup (%(size)s MB)")
                % {"free": free // 2**20, "size": largest // 2**20},
            )]
    return []


def _storage_write_problem() -> str:
    """Write and delete a small file in the backup storage, as archives are written; return why that failed, or ""."""
    probe = f".health-check-{uuid.uuid4().hex}"
    try:
        with archives.stored(probe) as handle:
            handle.write(b"ok")
        archives.delete(probe)
    except Exception as exc:  # noqa: BLE001  (OSError, a storage backend's own errors: all mean "not writable")
        return _first_line(exc)
    return ""


def _storage_permission_problem(root: str) -> str:
    """Return why this process could not write to the local backup storage, or "", without writing anything."""
    existing = nearest_existing(root)  # a missing storage directory is made by the first backup, in there
    if os.path.isdir(existing) and os.access(existing, os.W_OK | os.X_OK):
        return ""
    return _("%(path)s is not a directory this user may write in") % {"path": existing}


def nearest_existing(path: str) -> str:
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path
