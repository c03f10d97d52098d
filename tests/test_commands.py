"""The management commands: what a person or a script sees, and that bad input loses nothing."""

import hashlib
import json
import os
import subprocess
from datetime import datetime
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from backups_app.engines import get_engine
from backups_app.models import BackupJob, BackupStatus, Restore

from .conftest import fingerprint, manage, psql

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target", "sqlite"])


def run(*args, stdin=None, monkeypatch=None):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_create_list_show_stats_as_json(pagila):
    created = json.loads(run("backup_create", "--database", pagila, "--description", "nightly", "--json"))
    for key in ("id", "database", "status", "trigger", "created", "size", "checksum", "file_name"):
        assert created[key] not in (None, ""), key
    assert (created["database"], created["status"], created["trigger"], created["description"]) == (
        "target", "completed", "manual", "nightly")

    listed = json.loads(run("backup_list", "--database", pagila, "--status", "completed", "--json"))
    assert [job["id"] for job in listed] == [created["id"]]
    assert json.loads(run("backup_list", "--status", "failed", "--json")) == []
    shown = json.loads(run("backup_show", str(created["id"]), "--json"))
    assert shown["checksum"] == created["checksum"] and shown["restores"] == []
    stats = json.loads(run("backup_stats", "--json"))
    assert stats["completed"] == 1 and stats["total_size"] == created["size"]
    assert stats["databases"]["target"]["id"] == created["id"]
    assert "1 backups: 1 completed" in run("backup_stats")


def test_restore_asks_and_no_cancels(pagila, monkeypatch):
    job = json.loads(run("backup_create", "--database", pagila, "--json"))
    psql(pagila, "UPDATE film SET title = 'changed'")
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    assert "Restore cancelled." in run("backup_restore", str(job["id"]))
    assert psql(pagila, "SELECT count(DISTINCT title) FROM film").strip() == "1"

    monkeypatch.setattr("builtins.input", lambda prompt: "yes")
    output = run("backup_restore", str(job["id"]))
    assert "Restored backup" in output and "Safety backup taken before it" in output
    assert psql(pagila, "SELECT count(DISTINCT title) FROM film").strip() == "1000"


def test_restore_json_reports_the_safety_backup(pagila):
    job = json.loads(run("backup_create", "--database", pagila, "--json"))
    result = json.loads(run("backup_restore", str(job["id"]), "--no-input", "--json"))
    assert result["status"] == "completed" and result["backup"]["status"] == "restored"
    assert result["safety_backup"]["trigger"] == "pre_restore_safety"


@pytest.mark.parametrize("bad_id, message", [("999999", "There is no backup #999999"), ("abc", "'abc' is not a backup id")])
def test_unknown_and_malformed_ids_are_one_clear_error(bad_id, message):
    for command in (["backup_show"], ["backup_restore", "--no-input"], ["backup_delete", "--no-input"],
                    ["backup_verify"], ["backup_download", "--output", "/tmp/never-written"]):
        with pytest.raises(CommandError, match=message):
            run(*command, bad_id)
    assert not os.path.exists("/tmp/never-written")


def test_verify_fails_loudly_on_a_damaged_archive(pagila, backup_dir):
    job = json.loads(run("backup_create", "--database", pagila, "--json"))
    assert "is intact" in run("backup_verify", str(job["id"]))
    with open(backup_dir / job["file_name"], "r+b") as handle:
        handle.seek(100)
        handle.write(b"garbage")
    with pytest.raises(CommandError, match="1 of 1 backups failed verification"):
        run("backup_verify", "--all")


def test_download_writes_the_exact_archive_and_never_overwrites(pagila, tmp_path):
    job = json.loads(run("backup_create", "--database", pagila, "--json"))
    target = tmp_path / "copy.pgdump.zst"
    run("backup_download", str(job["id"]), "--output", str(target))
    assert hashlib.sha256(target.read_bytes()).hexdigest() == job["checksum"]
    assert target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(CommandError, match="already exists"):
        run("backup_download", str(job["id"]), "--output", str(target))
    assert hashlib.sha256(target.read_bytes()).hexdigest() == job["checksum"]


