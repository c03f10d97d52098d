"""What the operations share: who and where a job runs, the busy message, stale jobs."""

from __future__ import annotations

import os
import socket

from django.utils import timezone
from django.utils.translation import gettext as _

from ..engines import get_engine
from ..errors import BackupError
from ..humanize import human_time
from ..models import BackupStatus, Restore, RestoreStatus
from ..selectors import running_jobs


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


def _fail_stale_jobs(database: str) -> None:
    """Mark jobs left RUNNING by a process that died; only call while holding the database's lock.

    A job is RUNNING only while its process holds this lock, so whoever holds it now sees only dead
    ones. PENDING records (asked for, waiting for their process) are left alone.
    """
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
