"""The catalog's guarantees: locking, interrupted backups, cleanup, disaster recovery, secrets."""

import json
import os
import signal
import subprocess
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from backups_app import archives, services
from backups_app.engines import get_engine
from backups_app.errors import BackupError
from backups_app.models import BackupJob, BackupStatus
from backups_app.selectors import backup_to_dict

from .conftest import LockHolder, manage, psql, wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target"])


def test_second_operation_on_a_database_is_refused_naming_the_running_job(pagila):
    running = BackupJob.objects.create(database=pagila, engine="postgresql", status=BackupStatus.RUNNING,
                                       started_at=timezone.now(), compression="zstd")
    with get_engine(pagila).lock():
        with pytest.raises(BackupError, match=rf"Backup #{running.pk} of database 'target' was running"):
            services.create_backup(database=pagila)
    assert BackupJob.objects.count() == 1


def test_five_concurrent_backups_are_serialized_or_refused_and_all_completed_verify(pagila, backup_dir):
    children = [manage(backup_dir, "backup_create", "--database", pagila, "--json") for _ in range(5)]
    outcomes = [(child.wait(timeout=120), child.stdout.read(), child.stderr.read()) for child in children]

    succeeded = [json.loads(out) for code, out, _err in outcomes if code == 0]
    refused = [err for code, _out, err in outcomes if code != 0]
    assert succeeded, outcomes
    assert all("was running" in err for err in refused), refused
    completed = BackupJob.objects.filter(status=BackupStatus.COMPLETED)
    assert sorted(job.pk for job in completed) == sorted(job["id"] for job in succeeded)
    assert BackupJob.objects.count() == len(succeeded)  # refused requests leave no record
    assert all(services.verify_backup(backup=job).ok for job in completed)
    files = sorted(p.name for p in (backup_dir / pagila).iterdir())
    expected = [os.path.basename(job.file_name) + suffix for job in completed for suffix in ("", ".json")]
    assert files == sorted(expected)


def test_backup_killed_mid_dump_leaves_no_complete_looking_file(pagila, backup_dir):
    holder = LockHolder(pagila, "LOCK TABLE film IN ACCESS EXCLUSIVE MODE")  # pg_dump waits on it
    try:
        child = manage(backup_dir, "backup_create", "--database", pagila)
        wait_for(lambda: any(p.name.endswith(".partial") for p in (backup_dir / pagila).glob(".*")))
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        holder.release()
    job = BackupJob.objects.get()
    assert job.file_name

    assert archives.backup_storage().exists(job.file_name) is False
    assert BackupJob.objects.get(pk=job.pk).status == BackupStatus.RUNNING  # nobody could say otherwise yet
    assert services.fail_dead_jobs() == 1
    failed = BackupJob.objects.get(pk=job.pk)
    assert failed.status == BackupStatus.FAILED and "stopped before it finished" in failed.error

    assert services.create_backup(database=pagila).status == BackupStatus.COMPLETED
    plan = services.cleanup_backups()
    assert plan.leftovers == [archives.partial_name(job.file_name)]
    assert not list((backup_dir / pagila).glob(".*partial"))
    assert BackupJob.objects.get(pk=job.pk).status == BackupStatus.FAILED  # kept for the retention period
    services.cleanup_backups(retention_days=0)
    assert not BackupJob.objects.filter(pk=job.pk).exists()


def test_cleanup_keeps_recent_and_each_databases_newest(pagila, backup_dir):
    old = services.create_backup(database=pagila)
    older = services.create_backup(database=pagila)
    newest_default = services.create_backup(database="default")
    BackupJob.objects.filter(pk__in=[old.pk, older.pk, newest_default.pk]).update(created_at=timezone.now() - timedelta(days=30))
    recent = services.create_backup(database=pagila)

    dry = services.plan_cleanup(retention_days=7)
    assert sorted(job.pk for job in dry.expired) == sorted([old.pk, older.pk])
    assert dry.bytes_freed == old.size_bytes + older.size_bytes
    assert (backup_dir / old.file_name).exists()  # a dry run deletes nothing

    services.cleanup_backups(retention_days=7)
    assert set(BackupJob.objects.values_list("pk", flat=True)) == {newest_default.pk, recent.pk}
    assert not (backup_dir / old.file_name).exists()
    assert not (backup_dir / (old.file_name + ".json")).exists()
    assert (backup_dir / recent.file_name).exists()


