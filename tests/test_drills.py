"""Restore drills: a backup restored into a scratch database, counted, checked and dropped."""

import json
import signal
import sqlite3
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone

from backups_app import monitoring, schedule, services, tasks
from backups_app.models import BackupJob, Drill, DrillPhase, DrillStatus
from backups_app.services.drills import SCRATCH_PREFIX, installation_tag

from .conftest import backup_check, manage, psql, rows, url, wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target", "sqlite"])


def scratch_databases() -> list[str]:
    """The drill databases of this test run's installation on the server."""
    return rows("postgres", f"SELECT datname FROM pg_database WHERE starts_with(datname, '{SCRATCH_PREFIX}{installation_tag()}_')")


def table_counts(alias: str) -> dict[str, int]:
    """Every table's own rows (not its partitions'), counted in the database itself."""
    tables = rows(alias, """
        SELECT format('%s.%s', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'""")
    return {table: int(psql(alias, f"SELECT count(*) FROM ONLY {table}")) for table in tables}


def test_a_pagila_drill_passes_with_every_tables_count(pagila):
    backup = services.create_backup(database=pagila)
    drill = services.drill_backup(backup=backup)

    assert drill.status == DrillStatus.PASSED, drill.error
    expected = table_counts(pagila)
    assert {table: counts["archive"] for table, counts in drill.tables.items()} == expected
    assert {table: counts["restored"] for table, counts in drill.tables.items()} == expected
    assert expected["public.rental"] == 16044 and expected["public.payment_p2022_01"] > 0
    assert drill.restore_seconds > 0 and drill.finished_at >= drill.started_at
    assert scratch_databases() == []
    backup.refresh_from_db()
    assert backup.last_drill == drill


def test_a_drill_whose_restore_fails_says_why_and_leaves_no_scratch_database(pagila, settings):
    """The archive holds a table owned by a role that no longer exists: restoring it fails."""
    settings.BACKUP_DATABASES = [pagila]
    role = f"backups_drill_role_{django_settings.RUN_ID}"
    psql("postgres", f"DROP ROLE IF EXISTS {role}")
    psql("postgres", f"CREATE ROLE {role}")
    try:
        psql(pagila, f"CREATE TABLE owned_by_gone (id int); INSERT INTO owned_by_gone VALUES (1); "
                     f"ALTER TABLE owned_by_gone OWNER TO {role}")
        backup = services.create_backup(database=pagila)
        psql(pagila, f"DROP OWNED BY {role}")
    finally:
        psql("postgres", f"DROP ROLE IF EXISTS {role}")

    drill = services.drill_backup(backup=backup)

    assert drill.status == DrillStatus.FAILED
    assert f'role "{role}" does not exist' in drill.error
    assert scratch_databases() == []
    backup.refresh_from_db()
    assert backup.last_drill == drill and (backup.drill_result, backup.drilled_at) == ("failed", drill.finished_at)
    code, out = backup_check()
    assert code == 2 and f"target: the restore drill of backup #{backup.pk} failed" in out


def test_a_drill_of_a_damaged_archive_fails_and_creates_nothing(pagila, backup_dir):
    backup = services.create_backup(database=pagila)
    path = backup_dir / backup.file_name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    drill = services.drill_backup(backup=backup)

    assert drill.status == DrillStatus.FAILED and "checksum" in drill.error.lower()
    assert scratch_databases() == []


def test_drill_checks_must_each_return_true(pagila, settings, tmp_path):
    checks = tmp_path / "checks.sql"
    checks.write_text("-- the shop's own expectations\n"
                      "SELECT count(*) > 100 FROM public.actor;\n"
                      "SELECT count(*) > 1000000 FROM public.rental;\n"
                      "SELECT no_such_column FROM public.film;\n")
    settings.BACKUP_DRILL_CHECKS = str(checks)
    backup = services.create_backup(database=pagila)

    drill = services.drill_backup(backup=backup)

    assert drill.status == DrillStatus.FAILED
    assert [check["query"] for check in drill.failed_checks] == [
        "SELECT count(*) > 1000000 FROM public.rental", "SELECT no_such_column FROM public.film"]
    assert drill.failed_checks[0]["result"] == "False" and "no_such_column" in drill.failed_checks[1]["result"]
    assert "2 of the BACKUP_DRILL_CHECKS queries did not return true" in drill.error
    assert all(counts["archive"] == counts["restored"] for counts in drill.tables.values())
    assert scratch_databases() == []


