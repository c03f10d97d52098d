"""Ask for a backup or a restore to run in the background, and run it when a worker picks it up.

The one request path of every entry point that does not wait for the result (the admin, the commands'
`--background`, the schedule): request_backup() / request_restore() / request_drill() check the request, record it
(every option on the record) and, once that is committed, announce it (backups_app.signals); the task
layer queues a task holding only the record's id, and the worker calls run_requested_backup() /
run_requested_restore(), which read everything else from the record. Running in the foreground calls
create_backup() / restore_backup() directly.
"""

from __future__ import annotations

from typing import Sequence

from django.contrib.admin.models import ADDITION, CHANGE
from django.db import router, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..engines import get_engine
from ..errors import BackupError
from ..models import (
    BackupJob,
    BackupStatus,
    BackupTrigger,
    Drill,
    DrillStatus,
    Restore,
    RestoreStatus,
    RestoreStrategy,
)
from ..selectors import get_backup
from ..signals import backup_requested, drill_requested, restore_requested
from .audit import log_action
from .backup import _check_description, _checked_compression, create_backup
from .common import QUEUED_LOCK_WAIT, _user_fields
from .drills import drill_backup, drillable
from .restore import check_restore_options, restorable_into, restore_backup, untrusted_refusal


def _announce_on_commit(signal, **record) -> None:
    """Send `signal` once the record is committed: a worker must be able to read it when its task runs."""
    using = router.db_for_write(BackupJob)
    (instance,) = record.values()
    transaction.on_commit(lambda: signal.send(sender=type(instance), **record), using=using)


def request_backup(
    *,
    database: str = "default",
    acting_user=None,
    trigger: str = BackupTrigger.MANUAL,
    description: str = "",
    compression: str | None = None,
) -> BackupJob:
    """Record a PENDING backup with its options and queue it; return it at once.

    It waits in the queue behind any other backup or restore of the same database.
    """
    compression = _checked_compression(compression)
    _check_description(description)
    engine = get_engine(database)
    job = BackupJob.objects.create(
        database=database, engine=engine.name, trigger=trigger, description=description, compression=compression,
        **_user_fields(acting_user),
    )
    log_action(acting_user=acting_user, objects=[job], action_flag=ADDITION, message=[{"added": {}}])
    _announce_on_commit(backup_requested, job=job)
    return job


def request_restore(
    *,
    backup: BackupJob | int,
    acting_user=None,
    database: str | None = None,
    safety_backup: bool = True,
    terminate_sessions: bool = False,
    trust_archive: bool = False,
    strategy: str = "",
    jobs: int | None = None,
    into: str = "",
    tables: Sequence[str] = (),
) -> Restore:
    """Record a PENDING restore with its options and queue it; return it at once (options: restore_backup())."""
    backup = get_backup(backup)
    database = database or backup.database
    check_restore_options(strategy=strategy, jobs=jobs, into=into, tables=tables)
    restorable_into(backup, database)
    if not backup.trusted and not trust_archive:
        raise BackupError(untrusted_refusal(backup))
    restore = Restore.objects.create(
        backup=backup, database=database, status=RestoreStatus.PENDING, take_safety_backup=safety_backup,
        terminate_sessions=terminate_sessions, trust_archive=trust_archive, **_user_fields(acting_user),
        strategy=RestoreStrategy.INTO if into else strategy, jobs=jobs, into=into, tables=",".join(tables),
    )
    _announce_on_commit(restore_requested, restore=restore)
    return restore


def request_drill(*, backup: BackupJob | int, acting_user=None) -> Drill:
    """Record a PENDING restore drill of a backup and queue it; return it at once."""
    backup = get_backup(backup)
    drillable(backup)
    drill = Drill.objects.create(backup=backup, database=backup.database, **_user_fields(acting_user))
    log_action(acting_user=acting_user, objects=[backup], action_flag=CHANGE,
               message=_("Asked for restore drill #%(id)s.") % {"id": drill.pk})
    _announce_on_commit(drill_requested, drill=drill)
    return drill


def retry_backup(*, backup: BackupJob | int, acting_user=None) -> BackupJob:
    """Ask again for a failed backup, with the same options."""
    backup = get_backup(backup)
    if backup.status != BackupStatus.FAILED:
        raise BackupError(_("Backup #%(id)s did not fail; only a failed backup can be retried.") % {"id": backup.pk})
    return request_backup(
        database=backup.database, acting_user=acting_user, trigger=backup.trigger, description=backup.description,
        compression=backup.compression,
    )


def run_requested_backup(*, job_id: int) -> BackupJob:
    """Run a PENDING backup as its record says (the worker's side of request_backup)."""
    job = get_backup(job_id)
    # Who asked, the trigger and the description are on the record already.
    return create_backup(database=job.database, compression=job.compression, job=job, wait=QUEUED_LOCK_WAIT)


def run_requested_restore(*, restore_id: int) -> Restore:
    """Run a PENDING restore as its record says (the worker's side of request_restore)."""
    restore = Restore.objects.select_related("backup").get(pk=restore_id)
    if restore.status != RestoreStatus.PENDING:
        return restore
    if restore.backup is None:
        Restore.objects.filter(pk=restore.pk).update(
            status=RestoreStatus.FAILED, finished_at=timezone.now(),
            error=_("Its backup was deleted before the restore could run."),
        )
        raise BackupError(_("Restore #%(id)s: its backup was deleted before it could run.") % {"id": restore.pk})
    return restore_backup(
        backup=restore.backup, acting_user=restore.requested_by, database=restore.database,
        safety_backup=restore.take_safety_backup and not restore.into, terminate_sessions=restore.terminate_sessions,
        restore=restore, trust_archive=restore.trust_archive, wait=QUEUED_LOCK_WAIT,
    )


def run_requested_drill(*, drill_id: int) -> Drill:
    """Run a PENDING drill as its record says (the worker's side of request_drill)."""
    drill = Drill.objects.select_related("backup").get(pk=drill_id)
    if drill.status != DrillStatus.PENDING:
        return drill
    return drill_backup(backup=drill.backup, acting_user=drill.requested_by, drill=drill, wait=QUEUED_LOCK_WAIT)
