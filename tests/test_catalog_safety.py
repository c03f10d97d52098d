"""The catalog after a disaster and under concurrent operations: recovery, cleanup during a restore,
races between a backup and a restore, aliases of one database, backups dated in the future."""

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management.color import no_style
from django.db import connection, transaction
from django.utils import timezone

from backups_app import monitoring, services
from backups_app.engines import get_engine
from backups_app.errors import BackupError
from backups_app.models import BackupJob, BackupStatus, Drill, Restore, RestorePhase, RestoreStatus

from .conftest import ROOT, LockHolder, child_env, database_url, finished, manage, psql, wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target"])


def lose_the_catalog():
    """Empty the catalog and restart its id sequences, as `migrate` on a new database leaves it."""
    tables = [BackupJob._meta.db_table, Restore._meta.db_table, Drill._meta.db_table]
    with connection.cursor() as cursor:
        for sql in connection.ops.sql_flush(no_style(), tables, reset_sequences=True):
            cursor.execute(sql)


# 1. Disaster recovery ------------------------------------------------------------------------


def test_backups_after_a_catalog_rebuilt_from_manifests_get_new_ids(pagila, backup_dir):
    made = [services.create_backup(database=pagila) for _ in range(3)]
    lose_the_catalog()

    imported, problems = services.import_scan()
    assert (sorted(job.pk for job in imported), problems) == (sorted(job.pk for job in made), [])

    # The next backup, and a restore's safety backup, get ids past the imported ones.
    new = services.create_backup(database=pagila)
    restore = services.restore_backup(backup=made[0])
    assert new.pk > max(job.pk for job in made)
    assert restore.status == RestoreStatus.COMPLETED
    assert restore.safety_backup.pk > new.pk
    assert BackupJob.objects.count() == 5


def test_readme_recovery_procedure_works_on_the_embedded_sqlite_default(tmp_path):
    """The README's steps on the default set-up (the catalog in SQLite), as an operator runs them:
    back up, lose the database file, `migrate`, `backup_import --scan`, back up again, restore."""
    env = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("DATABASE_URL", "TEST_", "BACKUP_"))
    }
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_SECRET_KEY": "recovery-test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.sqlite3'}",
        "BACKUP_DIRECTORY": str(tmp_path / "backups"),
    })

    def run(*args):
        result = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
        return result.stdout

    run("migrate", "--noinput", "-v", "0")
    run("backup_create")
    run("backup_create")
    (tmp_path / "app.sqlite3").unlink()  # the disaster
    run("migrate", "--noinput", "-v", "0")
    assert "as backup #2" in run("backup_import", "--scan")
    assert "Backup #3 of default completed" in run("backup_create")
    run("backup_restore", "1", "--no-input")
    listing = {job["id"]: (job["status"], job["trigger"]) for job in json.loads(run("backup_list", "--json"))}
    assert listing == {1: ("restored", "manual"), 2: ("completed", "manual"), 3: ("completed", "manual"),
                       4: ("completed", "pre_restore_safety")}


def backdate(job, days):
    BackupJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=days))
    job.refresh_from_db()
    return job


# 2. Cleanup and delete never take a backup that a restore uses -------------------------------


@pytest.mark.parametrize("status", [RestoreStatus.PENDING, RestoreStatus.RUNNING])
def test_cleanup_skips_and_delete_refuses_a_backup_that_a_restore_uses(pagila, backup_dir, status):
    old = backdate(services.create_backup(database=pagila), days=30)
    services.create_backup(database=pagila)  # the newest, kept anyway
    restore = Restore.objects.create(backup=old, database=pagila, status=status)

    assert old.pk not in [job.pk for job in services.plan_cleanup(retention_days=7).expired]
    services.cleanup_backups(retention_days=7)
    assert BackupJob.objects.filter(pk=old.pk).exists() and (backup_dir / old.file_name).exists()
    with pytest.raises(BackupError, match=rf"^Backup #{old.pk} is being restored \(restore #{restore.pk} into "
                                          rf"database target\); delete it once that restore has finished\.$"):
        services.delete_backup(backup=old)
    assert (backup_dir / old.file_name).exists()

    Restore.objects.filter(pk=restore.pk).update(status=RestoreStatus.COMPLETED)
    services.cleanup_backups(retention_days=7)
    assert not BackupJob.objects.filter(pk=old.pk).exists() and not (backup_dir / old.file_name).exists()


def test_cleanup_while_a_restore_runs_keeps_its_backup_and_the_restore_succeeds(pagila, backup_dir):
    old = backdate(services.create_backup(database=pagila), days=30)
    services.create_backup(database=pagila)
    psql(pagila, "UPDATE film SET title = 'changed'")
    holder = LockHolder(pagila, "LOCK TABLE film IN ACCESS EXCLUSIVE MODE")  # the restore waits for it
    try:
        child = manage(backup_dir, "backup_restore", str(old.pk), "--no-input", "--no-safety-backup")
        wait_for(lambda: Restore.objects.filter(status=RestoreStatus.RUNNING).exists())
        plan = services.cleanup_backups(retention_days=7)
    finally:
        holder.release()
    out, err = child.communicate(timeout=120)

    assert old.pk not in [job.pk for job in plan.expired]
    assert child.returncode == 0, err
    assert Restore.objects.get().status == RestoreStatus.COMPLETED
    assert BackupJob.objects.get(pk=old.pk).status == BackupStatus.RESTORED
    assert psql(pagila, "SELECT count(*) FROM film WHERE title = 'changed'").strip() == "0"


# 3. A backup and a restore asked for at the same moment -------------------------------------


