"""Restore a backup into a new database (`--into`, `--table`) and the engine primitive under it."""

import os

import pytest
from django.db import connections

from backups_app import services
from backups_app.engines import get_engine
from backups_app.errors import BackupError
from backups_app.services.restore_swap import archive_file

from .conftest import fingerprint, psql, rows

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target", "sqlite"])


def new_name(label: str) -> str:
    return f"backups_{label}_{os.getpid()}"


@pytest.fixture
def dropped():
    """Names of databases a test creates: each is dropped after it."""
    names = []
    yield names
    for name in names:
        psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fingerprint_of(name: str) -> dict:
    """fingerprint() of database `name` on the target's server (through a short-lived test alias)."""
    alias = f"check_{name}"
    connections.settings[alias] = {**connections["target"].settings_dict, "NAME": name}
    try:
        return fingerprint(alias)
    finally:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


def test_restore_into_new_database_is_identical_and_leaves_the_live_one_alone(pagila, dropped):
    job = services.create_backup(database=pagila)
    before = fingerprint(pagila)
    psql(pagila, "DELETE FROM payment WHERE payment_id < 20000")
    changed = fingerprint(pagila)
    name = new_name("into")
    dropped.append(name)
    with archive_file(job) as path:
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        new = get_engine(pagila).restore_into_new(path, name, jobs=2)
    assert fingerprint_of(name) == before
    assert fingerprint(pagila) == changed
    with new.connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM actor")
        assert cursor.fetchone()[0] == 200
    new.drop_database()
    assert rows("postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == ["0"]


def test_existing_name_is_refused_and_untouched(pagila):
    job = services.create_backup(database=pagila)
    before = fingerprint(pagila)
    with archive_file(job) as path, pytest.raises(BackupError, match="already exists"):
        get_engine(pagila).restore_into_new(path, connections[pagila].settings_dict["NAME"])
    assert fingerprint(pagila) == before


def test_failed_restore_into_leaves_no_database_behind(pagila, tmp_path, dropped):
    job = services.create_backup(database=pagila)
    name = new_name("broken")
    dropped.append(name)
    with archive_file(job) as path:
        data = open(path, "rb").read()
        damaged = tmp_path / "damaged"
        damaged.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BackupError):
        get_engine(pagila).restore_into_new(str(damaged), name, jobs=2)
    assert rows("postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == ["0"]


def test_table_restores_only_those_tables_with_their_indexes(pagila, dropped):
    job = services.create_backup(database=pagila)
    name = new_name("tables")
    dropped.append(name)
    with archive_file(job) as path:
        new = get_engine(pagila).restore_into_new(path, name, tables=["public.actor", "public.film_actor"])
    new.connection.close()
    assert rows(name, "SELECT count(*) FROM actor") == ["200"]
    assert rows(name, "SELECT count(*) FROM film_actor") == rows(pagila, "SELECT count(*) FROM film_actor")
    tables = rows(name, "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace "
                        "WHERE nspname = 'public' AND relkind IN ('r', 'p') ORDER BY 1")
    assert tables == ["actor", "film_actor"]
    indexes = rows(name, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
    assert indexes == ["actor_pkey", "film_actor_pkey", "idx_actor_last_name", "idx_fk_film_id"]


def test_sqlite_into_a_new_file(tmp_path):
    psql_free = get_engine("sqlite")
    sqlite_path = psql_free.path
    import sqlite3
    with sqlite3.connect(sqlite_path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS notes (id integer primary key, body text)")
        db.execute("INSERT INTO notes (body) VALUES ('kept')")
    job = services.create_backup(database="sqlite")
    target = tmp_path / "copy.sqlite3"
    with archive_file(job) as path:
        new = psql_free.restore_into_new(path, str(target))
        with pytest.raises(BackupError, match="already exists"):
            psql_free.restore_into_new(path, str(target))
    with new.connection.cursor() as cursor:
        cursor.execute("SELECT body FROM notes ORDER BY id DESC LIMIT 1")
        assert cursor.fetchone()[0] == "kept"
    new.drop_database()
    assert not target.exists()