def test_delete_removes_file_manifest_and_record(pagila, backup_dir, monkeypatch):
    job = json.loads(run("backup_create", "--database", pagila, "--json"))
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    run("backup_delete", str(job["id"]))
    assert BackupJob.objects.filter(pk=job["id"]).exists()
    run("backup_delete", str(job["id"]), "--no-input")
    assert not BackupJob.objects.filter(pk=job["id"]).exists()
    assert list((backup_dir / pagila).iterdir()) == []


def test_cleanup_dry_run_then_real(pagila, backup_dir):
    keep = json.loads(run("backup_create", "--database", pagila, "--json"))
    newest = json.loads(run("backup_create", "--database", pagila, "--json"))
    plan = json.loads(run("backup_cleanup", "--dry-run", "--retention-days", "0", "--json"))
    assert [job["id"] for job in plan["expired"]] == [keep["id"]] and plan["bytes_freed"] == keep["size"]
    assert (backup_dir / keep["file_name"]).exists()
    assert f"Deleted #{keep['id']} {pagila} " in run("backup_cleanup", "--retention-days", "0")
    assert not (backup_dir / keep["file_name"]).exists() and (backup_dir / newest["file_name"]).exists()
    with pytest.raises(CommandError, match="retention must be from 0 to 36500 days, not -1"):
        run("backup_cleanup", "--retention-days", "-1")


def test_import_scan_command(pagila):
    job = json.loads(run("backup_create", "--database", pagila, "--json"))
    BackupJob.objects.all().delete()
    assert f"as backup #{job['id']} of target" in run("backup_import", "--scan")
    assert "Nothing to import" in run("backup_import", "--scan")


def test_missing_pg_dump_fails_the_job_with_one_sentence(pagila, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no PostgreSQL tools
    with pytest.raises(CommandError, match="^pg_dump is not installed or not on PATH"):
        run("backup_create", "--database", pagila)
    job = BackupJob.objects.get()
    assert job.status == BackupStatus.FAILED and "pg_dump is not installed" in job.error


def test_pg_dump_older_than_the_server_is_refused(pagila, old_pg_dump):
    old_pg_dump()
    with pytest.raises(CommandError, match=r"pg_dump 12 is older than the PostgreSQL 15\.\S+ server"):
        run("backup_create", "--database", pagila)
    assert BackupJob.objects.get().status == BackupStatus.FAILED


def test_unsupported_engine_and_unknown_alias_name_the_supported_ones(monkeypatch):
    dummy = {"ENGINE": "django.db.backends.dummy"}
    monkeypatch.setitem(connections.settings, "legacy", connections.configure_settings({"default": dummy, "legacy": dummy})["legacy"])
    from backups_app import services
    from backups_app.errors import BackupError

    with pytest.raises(BackupError, match="cannot be backed up; supported engines: postgresql, sqlite"):
        services.create_backup(database="legacy")
    with pytest.raises(CommandError, match="invalid choice: 'nope'"):
        run("backup_create", "--database", "nope")
    assert BackupJob.objects.count() == 0


def test_sqlite_alias_backup_from_command(backup_dir):
    with connections["sqlite"].cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS t (id integer)")
    job = json.loads(run("backup_create", "--database", "sqlite", "--compression", "gzip", "--json"))
    assert job["file_name"].endswith(".sqlite3.gz") and job["engine"] == "sqlite"


def test_restore_into_another_database_says_so_with_a_readable_time(pagila, settings, monkeypatch):
    settings.TIME_ZONE = "Asia/Kolkata"  # +05:30: a time printed in UTC would show 03:53, not 09:23
    job = json.loads(run("backup_create", "--database", pagila, "--json"))
    taken = datetime.fromisoformat(job["created"]).astimezone(ZoneInfo("Asia/Kolkata"))
    prompts = []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or "no")
    before = fingerprint("default")

    assert "Restore cancelled." in run("backup_restore", str(job["id"]), "--database", "default")

    expected = f"backup #{job['id']} of database target (taken {taken:%H:%M}, {taken.day} {taken:%b}) into database default"
    assert expected in prompts[0] and "another database" in prompts[0]
    assert fingerprint("default") == before
    listed = run("backup_list")
    assert f"{taken:%H:%M}, {taken.day} {taken:%b}" in listed and job["created"][:10] not in listed


