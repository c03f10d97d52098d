"""Background jobs on Django's task framework: real workers (`manage.py backup_worker`) on the
database's queue and on Redis (RQ), workers killed with SIGKILL, the one dead-job rule."""

import os
import signal
import subprocess
import sys
from collections import defaultdict

import pytest
import redis
from django.db import connections

from backups_app import services, tasks
from backups_app.engines import get_engine
from backups_app.models import BackupJob, BackupStatus, Restore, RestoreStatus
from backups_app.services.common import DEAD_REASON

from .conftest import ROOT, LockHolder, child_env, finished, fingerprint, psql, wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target", "sqlite"])

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def kill_worker(process):
    """SIGKILL a worker and everything it started (its own session), as a crash or a lost machine would."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture
def rq_queue():
    """A Redis database of the tests' own (TEST_REDIS_URL), emptied before and after."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield {"BACKUP_TASK_BACKEND": "rq", "BACKUP_REDIS_URL": REDIS_URL}
    client.flushdb()


def test_two_rq_workers_run_six_backups_of_three_databases_each_once_never_two_of_one_database_at_once(
    pagila, backup_dir, worker, rq_queue
):
    env = {**child_env(backup_dir), **rq_queue}
    worker(**rq_queue)
    worker(**rq_queue)
    requests = [
        subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "backup_create", "--background", "--database", alias],
                         env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for alias in ("default", pagila, "sqlite") * 2
    ]
    for request in requests:
        out, err = request.communicate(timeout=120)
        assert request.returncode == 0 and "is queued" in out, err

    jobs = [finished(job, timeout=240) for job in BackupJob.objects.all()]

    assert len(jobs) == 6 and {job.status for job in jobs} == {BackupStatus.COMPLETED}, [j.error for j in jobs]
    by_database = defaultdict(list)
    for job in jobs:
        by_database[job.database].append((job.started_at, job.finished_at))
    assert sorted(by_database) == sorted(["default", pagila, "sqlite"])
    for database, spans in by_database.items():
        (first_start, first_end), (second_start, second_end) = sorted(spans)
        assert first_end <= second_start, f"two backups of {database} overlapped"
    archives = [path for path in backup_dir.rglob("*.zst")]
    assert len(archives) == 6  # each job ran once: a second run would have written a second archive
    assert all(services.verify_backup(backup=job).ok for job in jobs)


def test_worker_killed_mid_backup_fails_the_job_within_the_bound_and_a_retry_succeeds(pagila, worker):
    first = worker()
    holder = LockHolder(pagila, "LOCK TABLE film IN ACCESS EXCLUSIVE MODE")  # pg_dump waits on it: mid-backup
    try:
        job = services.request_backup(database=pagila)
        wait_for(lambda: BackupJob.objects.filter(pk=job.pk, status=BackupStatus.RUNNING).exists(), timeout=60)
        kill_worker(first)
        worker()  # any worker, on any host, finds it at its next sweep
        job = finished(job, timeout=60)
    finally:
        holder.release()

    assert (job.status, job.error) == (BackupStatus.FAILED, str(DEAD_REASON))
    with get_engine(pagila).lock():  # free
        pass
    retry = finished(services.retry_backup(backup=job))
    assert retry.status == BackupStatus.COMPLETED and services.verify_backup(backup=retry).ok