def test_a_sqlite_drill_passes_and_removes_its_scratch_file(tmp_path):
    path = connections["sqlite"].settings_dict["NAME"]
    database = sqlite3.connect(path)
    database.executescript("DROP TABLE IF EXISTS drilled; CREATE TABLE drilled (id INTEGER PRIMARY KEY, name TEXT);"
                           "INSERT INTO drilled (name) SELECT 'row' FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                           "SELECT i + 1 FROM n WHERE i < 250) SELECT i FROM n);")
    database.commit()
    database.close()
    try:
        backup = services.create_backup(database="sqlite")
        drill = services.drill_backup(backup=backup)
    finally:  # the sqlite test database is shared by the session's tests
        database = sqlite3.connect(path)
        database.execute("DROP TABLE drilled")
        database.close()

    assert drill.status == DrillStatus.PASSED, drill.error
    assert drill.tables["drilled"] == {"archive": 250, "restored": 250}
    assert drill.scratch_name.endswith(".sqlite3") and not __import__("os").path.exists(drill.scratch_name)


def test_backup_drill_command_runs_as_a_job_from_the_queue(pagila):
    backup = services.create_backup(database=pagila)
    out = StringIO()
    call_command("backup_drill", "--latest", "--database", pagila, "--background", "--json", stdout=out)
    queued = json.loads(out.getvalue())
    drill = Drill.objects.get(pk=queued["id"])
    assert (drill.status, drill.backup_id) == (DrillStatus.PENDING, backup.pk) and drill.task_id

    assert tasks.run_drill.call(drill.pk) == DrillStatus.PASSED  # what a worker runs

    out = StringIO()
    call_command("backup_show", str(backup.pk), "--json", stdout=out)
    shown = json.loads(out.getvalue())["last_drill"]
    assert shown["id"] == drill.pk and shown["status"] == "passed" and shown["tables"]["public.actor"] == {
        "archive": 200, "restored": 200}


def test_backup_drill_command_exits_1_when_the_drill_fails(pagila, backup_dir):
    backup = services.create_backup(database=pagila)
    (backup_dir / backup.file_name).write_bytes(b"not an archive")
    with pytest.raises(CommandError, match="is refused"):
        call_command("backup_drill", str(backup.pk), stdout=StringIO())
    with pytest.raises(CommandError, match="--database goes with --latest"):
        call_command("backup_drill", str(backup.pk), "--database", pagila, stdout=StringIO())


def test_a_backup_is_drilled_after_it_completes_when_asked(pagila, settings):
    settings.BACKUP_DRILL_AFTER_BACKUP = True
    backup = services.create_backup(database=pagila)
    drill = Drill.objects.get(backup=backup)
    assert drill.status == DrillStatus.PENDING and drill.task_id


def test_cleanup_drops_the_scratch_databases_that_killed_drills_left(pagila):
    ours = f"{SCRATCH_PREFIX}{installation_tag()}_999_abcdef"
    theirs = f"{SCRATCH_PREFIX}00000000_999_abcdef"  # another installation sharing the server
    for name in (ours, theirs):
        psql("postgres", f"DROP DATABASE IF EXISTS {name}")
        psql("postgres", f"CREATE DATABASE {name}")
    try:
        services.cleanup_backups()
        remaining = rows("postgres", f"SELECT datname FROM pg_database WHERE datname IN ('{ours}', '{theirs}')")
    finally:
        for name in (ours, theirs):
            psql("postgres", f"DROP DATABASE IF EXISTS {name}")
    assert remaining == [theirs]


def test_monitoring_warns_when_no_drill_passed_within_the_limit(pagila, settings):
    settings.BACKUP_DATABASES = [pagila]
    settings.BACKUP_DRILL_MAX_AGE_DAYS = 7
    backup = services.create_backup(database=pagila)
    report = monitoring.check_health()
    assert [problem.code for problem in report.problems] == [monitoring.NOT_DRILLED]
    assert report.level == monitoring.Level.WARNING

    drill = services.drill_backup(backup=backup)
    assert monitoring.check_health().problems == []
    Drill.objects.filter(pk=drill.pk).update(finished_at=timezone.now() - timedelta(days=8))
    assert [problem.code for problem in monitoring.check_health().problems] == [monitoring.NOT_DRILLED]
    assert BackupJob.objects.get(pk=backup.pk).drill_result == DrillStatus.PASSED




def test_a_killed_drill_leaves_its_scratch_database_only_until_cleanup(pagila, backup_dir):
    """SIGKILL the process running a drill while it restores: its scratch database stays, and cleanup drops it."""
    backup = services.create_backup(database=pagila)
    process = manage(backup_dir, "backup_drill", str(backup.pk))
    try:
        drill = wait_for(lambda: Drill.objects.filter(backup=backup, phase=DrillPhase.RESTORING).first(), timeout=60)
        wait_for(lambda: drill.scratch_name in scratch_databases(), timeout=60)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert drill.scratch_name in scratch_databases()

    services.cleanup_backups()

    assert scratch_databases() == []
    drill.refresh_from_db()
    assert drill.status == DrillStatus.FAILED and "stopped before it finished" in drill.error