def test_catalog_is_rebuilt_from_manifests_on_an_empty_database(pagila, backup_dir):
    first = services.create_backup(database=pagila, description="first")
    second = services.create_backup(database=pagila)
    BackupJob.objects.all().delete()  # the catalog is lost; the storage is not

    imported, problems = services.import_scan()

    assert problems == []
    assert sorted(job.pk for job in imported) == [first.pk, second.pk]
    again = BackupJob.objects.get(pk=first.pk)
    assert (again.checksum_sha256, again.file_name, again.description, again.database) == (
        first.checksum_sha256, first.file_name, "first", pagila)
    assert again.created_at == first.created_at
    psql(pagila, "UPDATE film SET title = 'changed'")
    services.restore_backup(backup=again, safety_backup=False)
    assert psql(pagila, "SELECT count(*) FROM film WHERE title = 'changed'").strip() == "0"


def test_tampered_manifest_and_paths_outside_storage_are_refused(pagila, backup_dir, tmp_path):
    job = services.create_backup(database=pagila)
    manifest = backup_dir / (job.file_name + ".json")
    data = json.loads(manifest.read_text())
    data["sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    BackupJob.objects.all().delete()

    with pytest.raises(BackupError, match="does not match its manifest"):
        services.import_archive(path=job.file_name)
    outside = tmp_path / "elsewhere.dump"
    outside.write_bytes(b"PGDMP")
    with pytest.raises(BackupError, match="outside the backup storage"):
        services.import_archive(path=str(outside))
    with pytest.raises(BackupError, match="not a file name inside the backup storage"):
        services.import_archive(path="../elsewhere.dump")
    assert BackupJob.objects.count() == 0


def test_import_registers_a_bare_archive_and_writes_its_manifest(pagila, backup_dir):
    job = services.create_backup(database=pagila)
    (backup_dir / (job.file_name + ".json")).unlink()
    BackupJob.objects.all().delete()

    imported = services.import_archive(path=str(backup_dir / job.file_name), database=pagila)

    assert (imported.engine, imported.compression, imported.checksum_sha256) == ("postgresql", "zstd", job.checksum_sha256)
    assert services.verify_backup(backup=imported).ok
    assert (backup_dir / (job.file_name + ".json")).exists()


def tool_processes(alias, operation, tools):
    """Run `operation` while a lock on a table of `alias` holds up its tools; return {tool: (argv, environment)}
    read from /proc of each tool this process started, before the lock is released."""
    holder = LockHolder(alias, "LOCK TABLE film IN ACCESS EXCLUSIVE MODE")
    seen = {}

    def watch():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and set(seen) != set(tools):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                    environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
                    parent = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError):
                    continue
                tool = os.path.basename(cmdline[0]).decode()
                variables = dict(entry.decode().split("=", 1) for entry in environ if b"=" in entry)
                lock_holder = variables.get("PGAPPNAME", "").startswith("backups-test-lock-holder")
                at_work = not lock_holder and b"--version" not in cmdline
                if parent == os.getpid() and tool in tools and tool not in seen and at_work:
                    seen[tool] = (b" ".join(cmdline).decode(), variables)
            time.sleep(0.01)
        holder.release()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        operation()
    finally:
        watcher.join()
    return seen


def test_password_never_in_argv_records_or_manifests(pagila, backup_dir, caplog, settings):
    """pg_dump and psql get the password in their environment only (the test reads /proc/PID/cmdline).
    In place: its psql waits for the lock that holds the tools up (a swap's: tests/test_restore_swap.py)."""
    settings.BACKUP_RESTORE_STRATEGY = "in-place"
    secret = "S3cret-never-in-argv"
    params = connections[pagila].settings_dict
    params["PASSWORD"] = secret  # trust authentication ignores it; the tools still receive it
    try:
        seen = tool_processes(pagila, lambda: services.create_backup(database=pagila), ["pg_dump"])
        seen |= tool_processes(
            pagila, lambda: services.restore_backup(backup=BackupJob.objects.first(), safety_backup=False), ["psql"]
        )
    finally:
        params["PASSWORD"] = ""

    assert sorted(seen) == ["pg_dump", "psql"]
    for tool, (cmdline, environ) in seen.items():
        assert secret not in cmdline, tool
        assert environ.get("PGPASSWORD") == secret, (tool, environ)
    for job in BackupJob.objects.all():
        assert secret not in json.dumps(backup_to_dict(job))
        assert secret not in (backup_dir / (job.file_name + ".json")).read_text()
        assert secret not in job.error + job.tool_version + job.server_version
    assert secret not in caplog.text


