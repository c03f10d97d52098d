"""Backups and restores of a real MariaDB database (tests/fixtures/mariadb/shop.sql)."""

import hashlib
import io
import os
import subprocess
import time
from pathlib import Path

import MySQLdb
import pytest
from django.db import connections

from backups_app import services
from backups_app.errors import BackupError
from backups_app.models import BackupJob, BackupStatus, DrillStatus, Restore, RestoreStatus

from .conftest import ROOT, child_env

SHOP = ROOT / "tests" / "fixtures" / "mariadb" / "shop.sql"
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "mariadb"])


def server_args() -> list[str]:
    params = connections["mariadb"].settings_dict
    return [f"--host={params['HOST'] or '127.0.0.1'}", f"--port={params['PORT'] or 3306}", f"--user={params['USER']}"]


def mariadb(sql: str, *, database: str | None = None) -> str:
    """Run SQL through the mariadb client in the test database (or `database`); return its tab-separated output."""
    database = database or connections["mariadb"].settings_dict["NAME"]
    env = {**os.environ, "MYSQL_PWD": connections["mariadb"].settings_dict["PASSWORD"] or ""}
    result = subprocess.run(
        ["mariadb", *server_args(), "--default-character-set=utf8mb4", "--batch", "--skip-column-names", database],
        input=sql.encode(), env=env, capture_output=True,
    )
    if result.returncode:
        raise AssertionError(f"mariadb failed: {result.stderr.decode()}")
    return result.stdout.decode()


def connect(database: str | None = None):
    params = connections["mariadb"].settings_dict
    return MySQLdb.connect(
        host=params["HOST"] or "127.0.0.1", port=int(params["PORT"] or 3306), user=params["USER"],
        password=params["PASSWORD"] or "", database=database or params["NAME"], charset="utf8mb4", autocommit=True,
    )


def fingerprint(database: str | None = None) -> dict:
    """Describe a MariaDB database: every table's rows (hashed in Python, as CHECKSUM TABLE is not repeatable
    with virtual columns), the SHOW CREATE text of every object, and the events' status."""
    result = {}
    raw = connect(database)
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1")
        for name, kind in cursor.fetchall():
            if kind == "VIEW":
                cursor.execute(f"SHOW CREATE VIEW `{name}`")
                result[f"view {name}"] = cursor.fetchone()[1]
                continue
            cursor.execute(f"SHOW CREATE TABLE `{name}`")
            result[f"schema {name}"] = cursor.fetchone()[1]
            cursor.execute(f"SELECT * FROM `{name}`")
            rows = sorted(repr(row) for row in cursor.fetchall())
            result[f"rows {name}"] = f"{len(rows)}:" + hashlib.sha256("\n".join(rows).encode()).hexdigest()
        cursor.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() ORDER BY 1")
        for (name,) in cursor.fetchall():
            cursor.execute(f"SHOW CREATE TRIGGER `{name}`")
            result[f"trigger {name}"] = cursor.fetchone()[:6]  # without the creation time
        cursor.execute("SELECT TRIGGER_NAME, ACTION_ORDER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()")
        result["trigger order"] = sorted(cursor.fetchall())
        cursor.execute("SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY 1, 2")
        for kind, name in cursor.fetchall():
            cursor.execute(f"SHOW CREATE {kind} `{name}`")
            result[f"{kind} {name}"] = cursor.fetchone()
        cursor.execute("SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE() ORDER BY 1")
        for name, status in cursor.fetchall():
            cursor.execute(f"SHOW CREATE EVENT `{name}`")
            result[f"event {name}"] = (status, cursor.fetchone())
    finally:
        raw.close()
    return result


def databases_like(prefix: str) -> list[str]:
    return [name for name in mariadb("SHOW DATABASES").split() if name.startswith(prefix)]


