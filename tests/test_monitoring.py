"""Monitoring: backup_check (Nagios exit codes), the deployment system checks and the /health/ endpoint."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.db import connections
from django.utils import timezone

from backups_app import services
from backups_app.errors import BackupError
from backups_app.models import BackupJob, BackupStatus

from .conftest import ROOT, LockHolder, backup_check, child_env

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target"])


@pytest.fixture(autouse=True)
def watch_default(settings):
    """Monitor the test catalog's own database, which a test backs up in a second or so."""
    settings.BACKUP_DATABASES = ["default"]
    settings.BACKUP_MAX_AGE_HOURS = 26




def backed_up(hours_ago=0.0):
    job = services.create_backup(database="default")
    if hours_ago:
        BackupJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(hours=hours_ago))
    return job


def test_recent_backup_is_ok():
    job = backed_up(hours_ago=2)
    code, out = backup_check()
    assert code == 0
    assert out.startswith(f"BACKUP OK - default: newest backup #{job.pk} is 2.0 hours old (limit 26 hours) | ")
    assert "'age_default'=7200s;;93600;0" in out


def test_backup_older_than_the_limit_exits_2_with_the_summary_line(backup_dir, settings):
    job = backed_up(hours_ago=30)
    env = {**child_env(backup_dir), "BACKUP_DATABASES": "default", "BACKUP_MAX_AGE_HOURS": "26"}
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "backup_check"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    # The age is measured when the child has started: a second or two past 30 hours on a busy machine.
    assert re.match(
        rf"BACKUP CRITICAL - default: newest backup #{job.pk} is 30.0 hours old \(limit 26 hours\) \| 'age_default'=1080[0-5]\ds",
        result.stdout,
    ), result.stdout
    assert len(result.stdout.strip().splitlines()) == 1

    settings.BACKUP_MAX_AGE_HOURS = 48
    assert backup_check()[0] == 0


def test_database_never_backed_up_is_critical():
    assert backup_check() == (2, "BACKUP CRITICAL - default: no successful backup yet\n")


def test_failed_last_backup_is_critical_until_a_backup_succeeds(monkeypatch, tmp_path):
    backed_up(hours_ago=1)
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_dump: the next backup fails
    with pytest.raises(BackupError, match="pg_dump is not installed"):
        services.create_backup(database="default")
    monkeypatch.undo()
    failed = BackupJob.objects.get(status=BackupStatus.FAILED)

    code, out = backup_check()
    assert code == 2
    assert out.startswith(f"BACKUP CRITICAL - default: last backup #{failed.pk} failed: pg_dump is not installed")

    backed_up()
    assert backup_check()[0] == 0


def test_missing_pg_dump_is_critical(monkeypatch, tmp_path):
    backed_up()
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out = backup_check()
    assert code == 2
    assert "default: cannot be backed up: pg_dump is not installed or not on PATH" in out


def test_pg_dump_older_than_the_server_is_critical(old_pg_dump):
    backed_up()
    old_pg_dump()
    code, out = backup_check()
    assert code == 2
    assert "default: cannot be backed up: pg_dump 12 is older than the PostgreSQL" in out


def test_storage_that_cannot_be_written_is_critical(settings, tmp_path):
    backed_up()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.STORAGES = {**settings.STORAGES, "backups": {
        **settings.STORAGES["backups"],
        "OPTIONS": {**settings.STORAGES["backups"]["OPTIONS"], "location": str(blocker / "backups")},
    }}
    code, out = backup_check()
    assert code == 2
    assert out.startswith("BACKUP CRITICAL - the backup storage is not writable:")


def test_little_free_space_is_a_warning(monkeypatch):
    """The disk's free space is stood in for: filling a real disk to the brink is not done on a shared machine."""
    backed_up()
    job = BackupJob.objects.get()
    import shutil

    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=job.size_bytes))
    code, out = backup_check()
    assert code == 1
    assert out.startswith("BACKUP WARNING - the backup storage has 0 MB free, less than twice the largest backup")


