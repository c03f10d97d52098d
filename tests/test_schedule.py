"""Scheduled backups and cleanups (django-crontab): what cron runs, what it records, how it exits."""

import logging
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.utils import timezone
from django_crontab.crontab import Crontab

from backups_app import schedule, services
from backups_app.engines import get_engine
from backups_app.models import BackupJob, BackupPhase, BackupStatus, BackupTrigger

from .conftest import ROOT, database_url, wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target"])


def production_env(backup_dir, **extra) -> dict[str, str]:
    """The environment of a `manage.py` child on the production settings, over this test's catalog."""
    return {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_SECRET_KEY": "tests-only-not-secret",
        "DATABASE_URL": database_url("default"),
        "BACKUP_DIRECTORY": str(backup_dir),
        **extra,
    }


def job_hash(function: str) -> str:
    """The hash `crontab run` is given for a CRONJOBS entry (django-crontab's own function)."""
    from django.conf import settings

    job = next(job for job in settings.CRONJOBS if job[1] == function)
    return Crontab()._Crontab__hash_job(job)


@pytest.mark.parametrize("expression", ["0 2 * * *", "*/15 * * * *", "0 2,14 1-15 * mon", "30 3 * jan 0", "0 0-23/6 * * 1-5"])
def test_valid_cron_expressions_pass(expression):
    schedule.validate_cron_expression(expression)


@pytest.mark.parametrize("expression, reason", [
    ("0 2 * *", "has 4 fields"),
    ("@daily", "has 1 fields"),
    ("60 2 * * *", "the minute goes from 0 to 59"),
    ("0 24 * * *", "the hour goes from 0 to 23"),
    ("0 2 0 * *", "the day of month goes from 1 to 31"),
    ("0 2 * 13 *", "the month goes from 1 to 12"),
    ("0 2 * * 8", "the day of week goes from 0 to 7"),
    ("0 5-2 * * *", "runs backwards"),
    ("*/0 * * * *", "step"),
    ("5/10 * * * *", "only after '*' or a range"),
    ("0 2 * * mon-fri", "not a valid day of week"),
    ("0 two * * *", "not a valid hour"),
])
def test_invalid_cron_expressions_say_what_is_wrong(expression, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        schedule.validate_cron_expression(expression)


def test_invalid_schedule_is_a_system_check_error(settings):
    settings.BACKUP_SCHEDULE = "0 25 * * *"
    settings.BACKUP_CLEANUP_SCHEDULE = "every night"
    with pytest.raises(SystemCheckError) as error:
        call_command("check")
    assert "backups_app.E010" in str(error.value) and "BACKUP_SCHEDULE is invalid" in str(error.value)
    assert "backups_app.E011" in str(error.value) and "BACKUP_CLEANUP_SCHEDULE is invalid" in str(error.value)


def test_crontab_add_refuses_an_invalid_schedule_and_installs_nothing(backup_dir):
    comment = f"django-backups invalid-test {os.getpid()}"
    env = production_env(backup_dir, BACKUP_SCHEDULE="0 2 * *", CRONTAB_COMMENT=comment)
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "crontab", "add"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "backups_app.E010" in result.stderr and "has 4 fields" in result.stderr
    assert not [line for line in _crontab_lines() or [] if line.endswith(f"# {comment}")]


def test_scheduled_backup_is_queued_and_a_worker_completes_it(pagila, backup_dir, settings, caplog, worker):
    settings.BACKUP_DATABASES = [pagila]
    with caplog.at_level(logging.INFO, logger="backups_app.schedule"):
        # What scheduled_backup() runs; it would end this process on a failure, so it runs in children below.
        assert schedule.exit_status(schedule.run_scheduled_backups()) == schedule.EXIT_OK

    job = BackupJob.objects.get()
    assert (job.database, job.status, job.trigger) == (pagila, BackupStatus.PENDING, BackupTrigger.SCHEDULED)
    assert f"Scheduled backup #{job.pk} of database 'target' is queued." in caplog.text
    worker()
    job = wait_for(lambda: BackupJob.objects.filter(pk=job.pk, status=BackupStatus.COMPLETED).first(), timeout=120)
    assert (backup_dir / job.file_name).stat().st_size == job.size_bytes
    assert services.verify_backup(backup=job).ok


def test_a_scheduled_backup_of_a_busy_database_waits_for_it_then_runs(pagila, settings, worker):
    """The schedule no longer skips a database that is busy: its backup waits in the queue behind."""
    with get_engine(pagila).lock():  # what a running backup's worker holds
        runs = schedule.run_scheduled_backups([pagila])
        worker()
        job = runs[0].job
        wait_for(lambda: BackupJob.objects.filter(pk=job.pk, phase=BackupPhase.WAITING).exists(), timeout=60)
    assert schedule.exit_status(runs) == schedule.EXIT_OK
    job = wait_for(lambda: BackupJob.objects.filter(pk=job.pk, status=BackupStatus.COMPLETED).first(), timeout=120)
    assert job.trigger == BackupTrigger.SCHEDULED


def test_cron_job_exits_non_zero_when_a_backup_cannot_be_queued(backup_dir):
    """What cron runs, `manage.py crontab run HASH`, while the catalog's database does not answer."""
    env = production_env(backup_dir, DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere", BACKUP_DATABASES="default")
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "crontab", "run", job_hash("backups_app.schedule.scheduled_backup")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == schedule.EXIT_FAILED, result.stderr
    assert "ERROR backups_app.schedule: Scheduled backup of database 'default' could not be queued" in result.stderr


def test_scheduled_cleanup_deletes_expired_backups_and_keeps_the_newest(pagila, backup_dir, settings, caplog):
    settings.BACKUP_RETENTION_DAYS = 7
    old = services.create_backup(database=pagila, trigger=BackupTrigger.SCHEDULED)
    new = services.create_backup(database=pagila, trigger=BackupTrigger.SCHEDULED)
    BackupJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=8))

    with caplog.at_level(logging.INFO, logger="backups_app.schedule"):
        assert schedule.run_scheduled_cleanup() == schedule.EXIT_OK

    assert list(BackupJob.objects.values_list("pk", flat=True)) == [new.pk]
    assert not (backup_dir / old.file_name).exists() and (backup_dir / new.file_name).exists()
    assert "Scheduled cleanup: Deleted 1 backups" in caplog.text


