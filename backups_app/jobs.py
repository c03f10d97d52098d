"""Run backups and restores outside the web request, in a detached `manage.py` process.

The admin records the job first (a PENDING BackupJob or Restore), then starts
`manage.py backup_create --job ID` or `manage.py backup_restore ... --restore ID` in a new session:
the process survives the request ending and a restart of the web worker. Its output goes to a
log file named after the job, in a directory of this installation only (BACKUP_JOB_LOG_DIRECTORY),
whose last line becomes the reason when the process dies early.

A job whose process died is found by `fail_dead_jobs()`: by its process id on this host, by the
core's lock test (`services.fail_stale_jobs`, for RUNNING jobs) elsewhere, and by a start-up timeout
for a PENDING job that no process ever picked up.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import CharField, Exists, OuterRef
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext as _

from . import services
from .conf import setting
from .errors import BackupError
from .models import ACTIVE_RESTORE_STATUSES, BackupJob, BackupStatus, Restore, RestoreStatus

logger = logging.getLogger(__name__)

# A PENDING job is picked up within a second or two; after this long nobody will pick it up.
START_TIMEOUT = timedelta(seconds=120)


def log_directory() -> Path:
    """Return the directory of the job processes' log files (BACKUP_JOB_LOG_DIRECTORY), made 0700 if missing.

    Refuse one that someone else could change: through a symlink, or a file put in it, another user
    could send a job's output into any file, or write the line that becomes a job's failure reason.
    """
    directory = Path(setting("BACKUP_JOB_LOG_DIRECTORY"))
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass  # whatever it is, it is checked below
    except OSError as exc:
        raise BackupError(
            _("The job log directory %(directory)s cannot be created (%(reason)s); set BACKUP_JOB_LOG_DIRECTORY "
              "to a directory this user may write.") % {"directory": directory, "reason": exc.strerror}
        ) from exc
    info = directory.lstat()
    if stat.S_ISLNK(info.st_mode):
        problem = _("is a symbolic link")
    elif not stat.S_ISDIR(info.st_mode):
        problem = _("is not a directory")
    elif info.st_uid != os.geteuid():
        problem = _("belongs to user id %(owner)s, not to this process's user id %(user)s") % {
            "owner": info.st_uid, "user": os.geteuid()}
    elif info.st_mode & 0o077:
        problem = _("is open to other users (mode %(mode)s)") % {"mode": oct(stat.S_IMODE(info.st_mode))}
    else:
        return directory
    raise BackupError(
        _("The job log directory %(directory)s %(problem)s; make it a directory of this user with mode 0700, or "
          "set BACKUP_JOB_LOG_DIRECTORY to another.") % {"directory": directory, "problem": problem}
    )


def log_path(kind: str, pk: int) -> Path:
    return log_directory() / f"{kind}-{pk}.log"


def _manage_py() -> str:
    return str(Path(settings.BASE_DIR) / "manage.py")


def _spawn(args: list[str], log_file: Path) -> int:
    """Start `manage.py ARGS` detached from this process; return its pid."""
    # O_NOFOLLOW: a symlink in place of the log file makes the start fail rather than write through
    # it. O_TRUNC: a job id used again (a new catalog) does not inherit an old job's last line.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    with open(os.open(log_file, flags, 0o600), "wb") as log:
        os.fchmod(log.fileno(), 0o600)
        process = subprocess.Popen(
            [sys.executable, _manage_py(), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(settings.BASE_DIR),
            env=dict(os.environ),
            close_fds=True,
            start_new_session=True,  # a signal to the web server's process group does not reach it
        )
    # Reap the child when it exits so it does not linger as a zombie while this worker lives; if the
    # worker goes first, init adopts and reaps it.
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    return process.pid


def start_backup(*, database: str, description: str, compression: str, acting_user) -> BackupJob:
    """Record a PENDING backup and start a detached process that runs it; return the job at once."""
    job = BackupJob.objects.create(
        database=database,
        description=description,
        compression=compression,
        requested_by=acting_user,
        requested_by_name=acting_user.get_username(),
    )
    transaction.on_commit(lambda: _start_backup_process(job))
    return job


def _start_backup_process(job: BackupJob) -> None:
    _start_process(job, ["backup_create", "--job", str(job.pk)], "backup",
                   BackupStatus.PENDING, _("The backup process could not be started: %(reason)s."))


def start_restore(
    *, backup: BackupJob, database: str, safety_backup: bool, terminate_sessions: bool, acting_user,
    trust_archive: bool = False,
) -> Restore:
    """Record a PENDING restore and start a detached process that runs it; return the record at once."""
    restore = Restore.objects.create(
        backup=backup,
        database=database,
        status=RestoreStatus.PENDING,
        requested_by=acting_user,
        requested_by_name=acting_user.get_username(),
    )
    args = ["backup_restore", str(backup.pk), "--database", database, "--no-input", "--restore", str(restore.pk)]
    if not safety_backup:
        args.append("--no-safety-backup")
    if terminate_sessions:
        args.append("--terminate-connections")
    if trust_archive:
        args.append("--trust-archive")
    transaction.on_commit(lambda: _start_restore_process(restore, args))
    return restore


def _start_restore_process(restore: Restore, args: list[str]) -> None:
    _start_process(restore, args, "restore",
                   RestoreStatus.PENDING, _("The restore process could not be started: %(reason)s."))


def _start_process(record: BackupJob | Restore, args: list[str], kind: str, waiting: str, failure: str) -> None:
    """Start the detached process of a recorded job; if it cannot start, the record says why."""
    records = type(record).objects.filter(pk=record.pk)
    failed = BackupStatus.FAILED if isinstance(record, BackupJob) else RestoreStatus.FAILED
    try:
        pid = _spawn(args, log_path(kind, record.pk))
    except (BackupError, OSError) as exc:
        error = failure % {"reason": str(exc).rstrip(".")}
        records.filter(status=waiting).update(status=failed, finished_at=timezone.now(), error=error)
        return
    # Only these two fields: the process may already be writing the rest of the row.
    records.update(pid=pid, hostname=socket.gethostname())
    record.pid, record.hostname = pid, socket.gethostname()


def process_state(hostname: str, pid: int | None) -> bool | None:
    """Return whether a job's process is alive: True, False, or None when this host cannot tell."""
    if not pid or hostname != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie has finished
    except OSError:
        return True