@pytest.fixture
def shop(django_db_blocker):
    """Fill the `mariadb` test database with a fresh shop; return the alias."""
    connections["mariadb"].close()
    name = connections["mariadb"].settings_dict["NAME"]
    mariadb(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4", database="mysql")
    mariadb(SHOP.read_text())
    yield "mariadb"
    for leftover in databases_like(name + "__"):
        mariadb(f"DROP DATABASE `{leftover}`", database="mysql")


def test_round_trip_restores_identical_content_and_removes_what_came_after(shop, backup_dir):
    before = fingerprint()
    job = services.create_backup(database=shop, description="shop")
    assert job.status == BackupStatus.COMPLETED and job.engine == "mysql"
    archive = (backup_dir / job.file_name)
    assert archive.stat().st_size == job.size_bytes

    mariadb("""
        DELETE FROM orders WHERE id % 3 = 0;
        UPDATE customer SET name = 'changed' WHERE id < 100;
        INSERT INTO orders (customer_id) VALUES (1);
        SELECT NEXTVAL(invoice_numbers);
        CREATE TABLE created_after_backup (id int);
        CREATE VIEW view_after_backup AS SELECT 1 AS one;
        CREATE TRIGGER trigger_after_backup BEFORE UPDATE ON product FOR EACH ROW SET NEW.price = NEW.price;
        CREATE PROCEDURE procedure_after_backup() SELECT 1;
        CREATE EVENT event_after_backup ON SCHEDULE EVERY 1 DAY STARTS '2035-01-01' DO SELECT 1;
        DROP VIEW paid_order_count;
        DROP TRIGGER customer_email;
        DROP FUNCTION order_total;
        ALTER EVENT purge_audit DISABLE;
        ALTER TABLE product ADD COLUMN added_after int;
    """)
    assert fingerprint() != before

    restore = services.restore_backup(backup=job)

    assert restore.status == RestoreStatus.COMPLETED
    assert fingerprint() == before
    assert restore.safety_backup.status == BackupStatus.COMPLETED
    # The restored objects work: the triggers fire in order, the sequence default and the function answer.
    new_id = mariadb("INSERT INTO orders (customer_id) VALUES (2); SELECT LAST_INSERT_ID()").strip()
    assert mariadb("SELECT message FROM audit_log ORDER BY id DESC LIMIT 2").split("\n")[:2] == [
        f"second {new_id}", f"order {new_id}"]
    assert mariadb(f"SELECT invoice > 1000 FROM orders WHERE id = {new_id}").strip() == "1"
    assert mariadb("SELECT order_total(1) IS NOT NULL").strip() == "1"
    assert databases_like(connections["mariadb"].settings_dict["NAME"] + "__") == []  # no scratch left


def test_archive_is_a_plain_dump_without_dates_or_database_names(shop, backup_dir):
    job = services.create_backup(database=shop, compression="none")
    dump = (backup_dir / job.file_name).read_bytes()
    name = connections["mariadb"].settings_dict["NAME"].encode()
    assert dump.rstrip().endswith(b"-- Dump completed")
    assert b"CREATE DATABASE" not in dump and b"\nUSE " not in dump
    assert b"0x00FF" in dump  # BLOBs as hex
    assert "😀".encode() in dump
    assert services.archive_tables(backup=job) == [
        "audit_log", "customer", "invoice_numbers", "order_line", "orders", "product", "search_words"]
    assert name + b"`.`invoice_numbers" in dump  # the sequence default names the database: the restore rewrites it


def test_password_is_never_on_a_command_line(shop, settings):
    """The dump and the restore run as a user with a password; no process's argv ever shows it."""
    params = connections["mariadb"].settings_dict
    user, password = f"bk_{os.getpid()}", f"Secret-{os.getpid()}-pw"
    mariadb(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'; CREATE USER '{user}'@'localhost' IDENTIFIED BY "
            f"'{password}'; GRANT ALL ON *.* TO '{user}'@'%' WITH GRANT OPTION; "
            f"GRANT ALL ON *.* TO '{user}'@'localhost' WITH GRANT OPTION", database="mysql")
    seen, environments, stop = [], [], False

    def watch():
        while not stop:
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        seen.append(Path(f"/proc/{pid}/cmdline").read_bytes())
                        if seen[-1].startswith((b"mariadb-dump\0", b"mariadb\0")):
                            environments.append((seen[-1], Path(f"/proc/{pid}/environ").read_bytes()))
                    except OSError:
                        pass

    import threading

    watcher = threading.Thread(target=watch)
    old = dict(params)
    params.update(USER=user, PASSWORD=password)
    watcher.start()
    try:
        job = services.create_backup(database=shop)
        services.restore_backup(backup=job, safety_backup=False)
    finally:
        stop = True
        watcher.join()
        params.update(USER=old["USER"], PASSWORD=old["PASSWORD"])
        connections["mariadb"].close()
        mariadb(f"DROP USER '{user}'@'%'; DROP USER '{user}'@'localhost'", database="mysql")
    assert any(b"mariadb-dump" in line for line in seen)
    assert any(line.startswith(b"mariadb\0") for line in seen)
    assert not [line for line in seen if password.encode() in line]
    # The tools get the password in their environment, and none of the application's secrets.
    connecting = [env for argv, env in environments if b"--version" not in argv]
    assert connecting and all(f"MYSQL_PWD={password}".encode() in env for env in connecting)
    assert not [env for _argv, env in environments if b"DJANGO_SECRET_KEY" in env or b"DATABASE_URL" in env]


def test_truncated_archive_is_refused_before_anything_changes(shop, backup_dir):
    """An archive cut at a statement boundary (the client would exit 0), its checksum made to match."""
    job = services.create_backup(database=shop, compression="none")
    path = backup_dir / job.file_name
    data = path.read_bytes()
    cut = data[: data.index(b"INSERT INTO `product`")]
    path.write_bytes(cut)
    BackupJob.objects.filter(pk=job.pk).update(size_bytes=len(cut), checksum_sha256=hashlib.sha256(cut).hexdigest())
    mariadb("UPDATE customer SET name = 'changed' WHERE id < 10; CREATE TABLE created_after (id int)")
    before = fingerprint()

    with pytest.raises(BackupError, match="truncated"):
        services.restore_backup(backup=job.pk, safety_backup=False)

    assert fingerprint() == before
    assert databases_like(connections["mariadb"].settings_dict["NAME"] + "__") == []


def test_check_archive_reads_a_whole_archive_and_refuses_a_cut_one(shop, backup_dir):
    from backups_app.engines.mysql import MySQLEngine

    job = services.create_backup(database=shop, compression="none")
    data = (backup_dir / job.file_name).read_bytes()

    MySQLEngine.check_archive(io.BytesIO(data))
    with pytest.raises(BackupError, match="ends before its \"-- Dump completed\" line: it is truncated"):
        MySQLEngine.check_archive(io.BytesIO(data[: data.index(b"INSERT INTO `product`")]))


def test_failing_statement_in_the_archive_leaves_database_unchanged(shop, backup_dir):
    job = services.create_backup(database=shop, compression="none")
    path = backup_dir / job.file_name
    data = path.read_bytes().replace(b"INSERT INTO `product` VALUES", b"INSERT INTO `no_such_table` VALUES", 1)
    path.write_bytes(data)
    BackupJob.objects.filter(pk=job.pk).update(size_bytes=len(data), checksum_sha256=hashlib.sha256(data).hexdigest())
    mariadb("DELETE FROM orders WHERE id < 100")
    before = fingerprint()

    with pytest.raises(BackupError, match=r"unchanged: ERROR 1146 .*no_such_table"):
        services.restore_backup(backup=job.pk, safety_backup=False)

    assert fingerprint() == before
    assert Restore.objects.get().status == RestoreStatus.FAILED


def test_archive_that_switches_database_is_refused(shop, backup_dir):
    """A dump made elsewhere with --databases (USE ...) would load outside the scratch database."""
    job = services.create_backup(database=shop, compression="none")
    path = backup_dir / job.file_name
    data = path.read_bytes().replace(b"\n--\n-- Table structure", b"\nUSE `mysql`;\n--\n-- Table structure", 1)
    path.write_bytes(data)
    BackupJob.objects.filter(pk=job.pk).update(size_bytes=len(data), checksum_sha256=hashlib.sha256(data).hexdigest())
    mariadb("DELETE FROM orders WHERE id < 100")
    before = fingerprint()

    with pytest.raises(BackupError, match=r"switches to or creates another database \(USE `mysql`;\)"):
        services.restore_backup(backup=job.pk, safety_backup=False)
    assert fingerprint() == before


def test_restore_waits_at_most_the_lock_timeout_then_terminates_when_asked(shop, settings):
    settings.BACKUP_LOCK_TIMEOUT = 1
    job = services.create_backup(database=shop)
    holder = connect()
    holder.cursor().execute("BEGIN")
    holder.cursor().execute("SELECT COUNT(*) FROM product")  # holds a metadata lock until the transaction ends
    mariadb("DELETE FROM orders WHERE id < 10")
    before = fingerprint()
    started = time.monotonic()
    with pytest.raises(BackupError, match="held locks .* --terminate-connections"):
        services.restore_backup(backup=job, safety_backup=False)
    assert time.monotonic() - started < 30
    assert fingerprint() == before

    services.restore_backup(backup=job, safety_backup=False, terminate_sessions=True)
    with pytest.raises(MySQLdb.OperationalError):
        holder.cursor().execute("SELECT 1")  # its session was ended
    assert mariadb("SELECT COUNT(*) FROM orders WHERE id < 10").strip() == "9"


def test_failure_after_the_swap_puts_the_safety_backup_back(shop, monkeypatch):
    """A test double makes the steps after the table swap fail once (no real fault reliably hits that
    sub-second window); the recovery that follows is real."""
    from backups_app.engines import mysql_restore

    job = services.create_backup(database=shop)
    mariadb("DELETE FROM orders WHERE id < 100; CREATE TABLE created_after (id int); DROP TRIGGER customer_email")
    before = fingerprint()
    real_finish = mysql_restore._finish
    calls = []

    def fail_first_time(raw, old, error):
        calls.append(old)
        if len(calls) == 1:
            raise MySQLdb.OperationalError(1205, "Lock wait timeout exceeded; try restarting transaction")
        real_finish(raw, old, error)

    monkeypatch.setattr(mysql_restore, "_finish", fail_first_time)

    with pytest.raises(BackupError, match=r"replacing its views, triggers, routines and events failed \(Lock wait "
                       r"timeout.*\).*put back as it was from safety backup #\d+"):
        services.restore_backup(backup=job)

    assert fingerprint() == before
    restore = Restore.objects.get()
    assert restore.status == RestoreStatus.FAILED and "safety backup" in restore.error
    old = databases_like(connections["mariadb"].settings_dict["NAME"] + "__o")
    assert len(old) == 1 and "`orders`" in mariadb(f"SHOW CREATE TABLE `{old[0]}`.orders")
    # Later operations leave those tables alone (only a person knows whether they are wanted) and do not
    # replay the failed restore's steps over the safety backup's content.
    services.create_backup(database=shop)
    assert fingerprint() == before and databases_like(connections["mariadb"].settings_dict["NAME"] + "__o") == old


def test_restore_killed_while_loading_leaves_database_as_it_was(shop, backup_dir):
    import signal

    from .conftest import manage

    mariadb("INSERT INTO audit_log (message) SELECT REPEAT(CONCAT('filler ', seq), 15) FROM seq_1_to_400000")
    job = services.create_backup(database=shop, compression="none")
    mariadb("DELETE FROM orders WHERE id < 1000; CREATE TABLE created_after (id int)")
    before = fingerprint()
    scratch_prefix = connections["mariadb"].settings_dict["NAME"] + "__r"

    child = manage(backup_dir, "backup_restore", str(job.pk), "--no-input", "--no-safety-backup")
    try:
        deadline = time.monotonic() + 60
        while not (databases_like(scratch_prefix) and "audit_log" in mariadb(
                f"SHOW TABLES FROM `{databases_like(scratch_prefix)[0]}`")):
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)  # in the middle of loading the archive
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()

    assert fingerprint() == before
    # The next operation on the database takes its lock, drops the scratch database and marks the restore failed.
    services.create_backup(database=shop)
    assert databases_like(scratch_prefix) == []
    assert Restore.objects.get().status == RestoreStatus.FAILED


