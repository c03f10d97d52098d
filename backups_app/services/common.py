"""What the operations share: who and where a job runs, the database's lock, the busy message, and
the one rule that finds jobs whose worker died."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from datetime import timedelta
from typing import Callable, Iterator

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_tasks import default_task_backend
from django_tasks.exceptions import TaskResultDoesNotExist

from ..engines import Engine, get_engine
from ..errors import BackupError, DatabaseBusy
from ..humanize import human_time
from ..models import BackupJob, BackupStatus, Drill, DrillStatus, Restore, RestoreStatus
from ..selectors import running_jobs

logger = logging.getLogger(__name__)


def _user_fields(acting_user) -> dict:
    if acting_user is None or not acting_user.is_authenticated:
        return {"requested_by": None, "requested_by_name": ""}
    return {"requested_by": acting_user, "requested_by_name": acting_user.get_username()}


def _process_fields() -> dict:
    return {"hostname": socket.gethostname(), "pid": os.getpid()}


def _busy_message(database: str) -> str:
    """Say which operation holds a database's lock: only a RUNNING record can (a PENDING one waits for it)."""
    restore = Restore.objects.filter(database=database, status=RestoreStatus.RUNNING).first()
    if restore:
        return _(
            "Restore #%(id)s into database %(database)r was running (started %(started)s); try again when it "
            "has finished."
        ) % {"id": restore.pk, "database": database, "started": human_time(restore.started_at)}
    job = running_jobs(database).first()
    if job:
        return _(
            "Backup #%(id)s of database %(database)r was running (started %(started)s); try again when it has "
            "finished."
        ) % {"id": job.pk, "database": database, "started": human_time(job.started_at or job.created_at)}
    return _("Another backup or restore of database %(database)r was running; try again when it has finished.") % {
        "database": database
    }


# Why a RUNNING job whose database lock is free is dead: the process that runs a job holds that lock
# from before it marks the job RUNNING until after it marks it finished (the server frees it when the
# process dies, even on another host: see engines' lock()).
DEAD_REASON = gettext_lazy(
    "The worker running this job stopped before it finished (killed, or its host was lost): the database's "
    "lock was free while the job was still marked running."
)
# A running backup says it is alive every few seconds; when its database cannot be reached to test the
# lock, a silence this long means its worker is gone.
HEARTBEAT_LIMIT = timedelta(minutes=5)
# A job that waits in the queue for another backup or restore of its database gives up after this long.
QUEUED_LOCK_WAIT = 6 * 3600
LOCK_POLL_SECONDS = 1.0


# The status choices of each kind of job (their PENDING, RUNNING and FAILED values are the same).
STATUSES = {BackupJob: BackupStatus, Restore: RestoreStatus, Drill: DrillStatus}


def set_phase(record: BackupJob | Restore | Drill | None, phase: str) -> None:
    """Say which step a job is at (a backup's says it is alive, too).

    A queryset update: a full save() here could overwrite fields changed meanwhile.
    """
    if record is None or not record.pk:
        return
    fields = {"phase": phase}
    if isinstance(record, BackupJob):
        fields["heartbeat_at"] = timezone.now()
    type(record).objects.filter(pk=record.pk).update(**fields)
    record.phase = phase


def mark_failed(record: BackupJob | Restore | Drill, reason: str) -> None:
    """Record that a backup or restore failed, and why; only these fields (others may have changed since)."""
    record.status = STATUSES[type(record)].FAILED
    record.error = reason
    record.finished_at = timezone.now()
    record.save(update_fields=["status", "error", "finished_at"])


def _fail_stale_jobs(database: str) -> None:
    """Mark the jobs of a database left RUNNING by a worker that died; call only while holding its lock."""
    now = timezone.now()
    running_jobs(database).update(status=BackupStatus.FAILED, finished_at=now, error=str(DEAD_REASON))
    for model, statuses in ((Restore, RestoreStatus), (Drill, DrillStatus)):
        model.objects.filter(database=database, status=statuses.RUNNING).update(
            status=statuses.FAILED, finished_at=now, error=str(DEAD_REASON)
        )


