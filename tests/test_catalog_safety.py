"""The catalog after a disaster and under concurrent operations: recovery, cleanup during a restore,
races between a backup and a restore, aliases of one database, backups dated in the future."""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.core.management.color import no_style
from django.db import connection, transaction
from django.utils import timezone

from backups_app import jobs, monitoring, services
from backups_app.engines import get_engine
from backups_app.errors import BackupError
from backups_app.models import BackupJob, BackupStatus, Restore, RestoreStatus

from .conftest import ROOT, child_env, manage, psql

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target"])


def lose_the_catalog():
    """Empty the catalog and restart its id sequences, as `migrate` on a new database leaves it."""
    tables = [BackupJob._meta.db_table, Restore._meta.db_table]
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