def test_catalog_on_mariadb_survives_a_restore_of_its_own_database(backup_dir):
    """The whole application on MariaDB (DATABASE_URL=mysql://...), run as manage.py child processes."""
    import json
    import sys

    catalog = f"{connections['mariadb'].settings_dict['NAME']}_catalog"
    mariadb(f"DROP DATABASE IF EXISTS `{catalog}`; CREATE DATABASE `{catalog}` CHARACTER SET utf8mb4", database="mysql")
    url = child_env(backup_dir)["TEST_MARIADB_URL"].rsplit("/", 1)[0] + f"/{catalog}"

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args], env={**child_env(backup_dir), "TEST_DATABASE_URL": url},
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    try:
        run("migrate", "--no-input", "--verbosity", "0")
        old = json.loads(run("backup_create", "--json"))["id"]
        # After the backup: a user who did not exist then asks for a backup, and a table appears.
        run("shell", "-c", "from django.contrib.auth.models import User; from backups_app import services; "
                           "services.create_backup(acting_user=User.objects.create_user('late'), description='late')")
        mariadb("CREATE TABLE created_after (id int)", database=catalog)

        run("backup_restore", str(old), "--no-input")

        jobs = mariadb("SELECT id, description, requested_by_id IS NULL, requested_by_name, `trigger` FROM "
                       "backups_app_backupjob ORDER BY id", database=catalog).splitlines()
        assert [line.split("\t")[1:] for line in jobs] == [
            ["", "1", "", "manual"], ["late", "1", "late", "manual"],
            [f"Before restoring backup #{old}", "1", "", "pre_restore_safety"]]
        assert mariadb("SELECT status FROM backups_app_restore", database=catalog).split() == ["completed"]
        assert "created_after" not in mariadb("SHOW TABLES", database=catalog)
        assert mariadb("SELECT COUNT(*) FROM auth_user", database=catalog).strip() == "0"
        # The catalog's key to auth_user points at the restored table again, not at the replaced one.
        assert mariadb(
            "SELECT REFERENCED_TABLE_SCHEMA FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME = 'backups_app_backupjob' AND REFERENCED_TABLE_NAME = 'auth_user'", database=catalog,
        ).split() == [catalog]
        assert databases_like(catalog + "__") == []
        run("backup_verify", str(old))
        assert len(run("backup_list").splitlines()) == 4  # a header and the three backups
    finally:
        for name in [catalog, *databases_like(catalog + "__")]:
            mariadb(f"DROP DATABASE IF EXISTS `{name}`", database="mysql")


