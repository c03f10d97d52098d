"""PostgreSQL: restore into a new database, and swap it with the live one in one step.

A restore by swap never locks the live database while the archive loads: the archive goes into a
new database (created like the live one) with a parallel `pg_restore --jobs N`, and only then are
the live database's sessions ended and the two databases renamed in one transaction. The old one is
kept under another name, so that the swap can be undone in one step too.

Everything that renames or drops a database runs from the maintenance database `postgres`: a
session in a database blocks renaming it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import time
from typing import Sequence

from django.db import connections
from django.utils.translation import gettext as _

from ..errors import BackupError
from . import KeptTable, quote_ident, tool_process
from . import postgresql_database

MAINTENANCE_DATABASE = "postgres"
# The longest a database name may be (NAMEDATALEN - 1 bytes).
MAX_NAME_BYTES = 63
# How long the swap waits for the ended sessions of the live database to be gone, in seconds.
SESSIONS_GONE_WAIT = 10

_HEADER = re.compile(r"^--\n-- (?:Data for )?Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)\n--\n", re.MULTILINE)
_LIST_ENTRY = re.compile(r"^\d+; \d+ \d+ (.*) \S*$")
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = re.compile(rf"({_IDENT})\.({_IDENT})")
# Entries that make or fill one table, of which --table keeps only the named tables' (their tag's first word).
_TABLE_KINDS = ("TABLE", "TABLE DATA", "TABLE ATTACH", "VIEW", "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA",
                "FOREIGN TABLE", "DEFAULT", "CONSTRAINT", "FK CONSTRAINT", "TRIGGER", "RULE", "POLICY")
_NOT_TABLES = ("BLOB", "BLOBS", "BLOB METADATA", "LARGE OBJECT", "PUBLICATION", "PUBLICATION TABLE",
               "SUBSCRIPTION", "EVENT TRIGGER")


def unquote(identifier: str) -> str:
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier


def kept_name(live: str, suffix: str) -> str:
    """Return `live` + `suffix`, `live` cut so that the name fits PostgreSQL's 63 bytes."""
    room = MAX_NAME_BYTES - len(suffix.encode())
    return live.encode()[:room].decode("utf-8", "ignore") + suffix


