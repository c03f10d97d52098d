"""What a PostgreSQL restore does beyond tables: owners' rights, database-level objects, database properties."""

import pytest
from django.db import connections

from backups_app import services
from backups_app.engines import postgresql_database
from backups_app.errors import BackupError
from backups_app.models import RestoreStatus

from .conftest import drop_swap_leftovers, psql, rows

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target"])


@pytest.fixture(autouse=True, params=["in-place", "swap"])
def strategy(request, settings):
    """Every test here runs with both restore strategies: the database-level objects and properties must
    come back the same whether the content is replaced in place or a new database is swapped in."""
    settings.BACKUP_RESTORE_STRATEGY = request.param
    return request.param

# Roles are cluster-wide: named after this branch (pg-restore-objects), so that parallel suites do not collide.
LOW = "restore_objects_low"  # "pg_" is reserved


def _fresh_database(alias: str) -> str:
    connections[alias].close()
    name = connections[alias].settings_dict["NAME"]
    psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql("postgres", f"CREATE DATABASE {name}")
    return name


@pytest.fixture
def target():
    """An empty `target` database; return its name."""
    name = _fresh_database("target")
    yield name
    # A database with subscriptions cannot be dropped (by the next test's fixture); an event trigger
    # on sql_drop would fire at DROP SUBSCRIPTION.
    psql(name, postgresql_database.drop_event_triggers() + postgresql_database.drop_database_objects())


def _backup_that_fails_to_restore(target: str):
    """Back up `target` with a table whose owning role is then dropped: restoring it fails part-way."""
    gone = "restore_objects_gone"
    psql(target, f"DROP ROLE IF EXISTS {gone}; CREATE ROLE {gone}; "
                 f"CREATE TABLE owned_by_gone (id int); ALTER TABLE owned_by_gone OWNER TO {gone}")
    job = services.create_backup(database="target")
    psql(target, f"DROP TABLE owned_by_gone; DROP ROLE {gone}")
    return job


@pytest.fixture
def low_role(target):
    psql("postgres", f"DROP ROLE IF EXISTS {LOW}")
    psql("postgres", f"CREATE ROLE {LOW} NOLOGIN")
    yield LOW
    drop_swap_leftovers()  # a database kept by a swap holds objects of the role too
    psql(target, f"DROP OWNED BY {LOW}")  # its objects and grants, here the only database it has any
    psql("postgres", f"DROP ROLE {LOW}")


def test_restore_runs_an_owners_functions_with_the_owners_rights(target, low_role):
    """A low-privilege role's CHECK constraints call its function, which tries to make the role a
    superuser (and swallows the refusal, as it would at every insert). Restored by a superuser, the
    rows are loaded as the tables' owner, so the attempt is refused: the role stays what it was and
    the rows, owner and constraints come back. (Without the swallowing the restore would fail and
    roll back, the database unchanged.) One table is in the role's own schema, the other in public,
    where only a grant lets the role create tables; an aggregate's initial value runs the function
    through a domain's CHECK when the aggregate is made, before the data."""
    psql(target, f"""
        GRANT CREATE ON DATABASE {target} TO {LOW};
        SET ROLE {LOW};
        CREATE SCHEMA low;
        CREATE FUNCTION low.escalate(id int) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE 'ALTER ROLE {LOW} SUPERUSER';
            RETURN true;
        EXCEPTION WHEN insufficient_privilege THEN
            RETURN true;
        END $$;
        CREATE TABLE low.accounts (id int PRIMARY KEY CHECK (low.escalate(id)));
        INSERT INTO low.accounts SELECT generate_series(1, 3);
        -- CREATE AGGREGATE checks its INITCOND against the domain, before any data.
        CREATE DOMAIN low.checked AS int CHECK (low.escalate(VALUE));
        CREATE FUNCTION low.add(low.checked, int) RETURNS low.checked LANGUAGE sql AS 'SELECT $1 + $2';
        CREATE AGGREGATE low.total(int) (SFUNC = low.add, STYPE = low.checked, INITCOND = '0');
        RESET ROLE;
        GRANT CREATE ON SCHEMA public TO {LOW};
        SET ROLE {LOW};
        CREATE TABLE public.notes (id int PRIMARY KEY CHECK (low.escalate(id)));
        INSERT INTO public.notes VALUES (7);
    """)
    job = services.create_backup(database="target")
    psql(target, "DELETE FROM low.accounts WHERE id = 2; DELETE FROM public.notes")

    restore = services.restore_backup(backup=job, safety_backup=False)

    assert restore.status == RestoreStatus.COMPLETED
    assert rows("postgres", f"SELECT rolsuper FROM pg_roles WHERE rolname = '{LOW}'") == ["f"]
    assert rows(target, "SELECT id FROM low.accounts ORDER BY id") == ["1", "2", "3"]
    assert rows(target, "SELECT id FROM public.notes") == ["7"]
    assert rows(target, "SELECT low.total(id) FROM low.accounts") == ["6"]
    assert rows(target, "SELECT tableowner FROM pg_tables WHERE tablename IN ('accounts', 'notes')") == [LOW, LOW]


