"""Backups and restores of a real PostgreSQL database (pagila: partitioned tables, large objects)."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from backups_app import services
from backups_app.errors import BackupError
from backups_app.models import BackupJob, BackupStatus, BackupTrigger, Restore, RestoreStatus

from .conftest import ROOT, LockHolder, child_env, fingerprint, psql, wait_for

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target"])


@pytest.fixture(autouse=True)
def in_place(settings):
    """These tests are about the in-place restore (one transaction); tests/test_restore_swap.py has the swap's."""
    settings.BACKUP_RESTORE_STRATEGY = "in-place"


def test_round_trip_restores_identical_content_over_changed_database(pagila, backup_dir):
    before = fingerprint(pagila)
    job = services.create_backup(database=pagila, description="pagila")
    assert job.status == BackupStatus.COMPLETED
    assert (backup_dir / job.file_name).stat().st_size == job.size_bytes

    psql(pagila, """
        DELETE FROM payment WHERE payment_id % 3 = 0;
        UPDATE customer SET email = 'changed@example.com';
        CREATE TABLE created_after_backup (id int);
        CREATE SCHEMA extra; CREATE TABLE extra.t (id int);
        SELECT lo_unlink(424242); SELECT lo_from_bytea(555, 'new');
        SELECT setval('customer_customer_id_seq', 99999);
    """)
    assert fingerprint(pagila) != before

    restore = services.restore_backup(backup=job)

    assert restore.status == RestoreStatus.COMPLETED
    assert fingerprint(pagila) == before  # rows, sequences, large objects, schema; new objects gone
    job.refresh_from_db()
    assert job.status == BackupStatus.RESTORED
    assert restore.safety_backup.trigger == BackupTrigger.PRE_RESTORE_SAFETY
    assert restore.safety_backup.status == BackupStatus.COMPLETED


def test_safety_backup_holds_the_state_before_the_restore(pagila):
    job = services.create_backup(database=pagila)
    psql(pagila, "UPDATE film SET title = lower(title) WHERE film_id > 100")
    changed = fingerprint(pagila)
    restore = services.restore_backup(backup=job)
    services.restore_backup(backup=restore.safety_backup, safety_backup=False)
    assert fingerprint(pagila) == changed


def test_restore_that_fails_part_way_leaves_database_unchanged(pagila):
    psql(pagila, "CREATE ROLE backups_tmp_owner; CREATE TABLE owned (id int); ALTER TABLE owned OWNER TO backups_tmp_owner")
    job = services.create_backup(database=pagila)
    psql(pagila, "DROP TABLE owned; DROP ROLE backups_tmp_owner; DELETE FROM payment WHERE payment_id < 17000")
    before = fingerprint(pagila)

    with pytest.raises(BackupError, match='role "backups_tmp_owner" does not exist'):
        services.restore_backup(backup=job, safety_backup=False)

    assert fingerprint(pagila) == before
    restore = Restore.objects.get()
    assert restore.status == RestoreStatus.FAILED
    assert "rolled back" in restore.error


def test_restore_waits_at_most_the_lock_timeout_then_terminates_when_asked(pagila, settings):
    settings.BACKUP_LOCK_TIMEOUT = 1
    job = services.create_backup(database=pagila)
    holder = LockHolder(pagila, "LOCK TABLE film IN ACCESS SHARE MODE")
    try:
        started = time.monotonic()
        with pytest.raises(BackupError, match="held locks .* --terminate-connections"):
            services.restore_backup(backup=job, safety_backup=False)
        assert time.monotonic() - started < 30

        services.restore_backup(backup=job, safety_backup=False, terminate_sessions=True)
        assert holder.process.wait(timeout=10) != 0  # its session was ended
    finally:
        holder.release()


def test_catalog_survives_restore_of_its_own_database(django_user_model):
    user = django_user_model.objects.create_user("operator")
    old = services.create_backup(database="default", acting_user=user)
    newer = services.create_backup(database="default", description="made after")
    restore = services.restore_backup(backup=old, acting_user=user)

    assert set(BackupJob.objects.values_list("pk", flat=True)) >= {old.pk, newer.pk, restore.safety_backup.pk}
    restore = Restore.objects.get(pk=restore.pk)
    assert restore.status == RestoreStatus.COMPLETED
    assert restore.requested_by_name == "operator"
    # New rows still get fresh ids after the catalog's sequence was reset by the restore.
    assert services.create_backup(database="default").pk > restore.safety_backup.pk


