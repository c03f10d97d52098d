"""PostgreSQL: `pg_dump` custom format out, `pg_restore` + `psql` in one transaction back.

The restore replaces the whole content of the database in a single transaction: it drops every
user schema, large object and database-level object (postgresql_database), gives the database the
properties the archive holds for it, then runs the archive's SQL (`pg_restore --file=-` piped into
psql) and puts back the kept tables' rows inside the final COMMIT. Any error, or a pg_restore that
did not finish (it writes the COMMIT last), means no COMMIT succeeds, so PostgreSQL rolls everything
back and the database is as before. The database's properties and the definitions come from
pg_restore runs that read the archive's table of contents only, kept in memory for the main one.
Dropping schemas first (instead of `pg_restore --clean`) is what makes partitioned tables with
primary keys restorable over an existing database.

A superuser restores each object as its owner (`--use-set-session-authorization`), so that the
archive's functions (in CHECK constraints, say) run with their owner's rights, never a superuser's;
only the schemas, extensions, foreign data wrappers and servers, which run no user code, are made
by the superuser and given to their owners first, with their grants: pg_restore grants at the very
end, too late for a role that may create tables in a schema only through a grant. Any other role
restores everything as itself (`--no-owner`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import threading
from typing import BinaryIO, Iterator

from django.db import DatabaseError
from django.db.backends.postgresql.client import DatabaseClient
from django.utils.translation import gettext as _

from ..conf import setting
from ..errors import BackupError, DatabaseBusy
from . import (
    Engine,
    KeptTable,
    RereadableHead,
    ServerInfo,
    chunks_of,
    feed_tool,
    quote_ident,
    tool_environment,
    tool_process,
)
from . import postgresql_database
from . import postgresql_swap
from .postgresql_swap import NewDatabaseMixin

APPLICATION_NAME = "django-backups"
# pg_try_advisory_lock(int, int): a constant and the database name's hash; advisory locks are scoped to
# the database that holds them (the maintenance database).
LOCK_KEY = (0x6261636B, 0x7570)
# The longest lock wait PostgreSQL accepts (lock_timeout is an int of milliseconds), in seconds.
MAX_LOCK_TIMEOUT = 2_147_483


def first_error_line(stderr: str) -> str:
    """Return the line of a PostgreSQL tool's stderr that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for pattern in (r"(?:FATAL|ERROR):\s+(.*)", r"error:\s+(.*)"):  # the server's words first
        for line in lines:
            match = re.search(pattern, line)
            if match:
                return match.group(1).strip()
    return lines[0] if lines else _("no error message")


def quote_literal(value: str) -> str:
    return "'%s'" % value.replace("'", "''")