def test_worker_killed_mid_restore_leaves_the_database_unchanged_and_a_retry_succeeds(pagila, worker):
    backup = services.create_backup(database=pagila)
    psql(pagila, "UPDATE film SET title = 'changed' WHERE film_id < 50")
    before = fingerprint(pagila)
    first = worker()
    holder = LockHolder(pagila, "SELECT 1 FROM film LIMIT 1")  # the restore's drops wait for it: mid-restore
    try:
        restore = services.request_restore(backup=backup, safety_backup=False, strategy="in-place")
        wait_for(lambda: Restore.objects.filter(pk=restore.pk, status=RestoreStatus.RUNNING).exists(), timeout=60)
        wait_for(lambda: psql(pagila, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND wait_event_type = 'Lock'").strip() != "0", timeout=60)
        kill_worker(first)
        worker()
        restore = finished(restore, timeout=60)
    finally:
        holder.release()

    assert (restore.status, restore.error) == (RestoreStatus.FAILED, str(DEAD_REASON))
    # The killed psql's session rolls back once it gets its lock and finds its client gone.
    wait_for(lambda: psql(pagila, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND application_name = 'django-backups'").strip() == "0", timeout=60)
    assert fingerprint(pagila) == before
    retry = finished(services.request_restore(backup=backup, safety_backup=False))  # the admin's Retry
    assert retry.status == RestoreStatus.COMPLETED
    assert psql(pagila, "SELECT count(*) FROM film WHERE title = 'changed'").strip() == "0"


def test_worker_killed_mid_swap_leaves_the_live_database_and_the_next_operation_cleans_up(pagila, worker):
    """A restore by swap whose worker dies while it loads the new database: the live one was never
    touched; finding the dead job (as backup_check does) drops nothing yet, the retry removes the
    half-loaded database and succeeds."""
    backup = services.create_backup(database=pagila)
    psql(pagila, "UPDATE film SET title = 'changed' WHERE film_id < 50")
    before = fingerprint(pagila)
    first = worker()
    restore = services.request_restore(backup=backup, safety_backup=False, strategy="swap")
    wait_for(lambda: Restore.objects.filter(pk=restore.pk, phase="loading").exists(), timeout=60)
    kill_worker(first)

    assert services.fail_dead_jobs() == 1
    assert Restore.objects.get(pk=restore.pk).error == str(DEAD_REASON)
    assert fingerprint(pagila) == before
    worker()
    retry = finished(services.request_restore(backup=backup, safety_backup=False, strategy="swap"))
    assert retry.status == RestoreStatus.COMPLETED
    assert psql(pagila, "SELECT count(*) FROM film WHERE title = 'changed'").strip() == "0"
    name = connections[pagila].settings_dict["NAME"]
    assert psql("postgres", f"SELECT string_agg(datname, ',') FROM pg_database WHERE datname LIKE '{name}\\_\\_%'"
                ).strip() == retry.kept_database  # the killed restore's half-loaded database is gone


def test_a_pending_job_whose_task_ended_without_running_it_is_failed_with_the_reason():
    """The database queue's own record of a task is real; its worker never ran the job (the task
    failed before it began), which is what a worker crash between taking and starting a task leaves."""
    result = tasks.run_backup.enqueue(0)
    job = BackupJob.objects.create(database="sqlite", compression="zstd", task_id=result.id)
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.filter(id=result.id).update(status="FAILED")
    lost = BackupJob.objects.create(database="sqlite", compression="zstd", task_id="no-such-task")

    assert services.fail_dead_jobs() == 2

    job.refresh_from_db()
    lost.refresh_from_db()
    assert job.status == BackupStatus.FAILED and "ended without running it" in job.error
    assert lost.status == BackupStatus.FAILED and "no longer in the queue" in lost.error


def test_commands_in_the_background_print_the_id_and_return_at_once(pagila, backup_dir):
    env = child_env(backup_dir)  # no worker runs: the jobs stay queued
    created = subprocess.run([sys.executable, str(ROOT / "manage.py"), "backup_create", "--background", "--json",
                              "--database", pagila], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    job = BackupJob.objects.get()
    assert f'"id": {job.pk}' in created.stdout and job.status == BackupStatus.PENDING and job.task_id
    backup = services.create_backup(database=pagila)
    restored = subprocess.run([sys.executable, str(ROOT / "manage.py"), "backup_restore", str(backup.pk), "--background",
                               "--no-input", "--no-safety-backup"], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
    assert restored.returncode == 0, restored.stderr
    restore = Restore.objects.get()
    assert f"Restore #{restore.pk} of backup #{backup.pk}" in restored.stdout
    assert (restore.status, restore.take_safety_backup) == (RestoreStatus.PENDING, False)
    connections.close_all()