# The real thing: a cron daemon runs the installed schedule -------------------------------------


def _cron_daemon_pid() -> int | None:
    """Return the pid of a running cron daemon, if any (Debian's cron writes /var/run/crond.pid)."""
    try:
        pid = int(open("/var/run/crond.pid").read().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def _processes_with(variable: str) -> list[int]:
    """Return the pids of processes whose environment holds `variable` (NAME=value): the cron jobs' own."""
    marker = variable.encode() + b"\0"
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as environ:
                    if marker in environ.read() + b"\0":
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def _crontab_lines() -> list[str] | None:
    """Return the lines of root's crontab, or None when it has none."""
    result = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return result.stdout.splitlines() if result.returncode == 0 else None


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_cron_daemon_runs_the_installed_schedule_and_a_scheduled_backup_completes(backup_dir, tmp_path, worker):
    """Install the jobs every minute with `crontab add`, let a real cron daemon run them (a worker runs
    the backup they queue), remove them."""
    worker()
    comment = f"django-backups test {os.getpid()}-{tmp_path.name}"
    env_file = tmp_path / "cron.env"
    log = tmp_path / "cron.log"
    settings_env = production_env(
        backup_dir, BACKUP_DATABASES="default", BACKUP_SCHEDULE="* * * * *", BACKUP_CLEANUP_SCHEDULE="* * * * *",
        BACKUP_CHECK_SCHEDULE="* * * * *", CRONTAB_COMMENT=comment, CRONTAB_COMMAND_SUFFIX=f">> {log} 2>&1",
    )
    # The job reads its settings from this file itself: cron hands it almost no environment.
    env_file.write_text("".join(f"{name}='{value}'\n" for name, value in settings_env.items() if name != "PATH"))
    # `crontab add` sees only what an operator's shell would pass: the file's name and the settings module.
    crontab_env = {"PATH": os.environ["PATH"], "DJANGO_ENV_FILE": str(env_file), "DJANGO_SETTINGS_MODULE": "config.settings"}
    crontab_cmd = [sys.executable, str(ROOT / "manage.py"), "crontab"]
    before = _crontab_lines()

    started_cron = None
    if _cron_daemon_pid() is None:
        started_cron = subprocess.Popen(["/usr/sbin/cron", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        added = subprocess.run([*crontab_cmd, "add"], env=crontab_env, cwd=tmp_path, capture_output=True, text=True,
                               timeout=60)
        assert added.returncode == 0, added.stderr
        installed = [line for line in _crontab_lines() or [] if line.endswith(f"# {comment}")]
        assert len(installed) == 3  # backup, cleanup, check (BACKUP_DRILL_SCHEDULE is empty)
        for line in installed:  # runnable from cron's minimal environment, from any directory
            assert line.startswith(f"* * * * * DJANGO_ENV_FILE={env_file} {sys.executable} {ROOT / 'manage.py'} crontab run ")
            assert "--settings=config.settings" in line
        shown = subprocess.run([*crontab_cmd, "show"], env=crontab_env, cwd=tmp_path, capture_output=True, text=True,
                               timeout=60)
        assert "backups_app.schedule.scheduled_backup" in shown.stdout

        deadline = time.monotonic() + 150
        job = None
        while time.monotonic() < deadline:
            job = BackupJob.objects.filter(trigger=BackupTrigger.SCHEDULED).exclude(
                status__in=[BackupStatus.PENDING, BackupStatus.RUNNING]).first()
            if job:
                break
            time.sleep(1)
        cron_output = log.read_text() if log.exists() else "(no output)"
        assert job is not None, f"no scheduled backup finished within 150 s; job output: {cron_output}"
        assert job.status == BackupStatus.COMPLETED, job.error
        assert (job.database, job.trigger) == ("default", BackupTrigger.SCHEDULED)
        assert (backup_dir / job.file_name).stat().st_size == job.size_bytes
        logged = f"Scheduled backup #{job.pk} of database 'default' is queued."
        deadline = time.monotonic() + 20
        while logged not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert logged in log.read_text()
    finally:
        removed = subprocess.run([*crontab_cmd, "remove"], env=crontab_env, cwd=tmp_path, capture_output=True,
                                 text=True, timeout=60)
        lines = _crontab_lines() or []
        if any(line.endswith(f"# {comment}") for line in lines):  # remove failed: take out our lines only
            kept = [line for line in lines if not line.endswith(f"# {comment}")]
            subprocess.run(["crontab", "-"], input="".join(f"{line}\n" for line in kept), text=True)
        if before is None and _crontab_lines() == []:
            subprocess.run(["crontab", "-r"], capture_output=True)  # there was none: leave none
        # Jobs that cron started before the removal finish on their own (or are ended) before the test's
        # database goes away.
        deadline = time.monotonic() + 60
        while _processes_with(f"DJANGO_ENV_FILE={env_file}") and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in _processes_with(f"DJANGO_ENV_FILE={env_file}"):
            os.kill(pid, signal.SIGKILL)
        if started_cron is not None:
            started_cron.terminate()
            started_cron.wait(timeout=10)
    assert removed.returncode == 0, removed.stderr
    assert not [line for line in _crontab_lines() or [] if line.endswith(f"# {comment}")]
    # Everything else in the crontab is still there (lines of another suite running this test may come and go).
    others = [line for line in before or [] if "# django-backups test " not in line]
    assert set(others) <= set(_crontab_lines() or [])