def test_admin_confirmation_lists_the_archive_tables_and_the_console_restores(admin_client, shop, worker):
    from .test_admin import restore_post, url, wait_for

    worker()
    before = fingerprint()
    backup = services.create_backup(database=shop)
    mariadb("DELETE FROM orders WHERE id % 2 = 0; CREATE TABLE created_after (id int)")

    page = admin_client.post(url("changelist"), restore_post(backup)).text
    assert "<code>orders</code>" in page and "<code>invoice_numbers</code>" in page and "mysql" in page
    admin_client.post(url("changelist"), restore_post(
        backup, post="yes", database=shop, safety_backup="on", confirm_database=shop))
    restore = Restore.objects.get()
    data = wait_for(admin_client, restores=[restore.pk])

    assert data["restores"][0]["status"] == "completed", data
    assert fingerprint() == before


def test_import_scan_registers_mariadb_archives_that_restore(shop, backup_dir):
    job = services.create_backup(database=shop)
    BackupJob.objects.all().delete()  # the catalog is lost; the archive and its manifest are not
    mariadb("DELETE FROM customer WHERE id > 10")

    imported, problems = services.import_scan()

    assert problems == [] and [(j.engine, j.database, j.file_name) for j in imported] == [("mysql", shop, job.file_name)]
    assert services.verify_backup(backup=imported[0]).ok
    services.restore_backup(backup=imported[0], safety_backup=False)
    assert mariadb("SELECT COUNT(*) FROM customer").strip() == "2000"