@contextlib.contextmanager
def database_lock(engine: Engine, *, wait: float = 0, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold a database's one-operation-at-a-time lock, waiting up to `wait` seconds for it.

    A job that runs from the queue waits for the backup or restore ahead of it; one run in the
    foreground (wait=0) is refused at once. Either way the refusal names what held the lock. Jobs
    left RUNNING by a dead worker are marked FAILED as soon as the lock is held.
    """
    deadline = time.monotonic() + wait
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(engine.lock())
                break
            except DatabaseBusy as exc:
                if time.monotonic() >= deadline:
                    raise DatabaseBusy(_busy_message(engine.alias)) from exc
                if on_wait is not None:
                    on_wait()  # each time: it also says the waiting worker is alive
                time.sleep(LOCK_POLL_SECONDS)
        engine.recover_interrupted_restore()
        _fail_stale_jobs(engine.alias)
        yield


def find_dead_jobs(database: str | None = None) -> list[tuple[BackupJob | Restore, str]]:
    """Return the unfinished jobs whose worker is gone, with why; change nothing.

    The one rule, for every host and task backend: a RUNNING job is dead when its database's lock is
    free (or, when the database cannot be reached, when a backup has not said it is alive for
    HEARTBEAT_LIMIT); a PENDING job is dead when its task has ended, or vanished, without running it.
    """
    running = [*running_jobs(database), *Restore.objects.filter(status=RestoreStatus.RUNNING),
               *Drill.objects.filter(status=DrillStatus.RUNNING)]
    if database:
        running = [record for record in running if record.database == database]
    dead = []
    for name in {record.database for record in running}:
        try:
            lock_free = get_engine(name).lock_is_free()
        except BackupError:
            lock_free = None  # unreachable: only the heartbeat can tell
        silent_since = timezone.now() - HEARTBEAT_LIMIT
        for record in running:
            if record.database != name:
                continue
            if lock_free:
                dead.append((record, str(DEAD_REASON)))
            elif lock_free is None and getattr(record, "heartbeat_at", None) and record.heartbeat_at < silent_since:
                dead.append((record, _(
                    "The worker running this job has not said it is alive for %(minutes)s minutes and its database "
                    "cannot be reached: it is taken for lost."
                ) % {"minutes": int(HEARTBEAT_LIMIT.total_seconds() // 60)}))
    pending = [*BackupJob.objects.filter(status=BackupStatus.PENDING), *Restore.objects.filter(status=RestoreStatus.PENDING),
               *Drill.objects.filter(status=DrillStatus.PENDING)]
    long_ago = timezone.now() - HEARTBEAT_LIMIT
    for record in pending:
        if database and record.database != database:
            continue
        asked_at = record.started_at if isinstance(record, Restore) else record.created_at
        if not record.task_id:
            if asked_at < long_ago:
                dead.append((record, _("This job was never queued (or was asked for by an older version); retry it.")))
            continue
        state = task_state(record.task_id)
        if state in ("SUCCESSFUL", "FAILED", None):
            dead.append((record, _(
                "The task queued for this job ended without running it (see the worker's log); retry it."
            ) if state else _("The task queued for this job is no longer in the queue; retry it.")))
        elif state == "RUNNING" and getattr(record, "heartbeat_at", None) and record.heartbeat_at < long_ago:
            # Its worker took it and waited for the database's lock, saying so every second, then fell silent.
            dead.append((record, _(
                "The worker that took this job has not said it is alive for %(minutes)s minutes: it is taken for lost; "
                "retry it."
            ) % {"minutes": int(HEARTBEAT_LIMIT.total_seconds() // 60)}))
    return dead


def task_state(task_id: str) -> str | None:
    """Return the status of a queued task (READY, RUNNING, SUCCESSFUL, FAILED), None if the queue lost it,
    or UNKNOWN when the queue cannot be asked (Redis down, say): then nothing is concluded."""
    try:
        return default_task_backend.get_result(task_id).status
    except TaskResultDoesNotExist:
        return None
    except Exception:  # noqa: BLE001  (any backend's connection error)
        logger.warning("The task queue cannot be asked about task %s.", task_id, exc_info=True)
        return "UNKNOWN"


def fail_dead_jobs(database: str | None = None, *, kinds: tuple[type, ...] = (BackupJob, Restore, Drill)) -> int:
    """Mark FAILED, with the reason, every unfinished job (of `kinds`) whose worker is gone; return how many."""
    failed = 0
    for record, reason in find_dead_jobs(database):
        if not isinstance(record, kinds):
            continue
        statuses = STATUSES[type(record)]
        failed += type(record).objects.filter(pk=record.pk, status=record.status).update(
            status=statuses.FAILED, finished_at=timezone.now(), error=reason
        )
    return failed
