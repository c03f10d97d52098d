"""Restore by swap (PostgreSQL): load a new database while the live one answers, swap, undo, cleanup."""

import os
import signal
import threading
import time
from io import StringIO

import psycopg2
import pytest
from django.core.management import call_command
from django.test import Client
from django.db import connections

from backups_app import services
from backups_app.errors import BackupError
from backups_app.models import BackupJob, Restore, RestorePhase, RestoreStatus
from backups_app.monitoring import check_health

from .conftest import fingerprint, psql, rows, wait_for
from .test_postgresql import children

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target"])


@pytest.fixture(autouse=True)
def swap(settings):
    settings.BACKUP_RESTORE_STRATEGY = "swap"


def databases_like(suffix: str) -> list[str]:
    name = connections["target"].settings_dict["NAME"]
    return rows("postgres", f"SELECT datname FROM pg_database WHERE datname LIKE '{name}\\_\\_{suffix}%' ORDER BY 1")


def allows_connections(name: str) -> str:
    return rows("postgres", f"SELECT datallowconn FROM pg_database WHERE datname = '{name}'")[0]


def test_swap_restores_identical_content_and_undo_brings_back_the_state_before(pagila):
    before = fingerprint(pagila)
    job = services.create_backup(database=pagila)
    psql(pagila, "UPDATE film SET title = lower(title) WHERE film_id < 50; DELETE FROM payment WHERE payment_id < 18000; "
                 "SELECT lo_unlink(424242); CREATE TABLE made_after (id int); INSERT INTO made_after VALUES (1)")
    changed = fingerprint(pagila)

    restore = services.restore_backup(backup=job, safety_backup=False)

    assert restore.status == RestoreStatus.COMPLETED
    assert (restore.strategy, restore.strategy_reason) == ("swap", "swap: BACKUP_RESTORE_STRATEGY; the role is a superuser")
    assert fingerprint(pagila) == before
    assert databases_like("before_restore") == [restore.kept_database]
    assert allows_connections(restore.kept_database) == "f"  # nobody works in the old one by mistake
    assert databases_like("restoring") == []

    undone = services.undo_restore(restore=restore.pk)

    assert undone.undone_at is not None
    assert fingerprint(pagila) == changed
    assert databases_like("") == []  # the restored database is dropped, the kept one is live again
    with pytest.raises(BackupError, match="undone already"):
        services.undo_restore(restore=restore.pk)


def test_auto_chooses_swap_for_a_superuser_and_says_why(pagila, settings):
    settings.BACKUP_RESTORE_STRATEGY = "auto"
    job = services.create_backup(database=pagila)
    restore = services.restore_backup(backup=job, safety_backup=False)
    assert (restore.strategy, restore.strategy_reason) == ("swap", "auto: the role is a superuser")


def test_failed_load_leaves_the_live_database_untouched_and_no_new_database(pagila):
    gone = f"swap_gone_{os.getpid()}"
    psql(pagila, f"CREATE ROLE {gone}; CREATE TABLE owned_by_gone (id int); ALTER TABLE owned_by_gone OWNER TO {gone}")
    job = services.create_backup(database=pagila)
    psql(pagila, f"DROP TABLE owned_by_gone; DROP ROLE {gone}; UPDATE film SET title = 'changed' WHERE film_id = 1")
    before = fingerprint(pagila)

    with pytest.raises(BackupError, match=f'rolled back.*live database is unchanged: role "{gone}" does not exist'):
        services.restore_backup(backup=job, safety_backup=False)

    assert fingerprint(pagila) == before
    assert databases_like("") == []
    assert allows_connections(connections[pagila].settings_dict["NAME"]) == "t"
    assert Restore.objects.get().kept_database == ""