def test_monitoring_sees_a_mariadb_database(shop, settings):
    from backups_app.monitoring import check_health

    settings.BACKUP_DATABASES = [shop]
    assert [p.code for p in check_health().databases[shop].problems] == ["never_backed_up"]
    services.create_backup(database=shop)
    assert check_health().databases[shop].problems == []
    params = connections["mariadb"].settings_dict
    port, params["PORT"] = params["PORT"], 1  # nothing listens there
    try:
        assert "cannot_back_up" in [p.code for p in check_health().databases[shop].problems]
    finally:
        params["PORT"] = port


@pytest.fixture
def limited_user(shop):
    """A user with every privilege on the test database and its scratch databases, but not SUPER or SET USER
    (so it cannot create objects for another definer), nor SELECT on mysql.proc."""
    name = connections["mariadb"].settings_dict["NAME"]
    user, password = f"bk_limited_{os.getpid()}", "limited-pw"
    pattern = name.replace("_", "\\_") + "%"
    for host in ("%", "localhost"):
        mariadb(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'; "
                f"GRANT ALL ON `{pattern}`.* TO '{user}'@'{host}'", database="mysql")
    params = connections["mariadb"].settings_dict
    old = (params["USER"], params["PASSWORD"])
    yield lambda: (params.update(USER=user, PASSWORD=password), connections["mariadb"].close())
    params["USER"], params["PASSWORD"] = old
    connections["mariadb"].close()
    for host in ("%", "localhost"):
        mariadb(f"DROP USER '{user}'@'{host}'", database="mysql")


def test_backup_refuses_a_user_who_cannot_read_routines(limited_user, shop):
    limited_user()
    with pytest.raises(BackupError, match=r"cannot read mysql.proc, so mariadb-dump would silently leave out its "
                                          r"stored procedures and functions; grant it SELECT ON mysql.proc"):
        services.create_backup(database=shop)
    assert BackupJob.objects.get().status == BackupStatus.FAILED


def test_restore_as_a_user_who_cannot_set_definers_makes_the_objects_its_own(limited_user, shop, caplog):
    job = services.create_backup(database=shop)  # as root: the archive's objects have DEFINER=root
    before = fingerprint()
    mariadb("DROP VIEW paid_order_count; DROP PROCEDURE mark_paid; DELETE FROM orders")
    limited_user()

    services.restore_backup(backup=job, safety_backup=False)

    user = connections["mariadb"].settings_dict["USER"]
    after = fingerprint()
    assert {key: value for key, value in after.items() if key.startswith(("rows", "schema"))} == {
        key: value for key, value in before.items() if key.startswith(("rows", "schema"))}
    assert mariadb("SELECT DISTINCT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() UNION "
                   "SELECT DISTINCT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() UNION "
                   "SELECT DISTINCT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() UNION "
                   "SELECT DISTINCT DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()"
                   ).split() in ([f"{user}@%"], [f"{user}@localhost"])
    assert "now belong to it (DEFINER=CURRENT_USER)" in caplog.text