def test_a_backup_between_the_restore_request_and_its_worker_does_not_cancel_it(pagila, worker, admin_user):
    backup = services.create_backup(database=pagila)
    psql(pagila, "UPDATE film SET title = 'changed'")
    with transaction.atomic():  # the task is queued once the request's data is committed
        restore = services.request_restore(backup=backup, database=pagila, safety_backup=False, acting_user=admin_user)
        other = services.create_backup(database=pagila)  # takes the lock first, finishes first
    worker()

    restore = finished(restore, timeout=90)
    assert (restore.status, restore.error) == (RestoreStatus.COMPLETED, "")
    assert BackupJob.objects.get(pk=other.pk).status == BackupStatus.COMPLETED
    assert psql(pagila, "SELECT count(*) FROM film WHERE title = 'changed'").strip() == "0"


def test_a_restore_asked_for_while_a_backup_runs_waits_for_it_then_runs(pagila, backup_dir, worker, admin_user):
    backup = services.create_backup(database=pagila)
    psql(pagila, "UPDATE film SET title = 'changed'")
    holder = LockHolder(pagila, "LOCK TABLE film IN ACCESS EXCLUSIVE MODE")  # the next backup's pg_dump waits
    try:
        dump = manage(backup_dir, "backup_create", "--database", pagila)
        running = wait_for(lambda: BackupJob.objects.filter(status=BackupStatus.RUNNING).first())
        worker()
        restore = services.request_restore(backup=backup, database=pagila, safety_backup=False, acting_user=admin_user)
        wait_for(lambda: Restore.objects.filter(pk=restore.pk, phase=RestorePhase.WAITING).exists())
    finally:
        holder.release()
    dump.communicate(timeout=120)
    restore = finished(restore, timeout=90)

    assert BackupJob.objects.get(pk=running.pk).status == BackupStatus.COMPLETED
    assert (restore.status, restore.error) == (RestoreStatus.COMPLETED, "")
    assert restore.started_at < BackupJob.objects.get(pk=running.pk).finished_at  # asked for while it ran
    assert psql(pagila, "SELECT count(*) FROM film WHERE title = 'changed'").strip() == "0"


def test_a_backup_asked_for_in_the_foreground_while_a_restore_runs_says_which_restore_was_running(pagila):
    running = Restore.objects.create(backup=services.create_backup(database=pagila), database=pagila,
                                     status=RestoreStatus.RUNNING)
    with get_engine(pagila).lock():  # held, as the restore's worker holds it
        with pytest.raises(BackupError, match=rf"^Restore #{running.pk} into database 'target' was running"):
            services.create_backup(database=pagila)


# 4. The catalog's database is recognised whatever alias names it ------------------------------


def test_restoring_the_catalog_database_through_a_second_alias_keeps_the_catalog(backup_dir):
    old = services.create_backup(database="default")
    newer = services.create_backup(database="default", description="made after")
    host = connection.settings_dict["HOST"]
    twin_url = database_url("default").replace(f"@{host}:", "@localhost:" if host != "localhost" else "@127.0.0.1:")

    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "backup_restore", str(old.pk), "--database", "twin", "--no-input",
         "--no-safety-backup"],
        env={**child_env(backup_dir), "DATABASE_URL_TWIN": twin_url}, cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    connection.close()
    assert BackupJob.objects.filter(pk=newer.pk, description="made after").exists()
    assert Restore.objects.get().status == RestoreStatus.COMPLETED


def test_an_archive_without_the_catalog_is_refused_before_any_safety_backup(pagila):
    other = services.create_backup(database=pagila)  # pagila has no catalog tables
    count = BackupJob.objects.count()

    with pytest.raises(BackupError, match=rf"^Backup #{other.pk} has no table backups_app_backupjob, so restoring it "
                                          r"into database 'default' would erase the backup catalog"):
        services.restore_backup(backup=other, database="default")
    assert BackupJob.objects.count() == count  # no safety backup was taken


# 5. Backups dated in the future -------------------------------------------------------------


def test_a_backup_dated_in_the_future_never_displaces_real_ones(pagila, backup_dir, settings):
    settings.BACKUP_DATABASES = [pagila]
    older = backdate(services.create_backup(database=pagila), days=10)
    newest_real = backdate(services.create_backup(database=pagila), days=9)
    failed = BackupJob.objects.create(database=pagila, engine="postgresql", status=BackupStatus.FAILED,
                                      compression="zstd", error="pg_dump failed: disk on fire.",
                                      finished_at=timezone.now())
    future = timezone.now() + timedelta(days=365)
    forged = BackupJob.objects.create(database=pagila, engine="postgresql", status=BackupStatus.COMPLETED,
                                      compression="zstd", file_name="target/forged.pgdump.zst", size_bytes=1,
                                      started_at=future, finished_at=future)
    BackupJob.objects.filter(pk=forged.pk).update(created_at=future)

    report = monitoring.check_health()
    codes = {problem.code: problem for problem in report.problems}
    assert report.level == monitoring.Level.CRITICAL
    assert f"last backup #{failed.pk} failed" in codes["last_backup_failed"].message
    assert codes["stale"]  # the newest real backup is 9 days old
    assert codes["dated_in_the_future"].level == monitoring.Level.WARNING
    assert f"backup #{forged.pk} is dated in the future" in codes["dated_in_the_future"].message
    assert report.databases[pagila].latest.pk == newest_real.pk and report.databases[pagila].age_hours > 0

    services.cleanup_backups(retention_days=7)
    assert set(BackupJob.objects.values_list("pk", flat=True)) == {newest_real.pk, failed.pk, forged.pk}
    assert not (backup_dir / older.file_name).exists() and (backup_dir / newest_real.file_name).exists()
