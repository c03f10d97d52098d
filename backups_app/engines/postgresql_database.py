"""PostgreSQL: what lives outside the schemas, which a restore must clear and put back itself.

`pg_restore` without `--create` leaves out the database's own properties (its settings, the roles'
settings in it, its CONNECT/TEMP grants and its comment), although the archive holds them, and
`DROP SCHEMA ... CASCADE` leaves the database-level objects (publications, subscriptions, event
triggers, foreign data wrappers and servers, extensions, languages, casts, transforms, access
methods). Everything here runs inside the restore's one transaction.
"""

from __future__ import annotations

import re


def _user_objects(catalog: str, extra: str = "") -> str:
    """Return a condition on the row `c` of `catalog`: an object a user made, not one of an extension's."""
    # Users' objects have oids from 16384 (FirstNormalObjectId) up; an extension's go with it.
    return (
        f"c.oid >= 16384 AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = '{catalog}'::regclass "
        f"AND d.objid = c.oid AND d.deptype = 'e'){extra}"
    )


# (catalog, the statements dropping its object c, which of its objects), in this order: an object of
# a later kind may depend on one of an earlier kind. IF EXISTS: a CASCADE may have dropped it already.
_DROPS = [
    # DROP SUBSCRIPTION may run inside a transaction only without a replication slot to drop.
    ("pg_subscription",
     "format('ALTER SUBSCRIPTION %1$I DISABLE; ALTER SUBSCRIPTION %1$I SET (slot_name = NONE); "
     "DROP SUBSCRIPTION %1$I', c.subname)",
     _user_objects("pg_subscription", " AND c.subdbid = (SELECT oid FROM pg_catalog.pg_database "
                                      "WHERE datname = pg_catalog.current_database())")),
    ("pg_publication", "format('DROP PUBLICATION IF EXISTS %I CASCADE', c.pubname)", _user_objects("pg_publication")),
    # With its user mappings.
    ("pg_foreign_server", "format('DROP SERVER IF EXISTS %I CASCADE', c.srvname)", _user_objects("pg_foreign_server")),
    ("pg_foreign_data_wrapper", "format('DROP FOREIGN DATA WRAPPER IF EXISTS %I CASCADE', c.fdwname)",
     _user_objects("pg_foreign_data_wrapper")),
    # Every schema but the system's (public too, whose oid is below 16384). Before the extensions: the
    # extensions in a schema go with it (CASCADE asks for ownership of the schema only), so that a
    # database owner's restore also drops those a superuser created there.
    ("pg_namespace", "format('DROP SCHEMA IF EXISTS %I CASCADE', c.nspname)",
     "c.nspname NOT LIKE 'pg\\_%' AND c.nspname <> 'information_schema'"),
    ("pg_extension", "format('DROP EXTENSION IF EXISTS %I CASCADE', c.extname)", _user_objects("pg_extension")),
    ("pg_language", "format('DROP LANGUAGE IF EXISTS %I CASCADE', c.lanname)", _user_objects("pg_language")),
    ("pg_cast", "format('DROP CAST IF EXISTS (%s AS %s) CASCADE', c.castsource::regtype, c.casttarget::regtype)",
     _user_objects("pg_cast")),
    ("pg_transform",
     "format('DROP TRANSFORM IF EXISTS FOR %s LANGUAGE %I CASCADE', c.trftype::regtype, "
     "(SELECT lanname FROM pg_catalog.pg_language WHERE oid = c.trflang))", _user_objects("pg_transform")),
    ("pg_am", "format('DROP ACCESS METHOD IF EXISTS %I CASCADE', c.amname)", _user_objects("pg_am")),
]


def _drop_loop(drops: list[tuple[str, str, str]]) -> str:
    queries = [
        f"SELECT {index}, {statement} FROM pg_catalog.{catalog} c WHERE {where}"
        for index, (catalog, statement, where) in enumerate(drops)
    ]
    return (
        "DO $$ DECLARE kind int; statement text; BEGIN FOR kind, statement IN "
        + " UNION ALL ".join(queries)
        + " ORDER BY 1 LOOP EXECUTE statement; END LOOP; END $$;"
    )


def drop_event_triggers() -> str:
    """Return SQL dropping the event triggers, before any other DDL of the restore would fire them."""
    return _drop_loop([("pg_event_trigger", "format('DROP EVENT TRIGGER IF EXISTS %I', c.evtname)",
                        _user_objects("pg_event_trigger"))])