def test_json_output_has_the_level_and_each_problem():
    job = backed_up(hours_ago=40)
    out = StringIO()
    with pytest.raises(CommandError) as error:
        call_command("backup_check", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert error.value.returncode == report["exit_code"] == 2
    assert report["status"] == "critical"
    assert report["databases"]["default"] == {
        "status": "critical", "latest_backup": job.pk, "age_hours": pytest.approx(40, abs=0.01),
        "latest_backup_created": BackupJob.objects.get().created_at.isoformat(),
    }
    assert [(p["level"], p["code"], p["database"]) for p in report["problems"]] == [("critical", "stale", "default")]


def test_backup_of_a_killed_process_is_reported_then_marked_failed(pagila, backup_dir, settings, client):
    settings.BACKUP_DATABASES = [pagila]
    services.create_backup(database=pagila)
    holder = LockHolder(pagila, "LOCK TABLE film IN ACCESS EXCLUSIVE MODE")
    try:
        child = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "backup_create", "--database", pagila],
                                 env=child_env(backup_dir), cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while not (running := BackupJob.objects.filter(status=BackupStatus.RUNNING).first()):
            assert time.monotonic() < deadline, "the backup never started"
            time.sleep(0.1)
        os.killpg(child.pid, signal.SIGKILL)  # the backup's process and its pg_dump
        child.wait()
    finally:
        holder.release()

    health = client.get("/health/")  # reports it, changes nothing
    assert health.status_code == 503
    assert {"level": "critical", "code": "interrupted", "database": "target"} in health.json()["problems"]
    assert BackupJob.objects.get(pk=running.pk).status == BackupStatus.RUNNING

    code, out = backup_check()
    failed = BackupJob.objects.get(pk=running.pk)
    assert failed.status == BackupStatus.FAILED and "stopped before it finished" in failed.error
    assert code == 2
    assert f"target: last backup #{running.pk} failed: The worker running this job" in out


def test_deployment_checks_show_the_same_conditions(backup_dir):
    # As an operator runs it. (Not in this process: the browser tests set DJANGO_ALLOW_ASYNC_UNSAFE,
    # which Django's own deployment checks call an error.)
    env = {name: value for name, value in child_env(backup_dir).items() if name != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "check", "--deploy"],
                            env={**env, "BACKUP_DATABASES": "default"}, cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr  # never backed up: a warning, not an error
    assert "(backups_app.W020) default: no successful backup yet" in result.stdout + result.stderr

    backed_up(hours_ago=30)
    with pytest.raises(SystemCheckError) as error:
        call_command("check", "--deploy", "--tag", "backups", stdout=StringIO(), stderr=StringIO())
    assert "backups_app.E022" in str(error.value) and "newest backup" in str(error.value)

    backed_up()
    out, err = StringIO(), StringIO()
    call_command("check", "--deploy", "--tag", "backups", stdout=out, stderr=err)
    assert "backups_app." not in out.getvalue() + err.getvalue()


def test_health_endpoint_answers_uptime_monitors_without_secrets(client, settings, tmp_path):
    assert client.post("/health/").status_code == 405

    response = client.get("/health/")
    assert response.status_code == 503 and response["Content-Type"] == "application/json"
    assert response.json()["status"] == "critical"
    assert response.json()["databases"]["default"]["problems"] == ["never_backed_up"]

    job = backed_up(hours_ago=1)
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["max_age_hours"] == 26
    assert body["databases"]["default"]["age_hours"] == pytest.approx(1, abs=0.01)
    assert "no-cache" in response["Cache-Control"]

    # A storage problem's message names its path, and job errors can name hosts: none of that is shown.
    secret_dir = tmp_path / "secret-location-4711"
    secret_dir.write_text("")
    settings.STORAGES = {**settings.STORAGES, "backups": {
        **settings.STORAGES["backups"],
        "OPTIONS": {**settings.STORAGES["backups"]["OPTIONS"], "location": str(secret_dir / "backups")},
    }}
    BackupJob.objects.create(database="default", status=BackupStatus.FAILED, compression="zstd",
                             error="could not connect to server db.internal as backup_admin")
    response = client.get("/health/")
    assert response.status_code == 503
    text = response.content.decode()
    assert {"storage_not_writable", "last_backup_failed"} <= {p["code"] for p in response.json()["problems"]}
    params = connections["default"].settings_dict
    for secret in ("secret-location-4711", "db.internal", "backup_admin", params["NAME"], params["HOST"],
                   settings.SECRET_KEY, job.file_name, settings.STORAGES["backups"]["OPTIONS"]["location"], "postgres://"):
        assert secret not in text


def test_health_endpoint_writes_nothing_and_probes_the_servers_at_most_once_a_minute(client, backup_dir, tmp_path,
                                                                                     monkeypatch):
    """pg_dump runs are counted by a wrapper first on PATH that notes each call in a file, then runs the
    real pg_dump."""
    backed_up()
    calls = tmp_path / "pg_dump-calls"
    wrapper = tmp_path / "bin" / "pg_dump"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(calls))}\nexec {shlex.quote(shutil.which("pg_dump"))} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")

    def storage_state():
        return {str(path): path.stat().st_mtime_ns for path in [backup_dir, *backup_dir.rglob("*")]}

    time.sleep(0.05)  # past the file system clock's tick: a file made and removed now changes the mtime
    before = storage_state()
    responses = [client.get("/health/") for _ in range(2)]

    assert [(response.status_code, response.json()["status"]) for response in responses] == [(200, "ok")] * 2
    assert calls.read_text().splitlines() == ["--version"]  # once, not once per request
    assert storage_state() == before  # nothing written to the storage, not even for a moment

    backup_check()  # backup_check probes afresh: it is what cron and monitoring agents run
    assert calls.read_text().splitlines() == ["--version"] * 2