DATABASE_OBJECTS = """
    SELECT 'publication ' || pubname FROM pg_publication
    UNION ALL SELECT 'publication table ' || pubname || ' ' || tablename FROM pg_publication_tables
    UNION ALL SELECT 'subscription ' || subname || ' enabled=' || subenabled FROM pg_subscription
        WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL SELECT 'event trigger ' || evtname || ' ' || evtevent FROM pg_event_trigger
    UNION ALL SELECT 'fdw ' || fdwname FROM pg_foreign_data_wrapper
    UNION ALL SELECT 'server ' || srvname FROM pg_foreign_server
    UNION ALL SELECT 'user mapping ' || srvname || ' ' || usename FROM pg_user_mappings
    UNION ALL SELECT 'language ' || lanname FROM pg_language WHERE oid >= 16384
    UNION ALL SELECT 'cast ' || castsource::regtype || ' ' || casttarget::regtype FROM pg_cast WHERE oid >= 16384
    UNION ALL SELECT 'transform ' || trftype::regtype || ' ' || trflang FROM pg_transform
    UNION ALL SELECT 'access method ' || amname || ' ' || amtype::text FROM pg_am WHERE oid >= 16384
    UNION ALL SELECT 'extension ' || extname || ' ' || extnamespace::regnamespace FROM pg_extension
    ORDER BY 1
"""