@pytest.mark.django_db(databases=[])
def test_mariadb_benchmark_smoke_run_completes_every_step():
    from bench import mariadb as bench

    results = bench.main(["--smoke"])
    assert results["ok"], results["errors"]
    summary = results["scales"][0]["summary"]
    for operation in ("mariadb-dump | zstd", "project backup", "mariadb < dump", "project restore (empty db)",
                      "project restore (over existing)"):
        assert summary[operation]["median_s"] > 0, operation


def test_restore_killed_after_its_swap_is_finished_by_the_next_operation(shop, backup_dir, caplog):
    import signal

    from .conftest import manage

    # Many views make the steps after the swap last long enough to be killed in the middle of them.
    mariadb("".join(f"CREATE VIEW orders_above_{n} AS SELECT id FROM orders WHERE id > {n};" for n in range(600)))
    before = fingerprint()
    job = services.create_backup(database=shop, compression="none")
    mariadb("DELETE FROM orders WHERE id < 1000; CREATE TABLE created_after (id int); DROP VIEW orders_above_599")
    name = connections["mariadb"].settings_dict["NAME"]
    watcher = connect()
    cursor = watcher.cursor()

    child = manage(backup_dir, "backup_restore", str(job.pk), "--no-input", "--no-safety-backup")
    try:
        deadline = time.monotonic() + 120
        while True:  # until the swap has happened: the table made after the backup is gone
            cursor.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                           "AND TABLE_NAME = 'created_after'", [name])
            if cursor.fetchone()[0] == 0:
                break
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    (old,) = databases_like(name + "__o")
    cursor.execute(f"SELECT COUNT(*) FROM `{old}`.backups_restore_journal")
    assert cursor.fetchone()[0] > 0  # killed with steps left: some views are still missing
    watcher.close()

    services.create_backup(database=shop)  # takes the lock, so finishes the restore first

    assert fingerprint() == before
    assert databases_like(name + "__") == []
    assert "Finished the restore of database 'mariadb'" in caplog.text


def test_restore_killed_while_its_swap_waits_is_undone_by_the_next_operation(shop, backup_dir, caplog):
    """Killed after dropping the live views and triggers (which cannot move) while its RENAME TABLE waits for
    another session's lock, which outlasts BACKUP_LOCK_TIMEOUT: the next operation puts them back.
    (Had the lock been released in time, the server would have finished the RENAME without its client,
    and the next operation would have finished the restore instead, from the journal.)"""
    import signal
    import sys

    job = services.create_backup(database=shop)
    mariadb("DELETE FROM orders WHERE id < 1000; CREATE TABLE created_after (id int)")
    before = fingerprint()
    holder = connect()
    holder.cursor().execute("BEGIN")
    holder.cursor().execute("SELECT COUNT(*) FROM product")  # the RENAME waits for this transaction
    watcher = connect()
    cursor = watcher.cursor()
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "backup_restore", str(job.pk), "--no-input", "--no-safety-backup"],
        env={**child_env(backup_dir), "BACKUP_LOCK_TIMEOUT": "3"}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'RENAME TABLE%%' "
                           "AND STATE LIKE 'Waiting for table metadata lock%%'")
            if cursor.fetchone()[0]:
                break
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        # The server runs the RENAME on after its client died, until the lock wait times out.
        while True:
            cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'RENAME TABLE%%'")
            if not cursor.fetchone()[0]:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        holder.close()
    assert mariadb("SHOW TRIGGERS").strip() == ""  # dropped for the swap that never came

    services.create_backup(database=shop)

    assert fingerprint() == before
    assert databases_like(connections["mariadb"].settings_dict["NAME"] + "__") == []
    assert "Put back the views and triggers of database 'mariadb'" in caplog.text
    watcher.close()


