"""The background tasks (Django's task framework, through the django-tasks backport of Django 6's
`django.tasks`): each takes a record's id, and the worker that runs it calls one service.

The backend is a setting (TASKS, chosen by BACKUP_TASK_BACKEND): the database's own queue with
`manage.py backup_worker`, or RQ on Redis for workers on several hosts. Nothing here knows which.
"""

from __future__ import annotations

import logging

from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext as _
from django_tasks import task

from . import services
from .errors import BackupError
from .models import BackupJob, BackupStatus, Drill, DrillStatus, Restore, RestoreStatus
from .signals import backup_requested, drill_requested, restore_requested

logger = logging.getLogger(__name__)


@task()
def run_backup(job_id: int) -> str:
    try:
        job = services.run_requested_backup(job_id=job_id)
    except BackupError as exc:  # recorded on the job: the task itself ran as it should
        logger.warning("Backup #%s failed: %s", job_id, exc)
        return BackupStatus.FAILED
    return job.status


@task()
def run_restore(restore_id: int) -> str:
    try:
        restore = services.run_requested_restore(restore_id=restore_id)
    except BackupError as exc:
        logger.warning("Restore #%s failed: %s", restore_id, exc)
    restore = Restore.objects.get(pk=restore_id)  # as it is now: a restore of the catalog may have changed it
    _log_restore(restore)
    return restore.status


@task()
def run_drill(drill_id: int) -> str:
    try:
        drill = services.run_requested_drill(drill_id=drill_id)
    except BackupError as exc:
        logger.warning("Restore drill #%s failed: %s", drill_id, exc)
        return DrillStatus.FAILED
    return drill.status


def _log_restore(restore: Restore) -> None:
    """Write the admin LogEntry of a finished restore that someone asked for.

    Written once the restore has finished, not when it was asked for: a restore of the application's
    own database puts the LogEntry table back to the backup's state.
    """
    if restore.requested_by_id is None or restore.status not in (RestoreStatus.COMPLETED, RestoreStatus.FAILED):
        return
    if restore.requested_by.get_username() != restore.requested_by_name:
        return  # the restored users are not the ones who asked: never credit another person
    values = {"backup": restore.backup_id, "database": restore.database, "error": restore.error}
    if restore.status == RestoreStatus.COMPLETED:
        message = _("Restored backup #%(backup)s into database %(database)s.") % values
    else:
        message = _("Restore of backup #%(backup)s into database %(database)s failed: %(error)s") % values
    LogEntry.objects.create(
        user_id=restore.requested_by_id,
        content_type=ContentType.objects.get_for_model(Restore),
        object_id=str(restore.pk),
        object_repr=str(restore)[:200],
        action_flag=ADDITION,
        change_message=message,
    )


def _queue(record: BackupJob | Restore | Drill, queued_task) -> None:
    statuses = {BackupJob: BackupStatus, Restore: RestoreStatus, Drill: DrillStatus}[type(record)]
    records = type(record).objects.filter(pk=record.pk)
    try:
        result = queued_task.enqueue(record.pk)
    except Exception as exc:  # noqa: BLE001  (a queue that cannot be reached: the record must say so)
        logger.exception("Could not queue %s.", record)
        records.filter(status=statuses.PENDING).update(
            status=statuses.FAILED, finished_at=timezone.now(),
            error=_("The job could not be queued (%(reason)s); check BACKUP_TASK_BACKEND and that its queue is "
                    "reachable, then retry.") % {"reason": exc},
        )
        return
    records.update(task_id=result.id)
    record.task_id = result.id


@receiver(backup_requested)
def queue_backup(sender, job: BackupJob, **kwargs) -> None:
    _queue(job, run_backup)


@receiver(restore_requested)
def queue_restore(sender, restore: Restore, **kwargs) -> None:
    _queue(restore, run_restore)


@receiver(drill_requested)
def queue_drill(sender, drill: Drill, **kwargs) -> None:
    _queue(drill, run_drill)