def test_database_level_objects_are_restored_and_later_ones_dropped(target):
    """Every kind of object that lives outside the schemas and that pg_dump writes: the restore over
    the database itself recreates the backup's (a publication alone used to make it fail with
    "already exists", the event trigger refusing drops with its exception), and those created after
    the backup are gone."""
    psql(target, """
        CREATE TABLE items (id int PRIMARY KEY);
        INSERT INTO items SELECT generate_series(1, 10);
        CREATE PUBLICATION pub_kept FOR TABLE items;
        CREATE SUBSCRIPTION sub_kept CONNECTION 'host=127.0.0.1 dbname=nowhere' PUBLICATION pub_kept
            WITH (connect = false);
        CREATE FUNCTION public.refuse_drops() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'drops are refused here'; END $$;
        CREATE EVENT TRIGGER refuse_drops ON sql_drop EXECUTE FUNCTION public.refuse_drops();
        CREATE FOREIGN DATA WRAPPER fdw_kept;
        CREATE SERVER server_kept FOREIGN DATA WRAPPER fdw_kept;
        CREATE USER MAPPING FOR PUBLIC SERVER server_kept OPTIONS (user 'kept');
        CREATE EXTENSION postgres_fdw;
        CREATE SERVER remote_kept FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'nowhere');
        CREATE EXTENSION file_fdw SCHEMA pg_catalog;
        CREATE FUNCTION public.kept_handler() RETURNS language_handler LANGUAGE c
            AS '$libdir/plpgsql', 'plpgsql_call_handler';
        CREATE LANGUAGE lang_kept HANDLER public.kept_handler;
        CREATE CAST (text AS integer) WITH INOUT;
        CREATE TRANSFORM FOR integer LANGUAGE plpgsql (
            FROM SQL WITH FUNCTION varchar_support(internal), TO SQL WITH FUNCTION int4recv(internal));
        CREATE ACCESS METHOD table_am_kept TYPE TABLE HANDLER heap_tableam_handler;
        CREATE ACCESS METHOD index_am_kept TYPE INDEX HANDLER bthandler;
    """)
    at_backup = rows(target, DATABASE_OBJECTS)
    job = services.create_backup(database="target")
    psql(target, """
        DROP EVENT TRIGGER refuse_drops;
        CREATE PUBLICATION pub_after FOR ALL TABLES;
        CREATE SUBSCRIPTION sub_after CONNECTION 'host=127.0.0.1 dbname=nowhere' PUBLICATION pub_after
            WITH (connect = false);
        CREATE FUNCTION public.note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
        CREATE EVENT TRIGGER note_ddl ON ddl_command_end EXECUTE FUNCTION public.note_ddl();
        CREATE FOREIGN DATA WRAPPER fdw_after;
        CREATE SERVER server_after FOREIGN DATA WRAPPER fdw_after;
        CREATE USER MAPPING FOR PUBLIC SERVER server_after;
        CREATE USER MAPPING FOR CURRENT_USER SERVER server_kept;
        CREATE SERVER remote_after FOREIGN DATA WRAPPER postgres_fdw;
        CREATE EXTENSION tsm_system_rows SCHEMA pg_catalog;
        CREATE LANGUAGE lang_after HANDLER public.kept_handler;
        CREATE CAST (text AS bigint) WITH INOUT;
        CREATE TRANSFORM FOR bigint LANGUAGE plpgsql (
            FROM SQL WITH FUNCTION varchar_support(internal), TO SQL WITH FUNCTION int8recv(internal));
        CREATE ACCESS METHOD table_am_after TYPE TABLE HANDLER heap_tableam_handler;
        CREATE ACCESS METHOD index_am_after TYPE INDEX HANDLER hashhandler;
    """)
    failing = _backup_that_fails_to_restore(target)
    psql(target, "CREATE EVENT TRIGGER refuse_drops ON sql_drop EXECUTE FUNCTION public.refuse_drops()")
    after_backup = rows(target, DATABASE_OBJECTS)
    assert len(after_backup) == len(at_backup) + 15, after_backup
    with pytest.raises(BackupError, match="rolled back"):
        services.restore_backup(backup=failing, safety_backup=False)
    assert rows(target, DATABASE_OBJECTS) == after_backup  # all or nothing

    restore = services.restore_backup(backup=job, safety_backup=False)

    assert restore.status == RestoreStatus.COMPLETED
    assert rows(target, DATABASE_OBJECTS) == at_backup
    assert rows(target, "SELECT count(*) FROM items") == ["10"]


DATABASE_PROPERTIES = """
    SELECT 'setting ' || coalesce(r.rolname, '-') || ' ' || array_to_string(s.setconfig, ',')
        FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
        WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL SELECT 'comment ' || coalesce(shobj_description(oid, 'pg_database'), '')
        FROM pg_database WHERE datname = current_database()
    UNION ALL SELECT format('grant %s to %s by %s%s', a.privilege_type,
                            CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                            a.grantor::regrole, CASE WHEN a.is_grantable THEN ' with grant option' ELSE '' END)
        FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
        WHERE d.datname = current_database()
    ORDER BY 1
"""


def test_database_settings_grants_and_comment_come_back_to_their_backup_values(target, low_role):
    psql(target, f"""
        ALTER DATABASE {target} SET work_mem = '7MB';
        ALTER DATABASE {target} SET search_path = "$user", public;
        ALTER ROLE {LOW} IN DATABASE {target} SET work_mem = '9MB';
        COMMENT ON DATABASE {target} IS 'as it was at the backup';
        REVOKE ALL ON DATABASE {target} FROM PUBLIC;
        GRANT CONNECT ON DATABASE {target} TO {LOW} WITH GRANT OPTION;
    """)
    at_backup = rows(target, DATABASE_PROPERTIES)
    job = services.create_backup(database="target")
    psql(target, f"""
        ALTER DATABASE {target} RESET work_mem;
        ALTER DATABASE {target} SET statement_timeout = '1s';
        ALTER ROLE {LOW} IN DATABASE {target} RESET ALL;
        ALTER ROLE CURRENT_USER IN DATABASE {target} SET work_mem = '1MB';
        COMMENT ON DATABASE {target} IS 'changed later';
        GRANT ALL ON DATABASE {target} TO PUBLIC;
        GRANT TEMPORARY ON DATABASE {target} TO {LOW};
    """)
    changed = rows(target, DATABASE_PROPERTIES)
    assert changed != at_backup
    with pytest.raises(BackupError, match="rolled back"):
        services.restore_backup(backup=_backup_that_fails_to_restore(target), safety_backup=False)
    assert rows(target, DATABASE_PROPERTIES) == changed  # all or nothing

    services.restore_backup(backup=job, safety_backup=False)

    assert rows(target, DATABASE_PROPERTIES) == at_backup