@pytest.mark.django_db(transaction=True, databases=["default", "mariadb", "mariadb_copy"])
def test_restore_into_another_database_of_another_name(shop):
    """The archive names no database (a sequence default, which does, is rewritten on the way in)."""
    source, copy = (connections[alias].settings_dict["NAME"] for alias in ("mariadb", "mariadb_copy"))
    job = services.create_backup(database=shop)

    services.restore_backup(backup=job, database="mariadb_copy", safety_backup=False)

    def without_name(fingerprint: dict, name: str) -> dict:
        return {key: repr(value).replace(name, "<db>") for key, value in fingerprint.items()}

    assert without_name(fingerprint(copy), copy) == without_name(fingerprint(source), source)
    assert f"nextval(`{copy}`.`invoice_numbers`)" in mariadb("SHOW CREATE TABLE orders", database=copy)
    mariadb("INSERT INTO orders (customer_id) VALUES (1)", database=copy)  # the default works there
    for leftover in databases_like(copy + "__"):
        mariadb(f"DROP DATABASE `{leftover}`", database="mysql")


def test_backup_warns_about_tables_outside_the_snapshot(shop, caplog):
    job = services.create_backup(database=shop)
    warning = ("has tables that the consistent snapshot does not cover (only InnoDB tables are dumped as of one "
               "instant): search_words (MyISAM)")
    assert warning in caplog.text
    assert warning in BackupJob.objects.get(pk=job.pk).warning  # on the job, where its page and backup_show say it


# Restore drills ----------------------------------------------------------------------------

AWKWARD = [
    "a),(b", "it's", "it''s", "back\\slash\\", "\\'),('", "'", "\\", "(", ")", ";", "),(", "'),(';",
    "line\nbreak\r\ttab\0nul", "😀 emoji 🍕 ümlaut", "", None, "x" * 70000 + "'),(", "INSERT INTO `awkward` VALUES (1);",
]


def drill_scratch_databases() -> list[str]:
    from backups_app.services.drills import SCRATCH_PREFIX, installation_tag

    return databases_like(f"{SCRATCH_PREFIX}{installation_tag()}_")


def table_counts(database: str | None = None) -> dict[str, int]:
    """Every table's and sequence's rows, counted in the database itself."""
    raw = connect(database)
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                       "AND TABLE_TYPE <> 'VIEW'")
        counts = {}
        for (name,) in cursor.fetchall():
            cursor.execute("SELECT COUNT(*) FROM `%s`" % name.replace("`", "``"))
            counts[name] = cursor.fetchone()[0]
        return counts
    finally:
        raw.close()


@pytest.fixture
def awkward_shop(shop):
    """The shop, with tables whose strings hold what a naive count of the dump's value tuples trips over."""
    raw = connect()
    try:
        cursor = raw.cursor()
        cursor.execute("CREATE TABLE awkward (id int PRIMARY KEY, s longtext, b blob, v varbinary(300))")
        cursor.executemany("INSERT INTO awkward VALUES (%s, %s, %s, %s)", [
            (index, text, bytes(range(256)) if index % 2 else None, b"'),(\\\x00" if index % 3 else None)
            for index, text in enumerate(AWKWARD)
        ])
        cursor.execute("CREATE TABLE `odd ``name),(` (id int)")
        cursor.execute("INSERT INTO `odd ``name),(` VALUES (1), (2), (3)")
        cursor.execute("CREATE TABLE empty_table (id int)")
    finally:
        raw.close()
    return shop


def test_a_mariadb_drill_passes_with_every_tables_exact_count(awkward_shop):
    expected = table_counts()
    backup = services.create_backup(database=awkward_shop)

    drill = services.drill_backup(backup=backup)

    assert drill.status == DrillStatus.PASSED, drill.error
    assert {table: counts["archive"] for table, counts in drill.tables.items()} == expected
    assert {table: counts["restored"] for table, counts in drill.tables.items()} == expected
    assert expected["awkward"] == len(AWKWARD) and expected["odd `name),("] == 3 and expected["customer"] == 2000
    assert expected["empty_table"] == 0 and expected["invoice_numbers"] == 1  # a sequence is its one row
    assert drill_scratch_databases() == []
    backup.refresh_from_db()
    assert backup.drill_result == DrillStatus.PASSED


def test_a_mariadb_drill_restores_on_the_server_of_backup_drill_database_url(shop, settings):
    params = connections[shop].settings_dict
    settings.BACKUP_DRILL_DATABASE_URL = f"mysql://{params['USER']}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 3306}/mysql"
    backup = services.create_backup(database=shop)
    drill = services.drill_backup(backup=backup)
    assert drill.status == DrillStatus.PASSED, drill.error
    assert drill.tables["orders"] == {"archive": 5000, "restored": 5000}
    assert drill_scratch_databases() == []

    settings.BACKUP_DRILL_DATABASE_URL = "mysql://drills:pw-secret@127.0.0.1:1/mysql"  # nothing listens there
    drill = services.drill_backup(backup=backup)
    assert drill.status == DrillStatus.FAILED and "Cannot connect" in drill.error and "pw-secret" not in drill.error