def test_corrupted_archive_is_refused_and_database_untouched(pagila, backup_dir):
    job = services.create_backup(database=pagila)
    path = backup_dir / job.file_name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    psql(pagila, "UPDATE film SET title = lower(title) WHERE film_id < 10")
    before = fingerprint(pagila)

    assert not services.verify_backup(backup=job).ok
    with pytest.raises(BackupError, match="does not match its checksum"):
        services.restore_backup(backup=job)
    assert fingerprint(pagila) == before
    assert BackupJob.objects.filter(trigger=BackupTrigger.PRE_RESTORE_SAFETY).count() == 0


def test_truncated_archive_fails_verification(pagila, backup_dir):
    job = services.create_backup(database=pagila)
    path = backup_dir / job.file_name
    path.write_bytes(path.read_bytes()[: job.size_bytes // 2])
    result = services.verify_backup(backup=job)
    assert not result.ok and "checksum" in result.problem


def test_unreachable_database_fails_with_one_sentence():
    from django.db import connections

    params = connections["target"].settings_dict
    port, params["PORT"] = params["PORT"], 1  # nothing listens there
    try:
        with pytest.raises(BackupError, match=r"^Cannot connect to database 'target': .*Connection refused"):
            services.create_backup(database="target")
    finally:
        params["PORT"] = port
    assert not BackupJob.objects.filter(status=BackupStatus.COMPLETED).exists()


def test_archive_tables_are_read_from_the_archive(pagila):
    job = services.create_backup(database=pagila)
    tables = services.archive_tables(backup=job)
    assert {"public.film", "public.payment", "public.payment_p2022_01", "public.actor"} <= set(tables)
    assert len(tables) == int(psql(pagila, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))


def test_archive_that_ends_early_during_the_restore_commits_nothing(pagila, backup_dir):
    """An archive cut short whose catalog checksum was made to match (so it gets past the check):
    pg_restore fails part-way through the data, after psql has run the drops and loaded tables."""
    import hashlib

    job = services.create_backup(database=pagila, compression="none")
    path = backup_dir / job.file_name
    path.write_bytes(path.read_bytes()[: int(job.size_bytes * 0.8)])
    data = path.read_bytes()
    BackupJob.objects.filter(pk=job.pk).update(size_bytes=len(data), checksum_sha256=hashlib.sha256(data).hexdigest())
    psql(pagila, "UPDATE film SET title = lower(title) WHERE film_id < 50; CREATE TABLE created_after (id int)")
    before = fingerprint(pagila)

    with pytest.raises(BackupError, match="pg_restore could not read the archive"):
        services.restore_backup(backup=job.pk, safety_backup=False)

    assert fingerprint(pagila) == before


@pytest.mark.parametrize("damage, problem", [
    ("zstd stream cut short", r"cannot be decompressed \(the zstd stream ends in the middle of a frame"),
    ("zstd stream missing its last byte", r"cannot be decompressed \(the zstd stream ends in the middle of a frame"),
    ("gzip stream missing its trailer", r"cannot be decompressed \(Compressed file ended before the end-of-stream"),
    ("dump cut short, then compressed with zstd", r"does not read through: pg_restore could not read the archive to its end"),
    ("dump cut short, then compressed with gzip", r"does not read through: pg_restore could not read the archive to its end"),
    ("dump cut short, uncompressed", r"does not read through: pg_restore could not read the archive to its end"),
])
def test_truncated_archive_imported_without_manifest_fails_verification(pagila, backup_dir, damage, problem):
    """`backup_import PATH` registers a bare archive with the checksum of the file as it was found, so only
    reading the compressed stream and the dump itself to their ends shows that it was cut short."""
    import gzip

    import zstandard

    job = services.create_backup(database=pagila, compression="none")
    dump = (backup_dir / job.file_name).read_bytes()
    cut = dump[: int(len(dump) * 0.7)]
    whole_zstd = zstandard.ZstdCompressor(level=3).compress(dump)
    name, data = {
        "zstd stream cut short": ("cut.pgdump.zst", whole_zstd[: int(len(whole_zstd) * 0.7)]),
        "zstd stream missing its last byte": ("cut.pgdump.zst", whole_zstd[:-1]),
        "gzip stream missing its trailer": ("cut.pgdump.gz", gzip.compress(dump)[:-4]),
        "dump cut short, then compressed with zstd": ("cut.pgdump.zst", zstandard.ZstdCompressor().compress(cut)),
        "dump cut short, then compressed with gzip": ("cut.pgdump.gz", gzip.compress(cut)),
        "dump cut short, uncompressed": ("cut.pgdump", cut),
    }[damage]
    (backup_dir / "found").mkdir()
    (backup_dir / "found" / name).write_bytes(data)
    (backup_dir / "found" / "whole.pgdump.zst").write_bytes(whole_zstd)

    imported = services.import_archive(path=f"found/{name}", database=pagila)
    whole = services.import_archive(path="found/whole.pgdump.zst", database=pagila)

    result = services.verify_backup(backup=imported)
    assert not result.ok
    assert re.search(problem, result.problem), result.problem
    assert services.verify_backup(backup=whole).ok


def restore_waiting_for_a_lock(alias):
    """Return whether a restore's psql session is waiting for a lock (held by a LockHolder)."""
    return psql(alias, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'django-backups' "
                       "AND datname = current_database() AND wait_event_type = 'Lock'").strip() == "1"


def restore_sessions(alias):
    return psql(alias, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'django-backups' "
                       "AND datname = current_database()").strip()


def children(parent, tool):
    """Return the pids of the processes named `tool` whose parent is `parent` (not LockHolder's psql)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            name = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            lock_holder = b"PGAPPNAME=backups-test-lock-holder" in open(f"/proc/{pid}/environ", "rb").read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and os.path.basename(name) == tool.encode() and not lock_holder:
            pids.append(int(pid))
    return pids


@pytest.mark.parametrize("tool", ["psql", "pg_restore"])
def test_tool_killed_during_the_restore_is_named_and_the_database_unchanged(pagila, settings, tool):
    settings.BACKUP_LOCK_TIMEOUT = 120
    job = services.create_backup(database=pagila)
    psql(pagila, "UPDATE film SET title = lower(title) WHERE film_id < 50")
    before = fingerprint(pagila)
    holder = LockHolder(pagila, "LOCK TABLE film IN ACCESS EXCLUSIVE MODE")  # the restore's drops wait for it

    def kill_the_tool():
        wait_for(lambda: restore_waiting_for_a_lock(pagila))
        os.kill(wait_for(lambda: children(os.getpid(), tool))[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_tool)
    killer.start()
    try:
        with pytest.raises(BackupError) as failure:
            services.restore_backup(backup=job, safety_backup=False)
        killer.join()
        # The killed tool's session was ended at once, not left waiting for the lock with the drops pending.
        assert restore_sessions(pagila) == "0"
    finally:
        holder.release()
        killer.join()

    message = f"{tool} was killed by signal 9; the restore was rolled back, the database is unchanged."
    assert str(failure.value) == message
    assert Restore.objects.get().error == message
    assert fingerprint(pagila) == before


def test_restore_killed_with_sigkill_leaves_no_temporary_file(pagila, backup_dir, tmp_path):
    """The restore process is killed with SIGKILL (so no cleanup code runs) while psql waits for a lock."""
    job = services.create_backup(database=pagila)
    psql(pagila, "UPDATE film SET title = lower(title) WHERE film_id < 50")
    before = fingerprint(pagila)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    holder = LockHolder(pagila, "LOCK TABLE film IN ACCESS EXCLUSIVE MODE")
    try:
        child = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "backup_restore", str(job.pk), "--no-input", "--no-safety-backup",
             "--strategy", "in-place"],
            env={**child_env(backup_dir), "TMPDIR": str(temporary), "BACKUP_LOCK_TIMEOUT": "120"}, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: restore_waiting_for_a_lock(pagila))
        psql_pid = children(child.pid, "psql")[0]
        child.kill()
        child.wait()
        wait_for(lambda: not os.path.exists(f"/proc/{psql_pid}"))  # psql dies with its parent
        assert [path.name for path in temporary.rglob("*") if not path.is_dir()] == []
    finally:
        holder.release()
    wait_for(lambda: restore_sessions(pagila) == "0")
    assert fingerprint(pagila) == before