def test_pg_restore_killed_during_the_load_leaves_the_live_database_untouched(pagila):
    job = services.create_backup(database=pagila)
    psql(pagila, "UPDATE film SET title = lower(title) WHERE film_id < 50")
    before = fingerprint(pagila)

    def kill_pg_restore():
        wait_for(lambda: Restore.objects.filter(phase=RestorePhase.LOADING).exists())
        os.kill(wait_for(lambda: children(os.getpid(), "pg_restore"))[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_pg_restore)
    killer.start()
    try:
        with pytest.raises(BackupError, match="killed by signal 9|could not read"):
            services.restore_backup(backup=job, safety_backup=False)
    finally:
        killer.join()
    assert fingerprint(pagila) == before
    assert databases_like("") == []


def test_catalog_rows_made_during_a_swap_restore_of_its_own_database_survive(django_user_model):
    user = django_user_model.objects.create_user("operator")
    old = services.create_backup(database="default", acting_user=user)
    catalog = connections["default"].settings_dict["NAME"]

    def record_a_backup_while_it_loads():
        try:
            wait_for(lambda: rows(catalog, "SELECT count(*) FROM backups_app_restore WHERE phase = 'loading'") == ["1"])
            # Through this thread's own connection to the catalog, as another process of the application would.
            BackupJob.objects.create(database="elsewhere", engine="postgresql", status="failed", compression="zstd",
                                     description="made during the restore", error="x")
        finally:
            connections.close_all()

    writer = threading.Thread(target=record_a_backup_while_it_loads)
    writer.start()
    try:
        restore = services.restore_backup(backup=old, acting_user=user, safety_backup=False)
    finally:
        writer.join()

    assert restore.strategy == "swap"
    assert BackupJob.objects.filter(description="made during the restore").exists()
    restore = Restore.objects.get(pk=restore.pk)
    assert (restore.status, restore.requested_by_name) == (RestoreStatus.COMPLETED, "operator")
    # New rows still get fresh ids: the copied catalog's sequence was set past its rows.
    newest = max(BackupJob.objects.values_list("pk", flat=True))
    assert services.create_backup(database="default").pk > newest


def test_a_client_keeps_getting_answers_while_the_new_database_loads(pagila):
    """A client reading every 0.05 s, reconnecting when its session is ended: it gets answers while the
    archive loads (the live database is not locked), and reads the restored content after the swap."""
    job = services.create_backup(database=pagila)
    psql(pagila, "DELETE FROM film_actor WHERE actor_id = 1; UPDATE actor SET first_name = 'CHANGED' WHERE actor_id = 1")
    params = connections[pagila].settings_dict
    answers: list[tuple[str, str | None]] = []  # (the restore's phase when asked, the answer or None)
    stop = threading.Event()

    def client():
        connection = None
        while not stop.is_set():
            phase = rows("default", "SELECT phase FROM backups_app_restore")
            try:
                if connection is None:
                    connection = psycopg2.connect(host=params["HOST"], port=params["PORT"] or 5432,
                                                  user=params["USER"], dbname=params["NAME"])
                    connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute("SELECT first_name FROM actor WHERE actor_id = 1")
                    answers.append((phase[0] if phase else "", cursor.fetchone()[0]))
            except psycopg2.Error:
                answers.append((phase[0] if phase else "", None))
                connection = None
            time.sleep(0.05)
        if connection is not None:
            connection.close()

    reader = threading.Thread(target=client)
    reader.start()
    try:
        services.restore_backup(backup=job, safety_backup=False)
        wait_for(lambda: answers and answers[-1][1] == "PENELOPE")
    finally:
        stop.set()
        reader.join()
    assert ("loading", "CHANGED") in answers  # answered while the archive loaded


def test_cleanup_drops_expired_kept_databases_and_undo_is_then_refused(pagila, settings):
    job = services.create_backup(database=pagila)
    restore = services.restore_backup(backup=job, safety_backup=False)
    size = services.kept_databases_size()
    assert size > 1_000_000  # pagila's
    settings.BACKUP_METRICS_TOKEN = "swap-metrics-token"
    metrics = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer swap-metrics-token").content.decode()
    assert f'django_backups_kept_replaced_databases{{database="{pagila}"}} 1.0' in metrics
    assert services.backup_stats()["kept_databases_size"] == size
    assert check_health().to_dict()["kept_databases_bytes"] == size
    assert services.plan_cleanup().replaced == []  # younger than BACKUP_KEEP_REPLACED_HOURS
    settings.BACKUP_KEEP_REPLACED_HOURS = 0

    plan = services.plan_cleanup()
    assert [r.kept_database for r in plan.replaced] == [restore.kept_database]
    done = services.cleanup_backups(previewed=plan.signature)

    assert [r.pk for r in done.replaced] == [restore.pk]
    assert databases_like("") == []
    assert services.kept_databases_size() == 0
    with pytest.raises(BackupError, match="dropped by cleanup"):
        services.undo_restore(restore=restore.pk)


def test_command_restores_by_swap_then_undoes(pagila):
    job = services.create_backup(database=pagila)
    psql(pagila, "UPDATE actor SET first_name = 'CHANGED' WHERE actor_id = 1")
    out = StringIO()
    call_command("backup_restore", str(job.pk), "--no-input", "--no-safety-backup", "--jobs", "2", stdout=out)
    restore = Restore.objects.get()
    assert f"backup_restore --undo {restore.pk}" in out.getvalue()
    assert rows(pagila, "SELECT first_name FROM actor WHERE actor_id = 1") == ["PENELOPE"]

    call_command("backup_restore", "--undo", str(restore.pk), "--no-input", stdout=out)

    assert rows(pagila, "SELECT first_name FROM actor WHERE actor_id = 1") == ["CHANGED"]


def test_command_into_with_tables_makes_only_those_and_refuses_an_existing_name(pagila):
    job = services.create_backup(database=pagila)
    before = fingerprint(pagila)
    name = f"{connections[pagila].settings_dict['NAME']}__into"
    call_command("backup_restore", str(job.pk), "--no-input", "--into", name, "--table", "public.actor",
                 "--table", "public.film_actor", stdout=StringIO())
    assert rows(name, "SELECT count(*) FROM actor") == ["200"]
    assert rows(name, "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c JOIN pg_namespace n "
                      "ON n.oid = relnamespace WHERE nspname = 'public' AND relkind = 'r'") == ["actor,film_actor"]
    restore = Restore.objects.get()
    assert (restore.strategy, restore.into, restore.tables) == ("into", name, "public.actor,public.film_actor")
    assert restore.safety_backup is None
    assert fingerprint(pagila) == before

    with pytest.raises(Exception, match="already exists"):
        call_command("backup_restore", str(job.pk), "--no-input", "--into", name, stdout=StringIO())
    assert rows(name, "SELECT count(*) FROM actor") == ["200"]


def test_admin_undo_asks_first_then_swaps_back_and_logs_it(pagila, admin_client):
    from django.contrib.admin.models import LogEntry

    from .conftest import url

    job = services.create_backup(database=pagila)
    psql(pagila, "UPDATE actor SET first_name = 'CHANGED' WHERE actor_id = 1")
    restore = services.restore_backup(backup=job, safety_backup=False)
    status_page = admin_client.get(url("restore_status", restore.pk)).text
    assert url("undo_restore", restore.pk) in status_page
    assert restore.kept_database in status_page and "kept for an undo" in status_page

    confirmation = admin_client.get(url("undo_restore", restore.pk))
    assert "Yes, undo it" in confirmation.text
    assert rows(pagila, "SELECT first_name FROM actor WHERE actor_id = 1") == ["PENELOPE"]  # a GET changes nothing

    response = admin_client.post(url("undo_restore", restore.pk), {"post": "yes"})

    assert response.status_code == 302 and response["Location"] == url("restore_status", restore.pk)
    assert rows(pagila, "SELECT first_name FROM actor WHERE actor_id = 1") == ["CHANGED"]
    assert Restore.objects.get().undone_at is not None
    assert LogEntry.objects.filter(change_message__startswith=f"Undid restore #{restore.pk}").count() == 1
    assert url("undo_restore", restore.pk) not in admin_client.get(url("restore_status", restore.pk)).text


def test_admin_undo_needs_the_restore_permission(pagila, client, django_user_model):
    job = services.create_backup(database=pagila)
    restore = services.restore_backup(backup=job, safety_backup=False)
    staff = django_user_model.objects.create_user("viewer", is_staff=True)
    client.force_login(staff)
    from .conftest import url

    assert client.post(url("undo_restore", restore.pk), {"post": "yes"}).status_code == 403
    assert Restore.objects.get().undone_at is None


def test_auto_restores_in_place_when_the_role_may_not_create_databases(pagila, settings):
    from backups_app.engines import get_engine
    from backups_app.services.restore_swap import choose_strategy

    settings.BACKUP_RESTORE_STRATEGY = "auto"
    role = f"swap_no_createdb_{os.getpid()}"
    psql("postgres", f"CREATE ROLE {role} LOGIN")
    engine = get_engine(pagila)
    as_role = type(engine)(pagila, connection=type(engine.connection)(
        {**engine.connection.settings_dict, "USER": role}, alias=pagila))
    try:
        assert choose_strategy(as_role, "") == ("in-place", "auto: no swap, the role may not create databases (CREATEDB)")
        with pytest.raises(BackupError, match="cannot be restored by swap: the role may not create databases"):
            choose_strategy(as_role, "swap")
        assert choose_strategy(engine, "") == ("swap", "auto: the role is a superuser")
    finally:
        as_role.connection.close()
        psql("postgres", f"DROP ROLE {role}")


def test_swap_is_refused_for_sqlite_only_when_asked_for(settings):
    from backups_app.engines import get_engine
    from backups_app.services.restore_swap import choose_strategy

    settings.BACKUP_RESTORE_STRATEGY = "swap"
    assert choose_strategy(get_engine("sqlite"), "") == ("in-place", "the sqlite engine restores in place")
    with pytest.raises(BackupError, match="Restore by swap is for PostgreSQL"):
        choose_strategy(get_engine("sqlite"), "swap")


def test_swap_tools_get_the_password_in_their_environment_only(pagila, monkeypatch):
    """Every pg_restore and psql a swap starts (read from /proc while it runs): the password never in argv,
    in the environment of those that connect, and no application secret there."""
    monkeypatch.setenv("DJANGO_SECRET_KEY", "django-secret-key-for-swap-tools-test")
    secret = "S3cret-swap-never-in-argv"
    job = services.create_backup(database=pagila)
    params = connections[pagila].settings_dict
    params["PASSWORD"] = secret  # trust authentication ignores it; the tools still receive it
    seen, stop = {}, threading.Event()

    def watch():
        while not stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                    environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
                    parent = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if parent == os.getpid() and os.path.basename(cmdline[0]) in (b"pg_restore", b"psql"):
                    seen[pid] = (b" ".join(cmdline).decode(), b"\0".join(environ).decode())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        services.restore_backup(backup=job, safety_backup=False)
    finally:
        stop.set()
        watcher.join()
        params["PASSWORD"] = ""
    connecting = [(cmdline, environ) for cmdline, environ in seen.values() if "--dbname=" in cmdline]
    assert connecting  # the loads into the new database
    assert all(secret not in cmdline for cmdline, _environ in seen.values())
    assert all(f"PGPASSWORD={secret}" in environ.split("\0") for _cmdline, environ in connecting)
    assert all("django-secret-key" not in environ for _cmdline, environ in seen.values())
