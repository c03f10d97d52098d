"""Backups and restores of a real SQLite file database, and of the embedded default from the command line."""

import json
import sqlite3
import subprocess
import sys

import pytest
from django.db import connections

from backups_app import services
from backups_app.errors import BackupError
from backups_app.models import BackupStatus

from .conftest import ROOT

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "sqlite"])


def sqlite_rows(sql):
    with connections["sqlite"].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_round_trip_replaces_content(backup_dir):
    with connections["sqlite"].cursor() as cursor:
        cursor.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        cursor.executemany("INSERT INTO notes (body) VALUES (%s)", [(f"note {i}",) for i in range(500)])
    job = services.create_backup(database="sqlite")
    assert job.status == BackupStatus.COMPLETED and job.engine == "sqlite"
    with connections["sqlite"].cursor() as cursor:
        cursor.execute("DELETE FROM notes WHERE id > 10")
        cursor.execute("CREATE TABLE created_after (id INTEGER)")

    services.restore_backup(backup=job, safety_backup=False)

    assert sqlite_rows("SELECT count(*), max(body) FROM notes") == [(500, "note 99")]
    assert sqlite_rows("SELECT name FROM sqlite_master WHERE name = 'created_after'") == []
    assert {"notes", "auth_user"} <= set(services.archive_tables(backup=job))


def test_archive_of_another_engine_is_refused(pagila_template):
    job = services.create_backup(database="sqlite")
    with pytest.raises(BackupError, match="is a sqlite archive and database 'default' is postgresql"):
        services.restore_backup(backup=job, database="default")


def test_embedded_default_round_trip_from_the_command_line(tmp_path):
    """The `make run` setup: the catalog and the data in one SQLite file, driven by manage.py."""
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path}/app.sqlite3",
        "BACKUP_DIRECTORY": str(tmp_path / "backups"),
    }

    def manage(*args):
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout

    manage("migrate", "--noinput", "-v0")
    manage("shell", "-c", "from django.contrib.auth.models import User; User.objects.create_user('before')")
    first = json.loads(manage("backup_create", "--json"))
    manage("shell", "-c", "from django.contrib.auth.models import User; User.objects.create_user('after')")
    second = json.loads(manage("backup_create", "--json", "--description", "newer"))

    restored = json.loads(manage("backup_restore", str(first["id"]), "--no-input", "--json"))

    users = sqlite3.connect(tmp_path / "app.sqlite3").execute("SELECT username FROM auth_user").fetchall()
    assert users == [("before",)]
    listed = {job["id"]: job for job in json.loads(manage("backup_list", "--json"))}
    assert {first["id"], second["id"], restored["safety_backup"]["id"]} <= set(listed)
    assert listed[first["id"]]["status"] == "restored"
    shown = json.loads(manage("backup_show", str(first["id"]), "--json"))
    assert shown["restores"][0]["status"] == "completed"

    # The database is lost: a new empty one gets its catalog back from the manifests.
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/new.sqlite3"
    manage("migrate", "--noinput", "-v0")
    imported = json.loads(manage("backup_import", "--scan", "--json"))
    assert imported["problems"] == []
    rebuilt = {job["id"]: job for job in json.loads(manage("backup_list", "--json"))}
    assert set(rebuilt) == set(listed)
    assert all(rebuilt[i]["checksum"] == listed[i]["checksum"] for i in rebuilt)
    manage("backup_restore", str(second["id"]), "--no-input")
    users = sqlite3.connect(tmp_path / "new.sqlite3").execute("SELECT username FROM auth_user ORDER BY 1").fetchall()
    assert users == [("after",), ("before",)]


def test_truncated_archive_imported_without_manifest_fails_verification_and_restore(backup_dir):
    """A SQLite archive cut at a page boundary, registered by `backup_import PATH` (whose checksum is that
    of the cut file): its header's page count shows it is truncated, and a restore refuses it."""
    import zstandard

    with connections["sqlite"].cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS long_notes")
        cursor.execute("CREATE TABLE long_notes (id INTEGER PRIMARY KEY, body TEXT)")
        cursor.executemany("INSERT INTO long_notes (body) VALUES (%s)", [(f"note {i}" * 50,) for i in range(2000)])
    job = services.create_backup(database="sqlite", compression="none")
    data = (backup_dir / job.file_name).read_bytes()
    page_size = int.from_bytes(data[16:18], "big")
    (backup_dir / "cut.sqlite3.zst").write_bytes(zstandard.ZstdCompressor().compress(data[: len(data) - 3 * page_size]))

    imported = services.import_archive(path="cut.sqlite3.zst", database="sqlite")
    result = services.verify_backup(backup=imported)

    assert not result.ok and "truncated" in result.problem, result.problem
    assert services.verify_backup(backup=job).ok
    with pytest.raises(BackupError, match="it is truncated"):
        services.restore_backup(backup=imported, safety_backup=False, trust_archive=True)
    assert sqlite_rows("SELECT count(*) FROM long_notes") == [(2000,)]