def test_a_drill_restores_on_the_server_of_backup_drill_database_url(pagila, settings):
    params = connections[pagila].settings_dict
    settings.BACKUP_DRILL_DATABASE_URL = f"postgres://{params['USER']}@{params['HOST']}:{params['PORT'] or 5432}/postgres"
    backup = services.create_backup(database=pagila)
    drill = services.drill_backup(backup=backup)
    assert drill.status == DrillStatus.PASSED, drill.error
    assert scratch_databases() == []

    settings.BACKUP_DRILL_DATABASE_URL = "postgres://drills:pw-secret@127.0.0.1:1/postgres"  # nothing listens there
    drill = services.drill_backup(backup=backup)
    assert drill.status == DrillStatus.FAILED and "127.0.0.1" in drill.error and "pw-secret" not in drill.error


def test_the_drill_schedule_asks_for_each_databases_newest_backup(pagila, settings):
    older = services.create_backup(database=pagila)
    newest = services.create_backup(database=pagila)
    runs = schedule.run_scheduled_drills([pagila, "sqlite"])  # sqlite has no backup: skipped
    assert [run.outcome for run in runs] == [schedule.QUEUED]
    drill = Drill.objects.get()
    assert (drill.backup_id, drill.status) == (newest.pk, DrillStatus.PENDING) and older.pk != newest.pk


def test_a_failed_drill_is_announced(pagila, backup_dir, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.BACKUP_NOTIFY_EMAILS = ["ops@example.com"]
    backup = services.create_backup(database=pagila)
    (backup_dir / backup.file_name).write_bytes(b"damaged")
    drill = services.drill_backup(backup=backup)
    assert [message.subject for message in mail.outbox] == [
        f"[backups] Restore drill of backup #{backup.pk} (database target) failed"]
    assert drill.error in mail.outbox[0].body


def test_the_admin_shows_each_backups_last_drill(admin_client, pagila, backup_dir):
    passed = services.create_backup(database=pagila)
    services.drill_backup(backup=passed)
    failed = services.create_backup(database=pagila)
    (backup_dir / failed.file_name).write_bytes(b"damaged")
    services.drill_backup(backup=failed)
    never = services.create_backup(database=pagila)

    listing = admin_client.get(url("changelist")).content.decode()
    assert listing.count('class="drill-passed"') == 1 and listing.count('class="drill-failed"') == 1
    only_failed = admin_client.get(url("changelist") + "?drill_result__exact=failed")
    assert [job.pk for job in only_failed.context["cl"].result_list] == [failed.pk]

    page = admin_client.get(url("change", passed.pk)).content.decode()
    assert "Passed on" in page and "<td>public.actor</td><td>200</td><td>200</td><td>ok</td>" in page
    assert "Never drilled" in admin_client.get(url("change", never.pk)).content.decode()

    assert admin_client.get(url("drill", never.pk)).status_code == 405
    response = admin_client.post(url("drill", never.pk))
    assert response.status_code == 302 and response["Location"] == url("change", never.pk)
    asked = Drill.objects.get(backup=never)
    assert asked.status == DrillStatus.PENDING and asked.requested_by_name == "admin" and asked.task_id


def test_restoring_the_catalogs_own_database_keeps_its_drills():
    backup = services.create_backup(database="default")
    drill = services.drill_backup(backup=backup)  # made after the backup: the archive lacks it
    assert drill.status == DrillStatus.PASSED, drill.error

    services.restore_backup(backup=backup, safety_backup=False)

    assert Drill.objects.get(pk=drill.pk).tables == drill.tables
    assert BackupJob.objects.get(pk=backup.pk).drill_result == DrillStatus.PASSED


def test_cleanup_skips_and_delete_refuses_a_backup_that_a_drill_reads(pagila, backup_dir):
    old = services.create_backup(database=pagila)
    BackupJob.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))
    services.create_backup(database=pagila)  # the newest, kept anyway
    drill = services.request_drill(backup=old)

    plan = services.plan_cleanup(retention_days=7)
    assert old.pk not in [job.pk for job in plan.expired]
    kept = {item.backup.pk: item.reasons_text for item in plan.kept}
    assert kept[old.pk] == f"read by restore drill #{drill.pk}"
    services.cleanup_backups(retention_days=7)
    assert (backup_dir / old.file_name).exists()
    with pytest.raises(CommandError, match=rf"Backup #{old.pk} is being drilled \(restore drill #{drill.pk}\)"):
        call_command("backup_delete", str(old.pk), "--no-input", stdout=StringIO())


def test_an_unreadable_checks_file_is_refused_in_one_sentence_before_anything_runs(pagila, settings, tmp_path):
    settings.BACKUP_DRILL_CHECKS = str(tmp_path / "missing.sql")
    backup = services.create_backup(database=pagila)
    with pytest.raises(CommandError, match=r"^BACKUP_DRILL_CHECKS names .*missing\.sql, which cannot be read \(No such "
                                           r"file or directory\); fix the path or empty it\.$"):
        call_command("backup_drill", str(backup.pk), stdout=StringIO())
    assert not Drill.objects.exists() and scratch_databases() == []