class NewDatabaseMixin:
    """The PostgreSQL engine's restore into a new database, swap and drop (see the module's docstring)."""

    # Connections ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _maintenance(self):
        """Yield an autocommit connection to the maintenance database of this engine's server."""
        raw = self.on_database(MAINTENANCE_DATABASE)._connect()
        try:
            yield raw
        finally:
            raw.close()

    def _database_exists(self, raw, name: str) -> bool:
        with raw.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            return cursor.fetchone() is not None

    def can_swap(self) -> tuple[bool, str]:
        """Return whether this role can restore by swap here (create databases, end sessions, rename), and why."""
        try:
            with self._maintenance() as raw, raw.cursor() as cursor:
                cursor.execute(
                    "SELECT r.rolsuper, r.rolcreatedb, pg_has_role(current_user, d.datdba, 'MEMBER'), "
                    "pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') "
                    "FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = %s",
                    [self.database_name],
                )
                row = cursor.fetchone()
        except BackupError as exc:
            return False, _("the maintenance database %(name)s cannot be reached (%(reason)s)") % {
                "name": MAINTENANCE_DATABASE, "reason": exc}
        if row is None:
            return False, _("database %(name)s does not exist") % {"name": self.database_name}
        superuser, createdb, owner, signal = row
        if superuser:
            return True, _("the role is a superuser")
        if not createdb:
            return False, _("the role may not create databases (CREATEDB)")
        if not owner:
            return False, _("the role does not own the database, so it may not rename it")
        if not signal:
            return False, _("the role may not end other roles' sessions (pg_signal_backend)")
        return True, _("the role may create databases, owns this one and may end sessions")

    # Create and drop ----------------------------------------------------------------------------

    def _create_like_this(self, name: str) -> None:
        """Create database `name` with this one's encoding, collation, ctype, locale provider and owner."""
        with self._maintenance() as raw, raw.cursor() as cursor:
            cursor.execute(
                "SELECT pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, d.datlocprovider, d.daticulocale, "
                "d.datdba::regrole::text, pg_has_role(current_user, d.datdba, 'MEMBER') "
                "FROM pg_database d WHERE d.datname = %s", [self.database_name],
            )
            encoding, collate, ctype, provider, icu_locale, owner, may_own = cursor.fetchone()
            if self._database_exists(raw, name):
                raise BackupError(_("Database %(name)s already exists; choose a name no database has.") % {"name": name})
            options = [f"TEMPLATE template0 ENCODING {quote_literal(encoding)} LC_COLLATE {quote_literal(collate)} "
                       f"LC_CTYPE {quote_literal(ctype)}"]
            if provider == "i":
                options.append(f"LOCALE_PROVIDER icu ICU_LOCALE {quote_literal(icu_locale)}")
            if may_own:
                options.append(f"OWNER {owner}")
            try:
                cursor.execute(f"CREATE DATABASE {quote_ident(name)} " + " ".join(options))
            except self.connection.Database.Error as exc:
                raise BackupError(_("Database %(name)s could not be created: %(reason)s.")
                                  % {"name": name, "reason": str(exc).strip().splitlines()[0]}) from exc

    def drop_database(self) -> None:
        self._refuse_dropping_a_configured_database()
        self.connection.close()
        with self._maintenance() as raw, raw.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {quote_ident(self.database_name)} WITH (FORCE)")

    def database_size(self, name: str) -> int | None:
        """Return the size in bytes of database `name` on this server, None if there is none."""
        with self._maintenance() as raw, raw.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s", [name])
            row = cursor.fetchone()
        return row[0] if row else None

    # Restore into a new database ----------------------------------------------------------------

    def restore_into_new(self, archive_path: str, name: str, *, jobs: int = 1, tables: Sequence[str] = ()):
        self._create_like_this(name)
        new = self.on_database(name)
        try:
            new._load_file(archive_path, jobs=jobs, tables=tables)
        except BaseException:
            new.drop_database()
            raise
        return new

    def _pg_restore(self, archive_path: str, options: list[str], *, entries: str | None = None,
                    exit_on_error: bool = True) -> str:
        """Run pg_restore into this engine's database; return its stderr; raise BackupError when it fails."""
        from .postgresql import first_error_line

        args, env = self._command("pg_restore", ["--no-password"])
        args = [*args[:-1], f"--dbname={self.database_name}"] if args[-1] == self.database_name else args
        pass_fds: tuple[int, ...] = ()
        entry_list = None
        if entries is not None:
            entry_list = os.memfd_create("backups-restore-list")
            os.write(entry_list, entries.encode())
            options = [*options, f"--use-list=/dev/fd/{entry_list}"]
            pass_fds = (entry_list,)
        try:
            with tool_process([*args, *options, *(["--exit-on-error"] if exit_on_error else []), archive_path],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=pass_fds) as tool:
                returncode = tool.wait()
                stderr = tool.stderr_text()
        finally:
            if entry_list is not None:
                os.close(entry_list)
        if returncode < 0:
            raise BackupError(_("pg_restore was killed by signal %(signal)s; the new database is dropped.")
                              % {"signal": -returncode})
        if returncode != 0 and exit_on_error:
            raise BackupError(_("pg_restore failed: %(reason)s.") % {"reason": first_error_line(stderr)})
        return stderr

    def _toc(self, archive_path: str, options: list[str]) -> str:
        from .postgresql import first_error_line

        result = subprocess.run(["pg_restore", *options, archive_path], capture_output=True,
                                env=_tool_env(), stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise BackupError(_("pg_restore could not read the archive: %(reason)s.")
                              % {"reason": first_error_line(result.stderr.decode("utf-8", "replace"))})
        return result.stdout.decode("latin-1")

    def _load_file(self, archive_path: str, *, jobs: int, tables: Sequence[str]) -> None:
        """Load the archive into this engine's (new, empty) database."""
        superuser = self._is_superuser()
        properties = self._toc(archive_path, ["--create", f"--schema={'x' * 64}", "--file=-"])
        sql = postgresql_database.database_properties(properties, quoted_name=quote_ident(self.database_name))
        self._run_sql(sql.encode("latin-1"))
        listing = self._toc(archive_path, ["--list"])
        if tables:
            listing = self._select_tables(archive_path, listing, tables)
        containers, others = postgresql_database.split_definitions(listing)
        owners = "--use-set-session-authorization" if superuser else "--no-owner"
        # As the in-place restore: containers made by this role and given to their owners, the rest as its owners.
        # With --table, a definition that needs a table left out (a function returning its rows) fails:
        # it is skipped, and the named tables must exist at the end.
        self._pg_restore(archive_path, ["--section=pre-data"] + ([] if superuser else ["--no-owner"]),
                         entries=containers, exit_on_error=not tables)
        self._pg_restore(archive_path, ["--section=pre-data", owners], entries=others, exit_on_error=not tables)
        if tables:
            self._check_tables_exist(tables)
        self._pg_restore(archive_path, ["--section=data", "--section=post-data", owners, f"--jobs={max(1, jobs)}"],
                         entries=listing)

    def _run_sql(self, sql: bytes) -> None:
        from .postgresql import first_error_line

        args, env = self._command("psql", ["--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--file=-"])
        with tool_process(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as psql:
            psql.stdin.write(sql)
            psql.stdin.close()
            if psql.wait() != 0:
                raise BackupError(_("The database's properties could not be set: %(reason)s.")
                                  % {"reason": first_error_line(psql.stderr_text())})

    def _check_tables_exist(self, tables: Sequence[str]) -> None:
        with self.connection.cursor() as cursor:
            for table in tables:
                schema, _dot, name = table.rpartition(".")
                cursor.execute("SELECT to_regclass(%s)", [f"{quote_ident(schema or 'public')}.{quote_ident(name)}"])
                if cursor.fetchone()[0] is None:
                    raise BackupError(_("Table %(table)s could not be restored from the archive.") % {"table": table})

    def _select_tables(self, archive_path: str, listing: str, tables: Sequence[str]) -> str:
        """Return the entries of `listing` that --table keeps: the named tables with their data, defaults,
        constraints, indexes and triggers, and every definition that refers to no other table."""
        archive_tables = {
            (entry[1], entry[2])
            for entry in re.finditer(r"^\d+; \d+ \d+ (?:TABLE|VIEW|MATERIALIZED VIEW|FOREIGN TABLE) (\S+) (\S+) ",
                                     listing, re.MULTILINE)
        }
        wanted = set()
        for table in tables:
            schema, _dot, name = table.rpartition(".")
            key = (schema or "public", name)
            if key not in archive_tables:
                raise BackupError(_("The archive has no table %(table)s; backup_tables lists the tables it has.")
                                  % {"table": table})
            wanted.add(key)
        # The SQL of every entry without data, to see which tables it refers to.
        script = self._toc(archive_path, ["--schema-only", "--file=-"])
        parts = _HEADER.split(script)
        bodies = {}
        for name, kind, schema, _owner, body in zip(parts[1::5], parts[2::5], parts[3::5], parts[4::5], parts[5::5]):
            bodies[f"{kind} {schema} {name}"] = body
        # Indexes, and the constraints that make one (an INDEX ATTACH names them).
        indexes = set(re.findall(r"^\d+; \d+ \d+ INDEX (\S+) (\S+) ", listing, re.MULTILINE))
        indexes |= set(re.findall(r"^\d+; \d+ \d+ CONSTRAINT (\S+) \S+ (\S+) ", listing, re.MULTILINE))
        relations = archive_tables | indexes
        kept, kept_relations = [], set(wanted)
        # Twice: an index is kept with its table, and what refers to an index (INDEX ATTACH) with the index.
        for _round in range(2):
            kept = []
            for line in listing.splitlines(keepends=True):
                match = _LIST_ENTRY.match(line.rstrip("\n"))
                if not match:
                    continue
                entry = match.group(1)
                kind = next((k for k in sorted(_TABLE_KINDS + _NOT_TABLES, key=len, reverse=True)
                             if entry.startswith(k + " ")), None)
                if kind in _NOT_TABLES:
                    continue
                if kind in _TABLE_KINDS:
                    schema, tag = entry[len(kind) + 1:].split(" ", 1)
                    if (schema, tag.split(" ", 1)[0]) not in wanted:
                        continue
                body = bodies.get(entry, "")
                refers_to = {(unquote(a), unquote(b)) for a, b in _QUALIFIED.findall(body)} & relations
                if refers_to - kept_relations and not entry.startswith(("FUNCTION ", "PROCEDURE ", "AGGREGATE ")):
                    continue
                if entry.startswith("INDEX "):
                    kept_relations.add(tuple(entry.split(" ")[1:3]))
                elif entry.startswith("CONSTRAINT "):
                    kept_relations.add((entry.split(" ")[1], entry.split(" ")[3]))
                kept.append(line)
        return "".join(kept)

    # Swap ---------------------------------------------------------------------------------------

    def swap_in(self, new_name: str, old_name: str, *, keep: list[KeptTable], lock_timeout: int) -> None:
        """Put database `new_name` in the place of this engine's database, which becomes `old_name`.

        `keep`: tables whose current rows are copied into the new database first, under a lock that
        holds until the swap, so that no row written meanwhile is lost. Then the live database refuses
        new connections, its sessions are ended and both are renamed in one transaction. On any failure
        the live database is as it was (and accepts connections again); the new one is left to the caller.
        """
        live = self.database_name
        live_quoted, new_quoted = quote_ident(live), quote_ident(new_name)
        for connection in connections.all(initialized_only=True):
            if connection.settings_dict.get("NAME") in (live, new_name):
                connection.close()
        self.connection.close()
        holder = self._connect()
        try:
            if keep:
                self._copy_kept_rows(holder, new_name, keep, lock_timeout)
            with self._maintenance() as raw, raw.cursor() as cursor:
                cursor.execute(f"ALTER DATABASE {live_quoted} ALLOW_CONNECTIONS false")
                try:
                    self._end_sessions(cursor, [live, new_name], spare=holder.info.backend_pid)
                    holder.close()  # releases the kept tables' lock: no one can connect to write any more
                    self._end_sessions(cursor, [live, new_name], spare=0)
                    raw.autocommit = False
                    cursor.execute(f"ALTER DATABASE {live_quoted} RENAME TO {quote_ident(old_name)}")
                    cursor.execute(f"ALTER DATABASE {new_quoted} RENAME TO {live_quoted}")
                    cursor.execute(f"ALTER DATABASE {live_quoted} ALLOW_CONNECTIONS true")
                    raw.commit()
                except BaseException as exc:
                    raw.rollback()
                    raw.autocommit = True
                    cursor.execute(f"ALTER DATABASE {live_quoted} ALLOW_CONNECTIONS true")
                    if isinstance(exc, self.connection.Database.Error):
                        raise BackupError(_("The swap failed, the live database is unchanged: %(reason)s.")
                                          % {"reason": str(exc).strip().splitlines()[0]}) from exc
                    raise
        finally:
            holder.close()

    def _end_sessions(self, cursor, names: list[str], *, spare: int) -> None:
        """End every session in databases `names` but `spare`'s, and wait until they are gone."""
        deadline = time.monotonic() + SESSIONS_GONE_WAIT
        while True:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid, 1000)) FROM pg_stat_activity "
                "WHERE datname = ANY(%s) AND pid <> pg_backend_pid() AND pid <> %s", [names, spare])
            if cursor.fetchone()[0] == 0 or time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def _copy_kept_rows(self, holder, new_name: str, keep: list[KeptTable], lock_timeout: int) -> None:
        """Copy the kept tables' rows from the live database (locked from now on by `holder`) into `new_name`."""
        holder.autocommit = False
        target = self.on_database(new_name)._connect()
        try:
            with holder.cursor() as live, target.cursor() as new:
                live.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout)}s'")
                present = []
                for table in keep:
                    live.execute("SELECT to_regclass(%s)", [quote_ident(table.name)])
                    if live.fetchone()[0] is not None:
                        live.execute(f"LOCK TABLE {quote_ident(table.name)} IN EXCLUSIVE MODE")
                        present.append(table)
                target.autocommit = False
                for table in reversed(present):
                    new.execute("SELECT to_regclass(%s)", [quote_ident(table.name)])
                    if new.fetchone()[0] is not None:
                        new.execute(f"DELETE FROM {quote_ident(table.name)}")
                for table in present:
                    name = quote_ident(table.name)
                    new.execute("SELECT to_regclass(%s)", [name])
                    if new.fetchone()[0] is None:
                        if table.required:
                            raise BackupError(_(
                                "The archive has no table %(table)s, so restoring it would erase the backup catalog; "
                                "restore it into another database.") % {"table": table.name})
                        continue
                    columns = [c for c in _columns(live, name) if c in set(_columns(new, name))]
                    column_list = ", ".join(quote_ident(c) for c in columns)
                    with tempfile.TemporaryFile() as rows:
                        live.copy_expert(f"COPY (SELECT {column_list} FROM {name}) TO STDOUT", rows)
                        rows.seek(0)
                        new.copy_expert(f"COPY {name} ({column_list}) FROM STDIN", rows)
                    for column, (ref_table, ref_column) in table.outside_refs.items():
                        col = quote_ident(column)
                        new.execute(f"UPDATE {name} SET {col} = NULL WHERE {col} IS NOT NULL AND NOT EXISTS (SELECT 1 "
                                    f"FROM {quote_ident(ref_table)} r WHERE r.{quote_ident(ref_column)} = {name}.{col})")
                    new.execute("SELECT pg_get_serial_sequence(%s, %s)", [name, table.pk_column])
                    sequence = new.fetchone()[0]
                    if sequence:
                        new.execute(f"SELECT setval(%s, COALESCE(max({quote_ident(table.pk_column)}), 0) + 1, false) "
                                    f"FROM {name}", [sequence])
                target.commit()
        except self.connection.Database.Error as exc:
            holder.rollback()
            if "lock timeout" in str(exc):
                raise BackupError(_(
                    "Other sessions held locks on the backup catalog for more than %(seconds)s s, so the swap did "
                    "not happen; retry when they have finished.") % {"seconds": lock_timeout}) from exc
            raise BackupError(_("Copying the backup catalog into the restored database failed: %(reason)s.")
                              % {"reason": str(exc).strip().splitlines()[0]}) from exc
        finally:
            target.close()


def _columns(cursor, name: str) -> list[str]:
    cursor.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                   "ORDER BY attnum", [name])
    return [row[0] for row in cursor.fetchall()]


def quote_literal(value: str) -> str:
    return "'%s'" % value.replace("'", "''")


def _tool_env() -> dict[str, str]:
    from . import tool_environment

    return tool_environment()