def test_tools_get_no_application_secrets_in_their_environment(pagila, monkeypatch, settings):
    """pg_dump, pg_restore and psql see their own database's password and libpq's settings, not the
    application's secret key or the other databases' URLs (read from /proc/PID/environ). In place, as
    above; tests/test_restore_swap.py checks a swap's tools."""
    settings.BACKUP_RESTORE_STRATEGY = "in-place"
    monkeypatch.setenv("DJANGO_SECRET_KEY", "django-secret-key-for-tools-test")
    monkeypatch.setenv("DATABASE_URL_ANALYTICS", "postgres://backup:other-db-password@db.internal/analytics")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-for-tools-test")
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "17")
    params = connections[pagila].settings_dict
    params["PASSWORD"] = "own-database-password"  # trust authentication ignores it; the tools still receive it
    try:
        seen = tool_processes(pagila, lambda: services.create_backup(database=pagila), ["pg_dump"])
        seen |= tool_processes(
            pagila, lambda: services.restore_backup(backup=BackupJob.objects.get(), safety_backup=False),
            ["pg_restore", "psql"],
        )
    finally:
        params["PASSWORD"] = ""

    assert sorted(seen) == ["pg_dump", "pg_restore", "psql"]
    for tool, (_cmdline, environ) in seen.items():
        leaked = [name for name in environ if name.startswith(("DJANGO_", "DATABASE_URL", "AWS_"))]
        assert leaked == [], tool
        assert "other-db-password" not in str(environ), tool
        assert environ["PATH"] == os.environ["PATH"] and environ["PGCONNECT_TIMEOUT"] == "17", tool
    assert seen["pg_dump"][1]["PGPASSWORD"] == seen["psql"][1]["PGPASSWORD"] == "own-database-password"
    assert "PGPASSWORD" not in seen["pg_restore"][1]  # it reads a stream and connects nowhere


def test_archives_are_0600_and_directory_0700(pagila, backup_dir):
    job = services.create_backup(database=pagila)
    assert (backup_dir / job.file_name).stat().st_mode & 0o777 == 0o600
    assert (backup_dir / (job.file_name + ".json")).stat().st_mode & 0o777 == 0o600
    assert backup_dir.stat().st_mode & 0o777 == 0o700
    assert (backup_dir / pagila).stat().st_mode & 0o777 == 0o700


def test_session_terminated_mid_dump_fails_with_the_reason(pagila, backup_dir):
    holder = LockHolder(pagila, "LOCK TABLE film IN ACCESS EXCLUSIVE MODE")  # pg_dump waits on it
    try:
        child = manage(backup_dir, "backup_create", "--database", pagila)
        wait_for(lambda: psql(pagila, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                      "application_name = 'django-backups' AND wait_event_type = 'Lock' "
                                      "AND datname = current_database()").strip())  # not another suite's pg_dump
        assert child.wait(timeout=60) == 1
    finally:
        holder.release()
    assert "pg_dump failed: terminating connection due to administrator command." in child.stderr.read()
    job = BackupJob.objects.get()
    assert job.status == BackupStatus.FAILED and "terminating connection" in job.error
    assert list((backup_dir / pagila).iterdir()) == []


def test_backup_gives_up_on_locks_after_the_lock_timeout(pagila, settings):
    settings.BACKUP_LOCK_TIMEOUT = 1
    holder = LockHolder(pagila, "LOCK TABLE film IN ACCESS EXCLUSIVE MODE")
    try:
        with pytest.raises(BackupError, match="held exclusive locks on tables of database 'target' for more than 1 s"):
            services.create_backup(database=pagila)
    finally:
        holder.release()
    assert BackupJob.objects.get().status == BackupStatus.FAILED


@pytest.fixture
def small_backup_dir(backup_dir):
    """The backup storage on a real 1 MiB tmpfs (needs root, as the suite has on these machines)."""
    backup_dir.mkdir(mode=0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(backup_dir)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield backup_dir
    subprocess.run(["umount", str(backup_dir)], check=True)


def test_full_disk_fails_the_job_and_removes_the_partial_file(pagila, small_backup_dir):
    with pytest.raises(BackupError, match=r"backup storage is full \(No space left on device\)"):
        services.create_backup(database=pagila, compression="none")  # pagila is ~3.5 MB uncompressed
    job = BackupJob.objects.get()
    assert job.status == BackupStatus.FAILED and "full" in job.error
    assert list((small_backup_dir / pagila).iterdir()) == []
    # Compressed, it fits: the failure left nothing behind that takes the space.
    assert services.create_backup(database=pagila, compression="zstd").status == BackupStatus.COMPLETED


def test_file_size_limit_fails_the_job_and_removes_the_partial_file(pagila, backup_dir):
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))

    child = manage(backup_dir, "backup_create", "--database", pagila, "--compression", "none", preexec_fn=limit)
    assert child.wait(timeout=60) == 1
    assert "The backup storage is full (File too large)" in child.stderr.read()
    job = BackupJob.objects.get()
    assert job.status == BackupStatus.FAILED and "File too large" in job.error
    assert list((backup_dir / pagila).iterdir()) == []