class PostgreSQLEngine(NewDatabaseMixin, Engine):
    name = "postgresql"
    suffix = "pgdump"
    magic = b"PGDMP"

    def _command(self, tool: str, options: list[str]) -> tuple[list[str], dict[str, str]]:
        """Return argv and environment for a client tool; the password travels only in the environment."""
        args, env = DatabaseClient.settings_to_cmd_args_env(self.connection.settings_dict, options)
        return [tool, *args[1:]], {**(env or {}), "PGAPPNAME": APPLICATION_NAME}

    def _connect(self):
        try:
            raw = self.connection.get_new_connection(self.connection.get_connection_params())
        except (DatabaseError, self.connection.Database.Error) as exc:
            raise BackupError(
                _("Cannot connect to database %(alias)r: %(reason)s. Check that the server is running and the URL is right.")
                % {"alias": self.alias, "reason": str(exc).strip().splitlines()[0]}
            ) from exc
        raw.autocommit = True
        return raw

    def identity(self) -> tuple:
        # The server instance (its start time) and the database's oid in it: the same whether the
        # alias reaches it by socket, 127.0.0.1 or a host name.
        raw = self._connect()
        try:
            with raw.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_postmaster_start_time()::text, oid, datname FROM pg_database "
                    "WHERE datname = current_database()"
                )
                return cursor.fetchone()
        finally:
            raw.close()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        # Held in the maintenance database, keyed by the database's name: a session in the database
        # itself would block renaming it (a restore by swap). Without access to it, in the database.
        try:
            raw = self.on_database(postgresql_swap.MAINTENANCE_DATABASE)._connect()
        except BackupError:
            raw = self._connect()
        try:
            with raw.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s)), pg_backend_pid()",
                               [LOCK_KEY[0], self.database_name])
                acquired, self._lock_pid = cursor.fetchone()
            if not acquired:
                raise DatabaseBusy(self.alias)
            try:
                yield
            finally:
                # Released by a statement, not only by closing: the server ends a closed session a moment
                # later, and an operation started right after this one would find the lock still taken.
                with contextlib.suppress(self.connection.Database.Error):
                    with raw.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", [LOCK_KEY[0], self.database_name])
        finally:
            raw.close()

    def describe(self) -> ServerInfo:
        raw = self._connect()
        try:
            with raw.cursor() as cursor:
                cursor.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int")
                server_version, server_num = cursor.fetchone()
        finally:
            raw.close()
        try:
            output = subprocess.run(
                ["pg_dump", "--version"], env=tool_environment(), capture_output=True, text=True, check=True
            ).stdout
        except FileNotFoundError as exc:
            raise BackupError(_("pg_dump is not installed or not on PATH; install the PostgreSQL client tools.")) from exc
        match = re.search(r"(\d+)(?:\.(\d+))?", output)
        tool_major, server_major = int(match.group(1)), server_num // 10000
        if tool_major < server_major:
            raise BackupError(
                _("pg_dump %(tool)s is older than the PostgreSQL %(server)s server of database %(alias)r; "
                  "install the PostgreSQL %(major)s client tools.")
                % {"tool": tool_major, "server": f"{server_major}.{server_num % 10000}", "alias": self.alias,
                   "major": server_major}
            )
        return ServerInfo(server_version=server_version, tool_version=output.strip())

    @contextlib.contextmanager
    def dump(self) -> Iterator[BinaryIO]:
        
        args, env = self._command(
            "pg_dump", ["--format=custom", "--compress=0", f"--lock-wait-timeout={setting('BACKUP_LOCK_TIMEOUT')}s"]
        )
        with tool_process(args, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) as process:
            yield process.stdout
            process.stdout.close()
            if process.wait() != 0:
                stderr = process.stderr_text()
                if "due to statement timeout" in stderr and "Query was: LOCK TABLE" in stderr:
                    raise BackupError(
                        _("Other sessions held exclusive locks on tables of database %(alias)r for more than "
                          "%(seconds)s s, so pg_dump gave up; retry when they have finished.")
                        % {"alias": self.alias, "seconds": setting("BACKUP_LOCK_TIMEOUT")}
                    )
                raise BackupError(_("pg_dump failed: %(reason)s.") % {"reason": first_error_line(stderr)})

    # Restore ---------------------------------------------------------------------------

    def _qualified(self, table: str) -> str | None:
        """Return the schema-qualified, quoted name of an existing table, or None."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = to_regclass(%s)",
                [quote_ident(table)],
            )
            row = cursor.fetchone()
        return f"{quote_ident(row[0])}.{quote_ident(table)}" if row else None

    def _keep_plan(self, keep: list[KeptTable]) -> list[tuple[KeptTable, str, str]]:
        """Return (table, its qualified name, its temporary copy) for each kept table that exists."""
        plan = []
        for index, table in enumerate(keep):
            qualified = self._qualified(table.name)
            if qualified:
                plan.append((table, qualified, f"pg_temp.backups_keep_{index}"))
        return plan

    def _prelude(self, plan, *, lock_timeout: int, terminate_sessions: bool) -> bytes:
        sql = [
            "BEGIN;",
            # The one row psql prints (see _transaction_outcome): \o sends every later result nowhere.
            "SELECT pg_backend_pid(), txid_current();",
            "\\o /dev/null",
            f"SET LOCAL lock_timeout = '{int(lock_timeout)}s';",
            "SET LOCAL client_min_messages = warning;",
        ]
        # Then: an event trigger would fire during the DDL below (even CREATE TEMP TABLE).
        sql.append(postgresql_database.drop_event_triggers())
        if terminate_sessions:
            keep_pids = [getattr(self, "_lock_pid", 0)]
            if self.connection.connection is not None:
                keep_pids.append(self.connection.connection.info.backend_pid)
            sql.append(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE datname = current_database() AND backend_type = 'client backend' "
                f"AND pid <> pg_backend_pid() AND pid NOT IN ({', '.join(str(int(p)) for p in keep_pids)});"
            )
        for _table, qualified, copy in plan:
            # No one may add a catalog row between this copy and the COMMIT, or it would be lost.
            sql.append(f"LOCK TABLE {qualified} IN EXCLUSIVE MODE;")
            sql.append(f"CREATE TEMP TABLE {copy.split('.')[1]} ON COMMIT DROP AS SELECT * FROM {qualified};")
        if plan:
            sql += self._put_back_function(plan)
        sql += [
            postgresql_database.drop_database_objects(),
            "SELECT count(pg_catalog.lo_unlink(oid)) FROM pg_catalog.pg_largeobject_metadata;",
            # What initdb makes, and what pg_dump's "*not* creating schema" assumes.
            "CREATE SCHEMA public AUTHORIZATION pg_database_owner;",
            "GRANT USAGE ON SCHEMA public TO PUBLIC;",
            "COMMENT ON SCHEMA public IS 'standard public schema';",
            postgresql_database.RESET_DATABASE_PROPERTIES,
        ]
        return ("\n".join(sql) + "\n").encode()

    def _put_back_function(self, plan) -> list[str]:
        """Return SQL that puts the kept tables' rows back at COMMIT, after pg_restore's whole script.

        A deferred constraint trigger runs inside the COMMIT that ends pg_restore's script: if it
        fails (the archive lacks the catalog tables, say), the COMMIT fails and everything rolls back.
        """
        body = []
        for table, qualified, copy in plan:
            missing = _(
                "The archive has no table %(table)s, so restoring it would erase the backup catalog; "
                "restore it into another database."
            ) % {"table": table.name}
            if table.required:
                body.append(f"IF to_regclass({quote_literal(qualified)}) IS NULL THEN "
                            f"RAISE EXCEPTION '%', {quote_literal(missing)}; END IF;")
            else:  # an archive older than the table: migrate creates it afterwards
                body.append(f"IF to_regclass({quote_literal(qualified)}) IS NOT NULL THEN")
            body += [
                # The archive's version of the table may have fewer or more columns: copy the shared ones.
                "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols FROM pg_attribute "
                f"WHERE attrelid = {quote_literal(qualified)}::regclass AND attnum > 0 AND NOT attisdropped "
                f"AND attname IN (SELECT attname FROM pg_attribute WHERE attrelid = {quote_literal(copy)}::regclass "
                "AND attnum > 0 AND NOT attisdropped);",
                f"EXECUTE {quote_literal(f'DELETE FROM {qualified}')};",
                f"EXECUTE format({quote_literal(f'INSERT INTO {qualified} (%s) SELECT %s FROM {copy}')}, cols, cols);",
            ]
            for column, (ref_table, ref_column) in table.outside_refs.items():
                col, ref_col = quote_ident(column), quote_ident(ref_column)
                update = (
                    f"UPDATE {qualified} SET {col} = NULL WHERE {col} IS NOT NULL AND NOT EXISTS "
                    f"(SELECT 1 FROM {quote_ident(ref_table)} r WHERE r.{ref_col} = {qualified}.{col})"
                )
                body.append(f"EXECUTE {quote_literal(update)};")
            pk = quote_ident(table.pk_column)
            reset = (
                f"SELECT setval(pg_get_serial_sequence({quote_literal(qualified)}, {quote_literal(table.pk_column)}), "
                f"COALESCE(max({pk}), 0) + 1, false) FROM {qualified}"
            )
            # Only a table whose key comes from a sequence (the task queue's is a UUID).
            body.append(f"IF pg_get_serial_sequence({quote_literal(qualified)}, {quote_literal(table.pk_column)}) "
                        f"IS NOT NULL THEN EXECUTE {quote_literal(reset)}; END IF;")
            if not table.required:
                body.append("END IF;")
        return [
            # SET search_path FROM CURRENT: the session's usual path, not the empty one pg_restore sets.
            # SECURITY DEFINER: at COMMIT the session is whichever owner pg_restore's script set last.
            "CREATE FUNCTION pg_temp.backups_put_back() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
            "SET search_path FROM CURRENT AS $put_back$ DECLARE cols text; BEGIN "
            + " ".join(body)
            + " RETURN NULL; END $put_back$;",
            "CREATE TEMP TABLE backups_commit_hook (id int) ON COMMIT DROP;",
            "CREATE CONSTRAINT TRIGGER backups_put_back AFTER INSERT ON pg_temp.backups_commit_hook "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.backups_put_back();",
            "INSERT INTO pg_temp.backups_commit_hook VALUES (1);",
        ]

    def restore(
        self, source: BinaryIO, *, keep: list[KeptTable], lock_timeout: int, terminate_sessions: bool
    ) -> None:
        archive = RereadableHead(source)
        superuser = self._is_superuser()
        owners = "--use-set-session-authorization" if superuser else "--no-owner"
        # psql runs the script (BEGIN, the drops, the database's properties, the archive's definitions),
        # then pg_restore's script of the data and what follows it straight from its pipe, without
        # passing through this process. That script ends with the only COMMIT, which pg_restore writes
        # only once it has read the whole archive: if pg_restore fails, psql reaches the end of its
        # input inside the open transaction and PostgreSQL rolls it back. The first script reaches psql
        # through a pipe too, never a file that a killed process would leave behind.
        script = b"".join([
            self._prelude(self._keep_plan(keep), lock_timeout=lock_timeout, terminate_sessions=terminate_sessions),
            self._database_properties(archive),
            *self._definitions(archive, superuser=superuser),
        ])
        feed_errors: list[BaseException] = []
        script_fd, script_writer = os.pipe()
        with open(script_fd, "rb") as script_output, open(script_writer, "wb") as script_input:
            psql_args, env = self._command("psql", [
                "--no-psqlrc", "--quiet", "--no-align", "--tuples-only", "--set=ON_ERROR_STOP=1",
                f"--file=/dev/fd/{script_fd}", "--file=-",
            ])
            with tool_process(
                ["pg_restore", "--single-transaction", "--section=data", "--section=post-data", owners, "--file=-"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            ) as pg_restore:
                with tool_process(
                    psql_args, env=env, stdin=pg_restore.stdout, stdout=subprocess.PIPE, pass_fds=(script_fd,)
                ) as psql:
                    pg_restore.stdout.close()  # psql holds the pipes now
                    script_output.close()
                    self._feed(io.BytesIO(script), script_input, feed_errors)
                    feeder = threading.Thread(
                        target=self._feed, args=(archive.reader(keep=False), pg_restore.stdin, feed_errors)
                    )
                    feeder.start()
                    try:
                        feeder.join()
                        if pg_restore.wait() != 0 or feed_errors:
                            self._raise_input_failure(pg_restore, psql, feed_errors, lock_timeout)
                        if psql.wait() != 0:
                            raise BackupError(self._tool_failure("psql", psql, lock_timeout))
                    except BaseException as exc:
                        psql.kill()  # end the transaction now, whatever psql has read so far
                        psql.wait()
                        # Too late if psql had run the COMMIT: then the restore is complete after all.
                        if not (self._transaction_outcome(psql) == "committed" and isinstance(exc, BackupError)):
                            raise

    def _transaction_outcome(self, psql) -> str | None:
        """Return how the restore's transaction ended ("committed", "aborted"), or None if it never began.

        A session whose psql died runs on, holding its locks, until it next talks to its client: it is
        ended first, so that the answer is final.
        """
        started = psql.stdout.read().decode().split("|")  # the prelude's first query: backend pid | xid
        if len(started) != 2:
            return None
        pid, xid = int(started[0]), int(started[1])
        try:
            raw = self._connect()
            try:
                with raw.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                        "WHERE pid = %s AND backend_xid::text = %s",
                        [pid, str(xid % 2**32)],
                    )
                    cursor.execute("SELECT txid_status(%s)", [xid])
                    return cursor.fetchone()[0]
            finally:
                raw.close()
        except (BackupError, self.connection.Database.Error):
            return None  # the server is gone: the tool's own failure is the best account there is

    def _definitions(self, archive: RereadableHead, *, superuser: bool) -> list[bytes]:
        """Return the SQL of the archive's definitions (its pre-data section), in order.

        The schemas, extensions, foreign data wrappers and servers, with their grants, come first,
        made by the restoring role and given to their owners: they run no user code, and the owners
        of what is in them may need those grants to make it. The rest is made as its owners.
        """
        listing = self._read_toc(["--list"], archive.reader(keep=True)).decode("utf-8", "replace")
        containers, others = postgresql_database.split_definitions(listing)
        scripts = []
        for entries, options in [
            (containers, [] if superuser else ["--no-owner"]),
            (others, ["--use-set-session-authorization" if superuser else "--no-owner"]),
        ]:
            # The entry list lives in memory (memfd), so that nothing is left on disk if this process is killed.
            entry_list = os.memfd_create("backups-restore-list")
            try:
                os.write(entry_list, entries.encode())
                scripts.append(self._read_toc(
                    ["--section=pre-data", f"--use-list=/dev/fd/{entry_list}", *options, "--file=-"],
                    archive.reader(keep=True), pass_fds=(entry_list,),
                ))
            finally:
                os.close(entry_list)
        return scripts

    def _is_superuser(self) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            return cursor.fetchone()[0]

    def _database_properties(self, archive: RereadableHead) -> bytes:
        """Return SQL giving the database the settings, grants and comment the archive holds for it."""
        # --create adds the database's entries to any selection; no schema has a name this long.
        script = self._read_toc(["--create", f"--schema={'x' * 64}", "--file=-"], archive.reader(keep=True))
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT quote_ident(current_database())")
            quoted_name = cursor.fetchone()[0]
        # The script is in the archive's encoding, which its SET client_encoding names: keep its bytes.
        return postgresql_database.database_properties(script.decode("latin-1"), quoted_name=quoted_name).encode("latin-1")

    @classmethod
    def _read_toc(cls, options: list[str], source: BinaryIO, pass_fds: tuple[int, ...] = ()) -> bytes:
        """Return what pg_restore prints for entries without data: it reads only the table of contents."""
        with tool_process(
            ["pg_restore", *options], stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=pass_fds
        ) as pg_restore:
            feeder = threading.Thread(target=cls._feed, args=(source, pg_restore.stdin, []), daemon=True)
            feeder.start()
            output = pg_restore.stdout.read()
            feeder.join()
            if pg_restore.wait() != 0:
                raise BackupError(_("pg_restore could not read the archive: %(reason)s.")
                                  % {"reason": first_error_line(pg_restore.stderr_text())})
        return output

    @classmethod
    def archive_tables(cls, source: BinaryIO) -> list[str]:
        listing = cls._read_toc(["--list"], source).decode("utf-8", "replace")
        # e.g. "215; 1259 16422 TABLE public actor postgres"
        entries = re.finditer(r"^\d+; \d+ \d+ TABLE (?!DATA |ATTACH )(\S+) (\S+) ", listing, re.MULTILINE)
        return [f"{entry[1]}.{entry[2]}" for entry in entries]

    @classmethod
    def check_archive(cls, source: BinaryIO) -> None:
        # Unlike --list, which stops after the table of contents, a restore into nowhere reads every
        # table's data, straight from the stream: nothing is written to disk.
        errors: list[BaseException] = []
        with tool_process(["pg_restore", "--file=/dev/null"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as pg_restore:
            cls._feed(source, pg_restore.stdin, errors)
            if errors:
                raise errors[0]
            if pg_restore.wait() != 0:
                raise BackupError(_("pg_restore could not read the archive to its end: %(reason)s.")
                                  % {"reason": first_error_line(pg_restore.stderr_text())})

    @staticmethod
    def _feed(source: BinaryIO, target: BinaryIO, errors: list[BaseException]) -> None:
        feed_tool(chunks_of(source), target, errors)

    def _raise_input_failure(self, pg_restore, psql, feed_errors, lock_timeout: int) -> None:
        """Say why pg_restore stopped: psql failed first (the pipe broke), or the archive is unreadable."""
        stderr = pg_restore.stderr_text()
        pipe_broke = pg_restore.returncode == -signal.SIGPIPE or "Broken pipe" in stderr
        if pipe_broke and psql.wait() != 0:
            raise BackupError(self._tool_failure("psql", psql, lock_timeout))
        if feed_errors:
            raise BackupError(
                _("The archive could not be read (%(reason)s); it is corrupt or truncated.") % {"reason": feed_errors[0]}
            ) from feed_errors[0]
        if pg_restore.returncode < 0:
            raise BackupError(self._tool_failure("pg_restore", pg_restore, lock_timeout))
        raise BackupError(_("pg_restore could not read the archive: %(reason)s.") % {"reason": first_error_line(stderr)})

    def _tool_failure(self, tool: str, process, lock_timeout: int) -> str:
        """Say why a tool of the restore stopped (raised once its transaction is known not to have committed)."""
        if process.returncode < 0:
            return _(
                "%(tool)s was killed by signal %(signal)s; the restore was rolled back, the database is unchanged."
            ) % {"tool": tool, "signal": -process.returncode}
        return self._restore_failure(first_error_line(process.stderr_text()), lock_timeout)

    def _restore_failure(self, reason: str, lock_timeout: int) -> str:
        if "lock timeout" in reason:
            return _(
                "Other sessions held locks on database %(alias)r for more than %(seconds)s s, so nothing was "
                "restored; close them or retry with --terminate-connections."
            ) % {"alias": self.alias, "seconds": lock_timeout}
        return _("The restore failed and was rolled back, the database is unchanged: %(reason)s") % {"reason": reason}


    # Restore drills: what the archive holds, and what a database restored from it holds ----------

    @classmethod
    def archive_row_counts(cls, archive_path: str) -> dict[str, int]:
        """Return the rows the archive holds for each table with data ("schema.table"), counted from the
        COPY blocks of `pg_restore --data-only` (one line a row: COPY's text format escapes newlines)."""
        counts: dict[str, int] = {}
        table = None
        with tool_process(["pg_restore", "--data-only", "--file=-", archive_path], stdout=subprocess.PIPE) as pg_restore:
            for line in pg_restore.stdout:
                if table is not None:
                    if line == b"\\.\n":
                        table = None
                    else:
                        counts[table] += 1
                elif line.startswith(b"COPY ") and line.rstrip().endswith(b" FROM stdin;"):
                    table = copy_target(line.decode("utf-8", "replace"))
                    counts.setdefault(table, 0)
            if pg_restore.wait() != 0:
                raise BackupError(_("pg_restore could not read the archive's data: %(reason)s.")
                                  % {"reason": first_error_line(pg_restore.stderr_text())})
        return counts

    def table_row_counts(self, tables: list[str]) -> dict[str, int | None]:
        """Return each table's rows in this database (its own, not its partitions'); None for a missing one."""
        counts: dict[str, int | None] = {}
        with self.connection.cursor() as cursor:
            for table in tables:
                schema, _dot, name = table.partition(".")
                qualified = f"{quote_ident(schema)}.{quote_ident(name)}"
                cursor.execute("SELECT to_regclass(%s)", [qualified])
                if cursor.fetchone()[0] is None:
                    counts[table] = None
                    continue
                cursor.execute(f"SELECT count(*) FROM ONLY {qualified}")
                counts[table] = cursor.fetchone()[0]
        return counts


IDENTIFIER = re.compile(r'"((?:[^"]|"")*)"|([^".\s(]+)')


def copy_target(line: str) -> str:
    """Return "schema.table" of a `COPY schema.table (columns) FROM stdin;` line, identifiers unquoted."""
    names, position = [], len("COPY ")
    while len(names) < 2:
        match = IDENTIFIER.match(line, position)
        if match is None:
            break
        names.append(match[1].replace('""', '"') if match[1] is not None else match[2])
        position = match.end()
        if line[position:position + 1] != ".":
            break
        position += 1
    return ".".join(names)