def test_database_properties_apply_to_a_database_restored_under_another_name(target, low_role):
    """The archive names the database it was made from; restored into another, the properties go there."""
    psql(target, f"""
        ALTER DATABASE {target} SET work_mem = '7MB';
        ALTER ROLE {LOW} IN DATABASE {target} SET work_mem = '9MB';
        COMMENT ON DATABASE {target} IS 'from the original';
        REVOKE ALL ON DATABASE {target} FROM PUBLIC;
        GRANT CONNECT ON DATABASE {target} TO {LOW};
        CREATE TABLE items (id int);
    """)
    expected = [line.replace(target, "OTHER") for line in rows(target, DATABASE_PROPERTIES)]
    job = services.create_backup(database="target")
    settings = connections["target"].settings_dict
    other = f"{target}_other"
    psql("postgres", f"DROP DATABASE IF EXISTS {other}")
    psql("postgres", f"CREATE DATABASE {other}")
    connections["target"].close()
    settings["NAME"] = other
    try:
        services.restore_backup(backup=job, database="target", safety_backup=False)
        restored = [line.replace(other, "OTHER") for line in rows(other, DATABASE_PROPERTIES)]
    finally:
        connections["target"].close()
        settings["NAME"] = target
        psql("postgres", f"DROP DATABASE IF EXISTS {other} WITH (FORCE)")
    assert restored == expected
    assert rows(target, DATABASE_PROPERTIES) == [line.replace("OTHER", target) for line in expected]


APP = "restore_objects_app"


@pytest.fixture
def as_database_owner(target, strategy):
    """Make a role without superuser rights own `target`, and connect to it as that role (psql("target") too).
    For a swap it may create databases and end sessions, as a swap needs."""
    psql("postgres", f"DROP ROLE IF EXISTS {APP}")
    psql("postgres", f"CREATE ROLE {APP} LOGIN")
    if strategy == "swap":
        psql("postgres", f"ALTER ROLE {APP} CREATEDB; GRANT pg_signal_backend TO {APP}")
    psql("postgres", f"ALTER DATABASE {target} OWNER TO {APP}")
    settings = connections["target"].settings_dict
    connections["target"].close()
    user, settings["USER"] = settings["USER"], APP
    yield APP
    connections["target"].close()
    settings["USER"] = user
    drop_swap_leftovers()
    psql("postgres", f"ALTER DATABASE {target} OWNER TO {user}")
    psql(target, f"DROP OWNED BY {APP}")
    psql("postgres", f"DROP ROLE {APP}")


def test_database_owner_without_superuser_rights_restores_its_database(target, as_database_owner):
    """What the docker-compose deployment does: the application's role owns its database and is no superuser."""
    psql("target", f"""
        CREATE EXTENSION pg_trgm;
        CREATE TABLE items (id int PRIMARY KEY, name text);
        CREATE INDEX items_name ON items USING gin (name gin_trgm_ops);
        INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
        CREATE PUBLICATION pub_kept FOR TABLE items;
        ALTER DATABASE {target} SET work_mem = '7MB';
        COMMENT ON DATABASE {target} IS 'the application''s';
    """)
    at_backup = rows("target", DATABASE_OBJECTS), rows("target", DATABASE_PROPERTIES)
    job = services.create_backup(database="target")
    psql("target", f"""
        DELETE FROM items WHERE id > 10;
        CREATE TABLE created_after (id int);
        CREATE PUBLICATION pub_after FOR TABLE created_after;
        ALTER DATABASE {target} SET statement_timeout = '1s';
        COMMENT ON DATABASE {target} IS 'changed later';
    """)

    restore = services.restore_backup(backup=job)

    assert restore.status == RestoreStatus.COMPLETED
    assert (rows("target", DATABASE_OBJECTS), rows("target", DATABASE_PROPERTIES)) == at_backup
    assert rows("target", "SELECT count(*) FROM items") == ["100"]
    assert rows("target", "SELECT tableowner FROM pg_tables WHERE tablename = 'items'") == [APP]
    assert rows("target", "SELECT to_regclass('created_after') IS NULL") == ["t"]