def test_show_tells_when_a_restore_started_and_backups_are_created_before_they_start(monkeypatch):
    job = json.loads(run("backup_create", "--database", "sqlite", "--json"))
    backup = BackupJob.objects.get(pk=job["id"])
    assert backup.created_at <= backup.started_at
    restore = json.loads(run("backup_restore", str(job["id"]), "--no-input", "--no-safety-backup", "--json"))
    started = datetime.fromisoformat(restore["started"])

    shown = run("backup_show", str(job["id"]))

    assert "completed at" not in shown
    assert f"#{restore['restore_id']} into sqlite, completed; started {started:%H:%M}, {started.day} {started:%b}" in shown


@pytest.mark.parametrize("args, error", [
    (["backup_list", "--status", "complete"], "argument --status: invalid choice: 'complete' (choose from "),
    (["backup_create", "--database", "nope"], "argument --database: invalid choice: 'nope' (choose from "),
    (["backup_create", "--compression", "zip"], "argument --compression: invalid choice: 'zip' (choose from "),
    (["backup_download", "1"], "the following arguments are required: --output/-o"),
])
def test_argument_mistakes_print_one_line_and_a_hint_and_exit_2(backup_dir, args, error):
    process = manage(backup_dir, *args)
    _, stderr = process.communicate(timeout=60)
    lines = stderr.splitlines()
    assert process.returncode == 2
    assert len(lines) == 2 and lines[0].startswith(f"{args[0]}: error: {error}"), stderr
    assert lines[1] == f"Run 'manage.py {args[0]} --help' for usage."
    assert not BackupJob.objects.exists()


def test_help_documents_the_exit_status(backup_dir):
    restore_help = manage(backup_dir, "backup_restore", "--help").communicate(timeout=60)[0]
    assert "Exit status: 0 done, or cancelled at the question; 1 failed; 2 bad arguments." in " ".join(restore_help.split())
    list_help = manage(backup_dir, "backup_list", "--help").communicate(timeout=60)[0]
    assert "Exit status: 0 done, 1 failed, 2 bad arguments." in " ".join(list_help.split())


def test_restore_prompt_without_a_terminal_cancels(backup_dir):
    job = json.loads(run("backup_create", "--database", "sqlite", "--json"))
    process = manage(backup_dir, "backup_restore", str(job["id"]), stdin=subprocess.DEVNULL)
    stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr) == (0, "")
    assert "Restore cancelled." in stdout
    assert not Restore.objects.exists()


def test_local_admin_login_is_created_once_and_reset_only_when_asked(settings, tmp_path, client):
    settings.DEBUG = True
    login_file = tmp_path / ".admin-login"

    def local_admin(*args):
        output = run("create_local_admin", "--login-file", str(login_file), *args)
        return output.split("password ")[1].strip()

    password = local_admin()
    assert login_file.stat().st_mode & 0o777 == 0o600 and password in login_file.read_text()
    assert client.login(username="admin", password=password)
    assert client.get("/admin/").status_code == 200

    assert local_admin() == password  # `make run` again: the same login, the open session still works
    assert client.get("/admin/").status_code == 200

    new_password = local_admin("--reset")  # `make admin-password`
    assert new_password != password and new_password in login_file.read_text()
    assert client.get("/admin/").status_code == 302  # the old session ended with the old password
    assert client.login(username="admin", password=new_password)


def test_busy_database_says_since_when_in_the_same_time_format(settings):
    settings.TIME_ZONE = "Asia/Kolkata"
    started = datetime(2026, 3, 5, 3, 53, tzinfo=ZoneInfo("UTC"))  # 09:23 in Kolkata
    running = BackupJob.objects.create(database="sqlite", status=BackupStatus.RUNNING, started_at=started)
    with get_engine("sqlite").lock():  # as the process running that backup holds it
        with pytest.raises(CommandError, match=rf"Backup #{running.pk} of database 'sqlite' (is|was) running \(started 09:23, 5 Mar"):
            run("backup_create", "--database", "sqlite")