def drop_database_objects() -> str:
    """Return SQL dropping every user schema and database-level object."""
    return _drop_loop(_DROPS)


# Back to what CREATE DATABASE gives, before the archive's properties are applied.
RESET_DATABASE_PROPERTIES = """DO $$ DECLARE db text := quote_ident(current_database()); r record; BEGIN
FOR r IN SELECT s.setrole FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
    WHERE d.datname = current_database() LOOP
  IF r.setrole = 0 THEN EXECUTE format('ALTER DATABASE %s RESET ALL', db);
  ELSE EXECUTE format('ALTER ROLE %s IN DATABASE %s RESET ALL', r.setrole::regrole, db); END IF;
END LOOP;
EXECUTE format('COMMENT ON DATABASE %s IS NULL', db);
FOR r IN SELECT DISTINCT a.grantee, d.datdba FROM pg_catalog.pg_database d, aclexplode(d.datacl) a
    WHERE d.datname = current_database() AND a.grantee <> d.datdba LOOP
  EXECUTE format('REVOKE ALL ON DATABASE %s FROM %s CASCADE', db,
                 CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END);
END LOOP;
-- acldefault('d', owner): everything for the owner, CONNECT and TEMPORARY for PUBLIC.
EXECUTE format('GRANT ALL ON DATABASE %s TO %s', db,
               (SELECT datdba::regrole FROM pg_catalog.pg_database WHERE datname = current_database()));
EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %s TO PUBLIC', db);
END $$;"""

# What others' objects are made in, and the grants to make them there (`pg_restore --list` lines);
# extensions too, whose scripts a superuser runs anyway, as foreign data wrappers may come from them.
_CONTAINER = r"(?:SCHEMA|EXTENSION|FOREIGN DATA WRAPPER|SERVER|USER MAPPING) "
_CONTAINER_ENTRY = re.compile(
    rf"\d+; \d+ \d+ (?:{_CONTAINER}|(?:ACL|COMMENT|SECURITY LABEL) - (?:{_CONTAINER}|FOREIGN SERVER ))"
)


def split_definitions(listing: str) -> tuple[str, str]:
    """Split the entries of `pg_restore --list` into two lists for `--use-list`: containers, others."""
    lines = listing.splitlines(keepends=True)
    containers = [line for line in lines if _CONTAINER_ENTRY.match(line)]
    return "".join(containers), "".join(line for line in lines if not _CONTAINER_ENTRY.match(line))


_SECTION = re.compile(r"^--\n-- Name: .*; Type: (.*); Schema: .*; Owner: .*\n--\n", re.MULTILINE)


def database_properties(script: str, *, quoted_name: str) -> str:
    """Return the statements of pg_restore's `--create` script that set the database's properties.

    `script` holds the archive's entries about the database: its CREATE DATABASE (left out) and the
    COMMENT, ACL and DATABASE PROPERTIES entries, which are rewritten for the database `quoted_name`
    they are restored into, the archive's name being the one in CREATE DATABASE.
    """
    parts = _SECTION.split(script)
    encoding = re.search(r"^SET client_encoding = .*;$", parts[0], re.MULTILINE)
    statements = [encoding.group(0)] if encoding else []
    archive_name = None
    for kind, body in zip(parts[1::2], parts[2::2]):
        if kind == "DATABASE":
            archive_name = re.search(r'^CREATE DATABASE ("(?:[^"]|"")*"|\S+)', body, re.MULTILINE).group(1)
        elif kind in ("COMMENT", "ACL", "DATABASE PROPERTIES"):
            # pg_restore's own psql commands (\connect, \restrict) follow the entries.
            statements += [line for line in body.splitlines() if not line.startswith("\\")]
    sql = "\n".join(statements)
    # The connection limit and template flag belong to the server's administration, not to the content.
    sql = re.sub(r"^ALTER DATABASE .* (?:CONNECTION LIMIT|IS_TEMPLATE) = \S+;$", "", sql, flags=re.MULTILINE)
    if archive_name and archive_name != quoted_name:
        statement_start = r"^((?:ALTER|COMMENT ON|(?:GRANT|REVOKE) .*? ON|ALTER ROLE .*? IN) DATABASE )"
        sql = re.sub(statement_start + re.escape(archive_name) + "(?=[ ;])", lambda match: match.group(1) + quoted_name,
                     sql, flags=re.MULTILINE)
    return sql