def _last_output(kind: str, pk: int) -> str:
    try:
        with open(os.open(log_path(kind, pk), os.O_RDONLY | os.O_NOFOLLOW), "rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - 4096))
            lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    except (BackupError, OSError):
        return ""  # no log, or a log directory not to be trusted (starting a job says why)
    return lines[-1][:500] if lines else ""


def _dead_reason(kind: str, pk: int, started: bool) -> str:
    if started:
        reason = _("The process running this job (on this host) stopped before it finished (killed or crashed).")
    else:
        reason = _("The process started for this job exited before it began.")
    output = _last_output(kind, pk)
    if output:
        reason += " " + _("Its last output: %(output)s") % {"output": output}
    return reason


def fail_dead_jobs() -> int:
    """Mark as FAILED, with a reason, every backup and restore whose process is gone; return how many."""
    now = timezone.now()
    failed = 0
    kinds = [
        ("backup", BackupJob, BackupStatus, "created_at"),
        ("restore", Restore, RestoreStatus, "started_at"),  # a restore's started_at is when it was asked for
    ]
    for kind, model, statuses, asked_at in kinds:
        for record in model.objects.filter(status__in=[statuses.PENDING, statuses.RUNNING]):
            alive = process_state(record.hostname, record.pid)
            pending = record.status == statuses.PENDING
            if alive is False:
                reason = _dead_reason(kind, record.pk, started=not pending)
            elif alive is None and pending and getattr(record, asked_at) < now - START_TIMEOUT:
                reason = _("No process picked this job up within %(seconds)s seconds.") % {
                    "seconds": int(START_TIMEOUT.total_seconds())
                }
            else:
                continue
            failed += model.objects.filter(pk=record.pk, status=record.status).update(
                status=statuses.FAILED, finished_at=now, error=reason
            )
    # RUNNING jobs of other hosts: the core's lock test (a RUNNING job's process holds the lock).
    failed += services.fail_stale_jobs()
    return failed


def log_finished_restores(restores=None) -> list[Restore]:
    """Write the admin LogEntry of each finished restore started from the admin that has none yet.

    A restore of the application's own database puts admin LogEntry rows back to the backup's
    state, so an entry written when the restore was asked for could vanish: it is written once
    the restore has finished. Restores started from the command line (no user) are not logged.
    """
    restores = Restore.objects.all() if restores is None else restores
    content_type = ContentType.objects.get_for_model(Restore)
    logged = LogEntry.objects.filter(content_type=content_type, object_id=OuterRef("pk_text"))
    candidates = (
        restores.exclude(status__in=ACTIVE_RESTORE_STATUSES)
        .filter(requested_by__isnull=False)
        .annotate(pk_text=Cast("pk", CharField()))
        .exclude(Exists(logged))
    )
    written = []
    for restore in candidates:
        if process_state(restore.hostname, restore.pid):
            continue  # its process still runs: the status may yet change (see restore_is_running)
        with transaction.atomic():
            # Two status polls may see the same restore finish: the row lock lets only one write.
            restore = Restore.objects.select_for_update().get(pk=restore.pk)
            if LogEntry.objects.filter(content_type=content_type, object_id=str(restore.pk)).exists():
                continue
            LogEntry.objects.create(
                user_id=restore.requested_by_id,
                content_type=content_type,
                object_id=str(restore.pk),
                object_repr=str(restore)[:200],
                action_flag=ADDITION,
                change_message=restore_message(restore),
            )
            written.append(restore)
    return written


def restore_message(restore: Restore) -> str:
    values = {"backup": restore.backup_id, "database": restore.database, "error": restore.error}
    if restore.status == RestoreStatus.COMPLETED:
        return _("Restored backup #%(backup)s into database %(database)s.") % values
    return _("Restore of backup #%(backup)s into database %(database)s failed: %(error)s") % values


def restore_is_running(restore: Restore) -> bool:
    """Return whether a restore still runs: its record says so, or its process has not exited yet
    (the admin's LogEntry waits for the process, whose record is final only when it exits)."""
    return restore.status in ACTIVE_RESTORE_STATUSES or bool(process_state(restore.hostname, restore.pid))