def test_archive_row_counts_reads_the_dump_chunk_by_chunk(awkward_shop, backup_dir, monkeypatch):
    """Strings and escapes split across chunks of any size are counted the same."""
    from backups_app.engines import mysql

    backup = services.create_backup(database=awkward_shop, compression="none")
    path = str(backup_dir / backup.file_name)
    whole = mysql.MySQLEngine.archive_row_counts(path)
    assert whole == {table: count for table, count in table_counts().items() if count}  # empty ones have no INSERT
    for size in (1, 7, 4093):
        monkeypatch.setattr(mysql, "CHUNK_SIZE", size)
        assert mysql.MySQLEngine.archive_row_counts(path) == whole
    data = (backup_dir / backup.file_name).read_bytes()
    cut = backup_dir / "cut.sql"
    cut.write_bytes(data[: data.index(b"),(", data.index(b"INSERT INTO `awkward`")) + 1])
    with pytest.raises(BackupError, match="ends inside the data of table awkward: it is truncated"):
        mysql.MySQLEngine.archive_row_counts(str(cut))


def test_a_mariadb_drill_of_a_damaged_archive_fails_with_the_reason_and_leaves_no_scratch_database(shop, backup_dir):
    """The archive is cut at a statement boundary (the client would exit 0), its checksum made to match."""
    backup = services.create_backup(database=shop, compression="none")
    path = backup_dir / backup.file_name
    data = path.read_bytes()
    cut = data[: data.index(b"INSERT INTO `product`")]
    path.write_bytes(cut)
    BackupJob.objects.filter(pk=backup.pk).update(size_bytes=len(cut), checksum_sha256=hashlib.sha256(cut).hexdigest())

    drill = services.drill_backup(backup=backup.pk)

    assert drill.status == DrillStatus.FAILED
    assert "did not restore into a scratch database" in drill.error and "it is truncated" in drill.error
    assert drill.scratch_name.startswith("backups_drill_")
    assert drill_scratch_databases() == []


def test_restore_into_new_refuses_an_existing_database_and_drops_only_its_own(shop, backup_dir):
    from backups_app.engines import get_engine

    backup = services.create_backup(database=shop, compression="none")
    engine = get_engine(shop)
    name = f"{connections[shop].settings_dict['NAME']}_into"
    mariadb(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`; CREATE TABLE `{name}`.keep_me (id int)",
            database="mysql")
    try:
        with pytest.raises(BackupError, match="already exists"):
            engine.restore_into_new(str(backup_dir / backup.file_name), name)
        assert mariadb(f"SHOW TABLES FROM `{name}`", database="mysql").split() == ["keep_me"]
    finally:
        mariadb(f"DROP DATABASE IF EXISTS `{name}`", database="mysql")
    with pytest.raises(BackupError, match="is configured as 'mariadb'; it is not dropped"):
        engine.on_database(engine.database_name).drop_database()


def test_restore_into_a_new_mariadb_database_copies_the_content(shop):
    source = connections[shop].settings_dict["NAME"]
    name = f"{source}_new_{os.getpid()}"
    backup = services.create_backup(database=shop)
    mariadb(f"DROP DATABASE IF EXISTS `{name}`", database="mysql")
    try:
        restore = services.restore_backup(backup=backup, into=name)
        copy = fingerprint(name)
    finally:
        mariadb(f"DROP DATABASE IF EXISTS `{name}`", database="mysql")
    assert restore.status == RestoreStatus.COMPLETED, restore.error
    assert {key: repr(value).replace(name, "<db>") for key, value in copy.items() if not key.startswith("event")} == {
        key: repr(value).replace(source, "<db>") for key, value in fingerprint().items() if not key.startswith("event")}
    events = [value[0] for key, value in copy.items() if key.startswith("event")]
    assert events and set(events) == {"DISABLED"}  # a copy for inspection runs none of the events


def test_cleanup_drops_the_mariadb_scratch_databases_that_killed_drills_left(shop):
    from backups_app.services.drills import SCRATCH_PREFIX, installation_tag

    ours = f"{SCRATCH_PREFIX}{installation_tag()}_998_abcdef"
    theirs = f"{SCRATCH_PREFIX}00000000_998_{os.getpid()}"  # another installation sharing the server
    for name in (ours, theirs):
        mariadb(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`", database="mysql")
    try:
        services.cleanup_backups()
        remaining = [name for name in (ours, theirs) if name in databases_like(SCRATCH_PREFIX)]
    finally:
        for name in (ours, theirs):
            mariadb(f"DROP DATABASE IF EXISTS `{name}`", database="mysql")
    assert remaining == [theirs]
