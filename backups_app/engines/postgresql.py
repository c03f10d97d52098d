"""PostgreSQL: `pg_dump` custom format out, `pg_restore` + `psql` in one transaction back.

The restore replaces the whole content of the database in a single transaction: it drops every
user schema and large object, then runs the archive's SQL (from `pg_restore --file=-`) and puts
back the kept tables' rows before the final COMMIT. Any error, or a pg_restore that did not finish,
means no COMMIT is ever sent, so PostgreSQL rolls everything back and the database is as before.
Dropping schemas first (instead of `pg_restore --clean`) is what makes partitioned tables with
primary keys restorable over an existing database.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from typing import BinaryIO, Iterator

from django.db import DatabaseError
from django.db.backends.postgresql.client import DatabaseClient
from django.utils.translation import gettext as _

from ..errors import BackupError, DatabaseBusy
from . import CHUNK_SIZE, Engine, KeptTable, ServerInfo, copy_stream, tool_process

APPLICATION_NAME = "django-backups"
# pg_try_advisory_lock(int, int): a constant pair; advisory locks are scoped to the database.
LOCK_KEY = (0x6261636B, 0x7570)
# pg_restore's closing "COMMIT;" sits in the last few hundred bytes of its script.
TAIL_BYTES = 256 * 1024


def first_error_line(stderr: str) -> str:
    """Return the line of a PostgreSQL tool's stderr that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for pattern in (r"(?:FATAL|ERROR):\s+(.*)", r"error:\s+(.*)"):  # the server's words first
        for line in lines:
            match = re.search(pattern, line)
            if match:
                return match.group(1).strip()
    return lines[0] if lines else _("no error message")


def quote_ident(name: str) -> str:
    return '"%s"' % name.replace('"', '""')


def quote_literal(value: str) -> str:
    return "'%s'" % value.replace("'", "''")


class PostgreSQLEngine(Engine):
    name = "postgresql"
    suffix = "pgdump"
    magic = b"PGDMP"

    def _command(self, tool: str, options: list[str]) -> tuple[list[str], dict[str, str]]:
        """Return argv and environment for a client tool; the password travels only in the environment."""
        args, env = DatabaseClient.settings_to_cmd_args_env(self.connection.settings_dict, options)
        return [tool, *args[1:]], {**os.environ, **(env or {}), "PGAPPNAME": APPLICATION_NAME}

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

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        raw = self._connect()
        try:
            with raw.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s, %s), pg_backend_pid()", LOCK_KEY)
                acquired, self._lock_pid = cursor.fetchone()
            if not acquired:
                raise DatabaseBusy(self.alias)
            yield
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
            output = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True, check=True).stdout
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
        from django.conf import settings

        args, env = self._command(
            "pg_dump", ["--format=custom", "--compress=0", f"--lock-wait-timeout={settings.BACKUP_LOCK_TIMEOUT}s"]
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
                        % {"alias": self.alias, "seconds": settings.BACKUP_LOCK_TIMEOUT}
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
        sql = ["BEGIN;", f"SET LOCAL lock_timeout = '{int(lock_timeout)}s';", "SET LOCAL client_min_messages = warning;"]
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
        sql += [
            "DO $$ DECLARE s name; BEGIN FOR s IN SELECT nspname FROM pg_namespace "
            "WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' "
            "LOOP EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP; END $$;",
            "SELECT count(pg_catalog.lo_unlink(oid)) FROM pg_catalog.pg_largeobject_metadata;",
            # What initdb makes, and what pg_dump's "*not* creating schema" assumes.
            "CREATE SCHEMA public AUTHORIZATION pg_database_owner;",
            "GRANT USAGE ON SCHEMA public TO PUBLIC;",
            "COMMENT ON SCHEMA public IS 'standard public schema';",
        ]
        return ("\n".join(sql) + "\n").encode()

    def _epilogue(self, plan) -> bytes:
        sql = []
        for table, qualified, copy in plan:
            missing = _(
                "The archive has no table %(table)s, so restoring it would erase the backup catalog; "
                "restore it into another database."
            ) % {"table": table.name}
            sql.append(
                f"DO $$ DECLARE cols text; BEGIN "
                f"IF to_regclass({quote_literal(qualified)}) IS NULL THEN "
                f"RAISE EXCEPTION '%', {quote_literal(missing)}; END IF; "
                f"SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols FROM pg_attribute "
                f"WHERE attrelid = {quote_literal(qualified)}::regclass AND attnum > 0 AND NOT attisdropped "
                f"AND attname IN (SELECT attname FROM pg_attribute WHERE attrelid = {quote_literal(copy)}::regclass "
                f"AND attnum > 0 AND NOT attisdropped); "
                f"EXECUTE {quote_literal(f'DELETE FROM {qualified}')}; "
                f"EXECUTE format('INSERT INTO {qualified.replace(chr(39), chr(39) * 2)} (%s) SELECT %s FROM {copy}', cols, cols); "
                f"END $$;"
            )
            for column, (ref_table, ref_column) in table.outside_refs.items():
                col, ref_col = quote_ident(column), quote_ident(ref_column)
                sql.append(
                    f"UPDATE {qualified} SET {col} = NULL WHERE {col} IS NOT NULL AND NOT EXISTS "
                    f"(SELECT 1 FROM {quote_ident(ref_table)} r WHERE r.{ref_col} = {qualified}.{col});"
                )
            pk = quote_ident(table.pk_column)
            sql.append(
                f"SELECT setval(pg_get_serial_sequence({quote_literal(qualified)}, {quote_literal(table.pk_column)}), "
                f"COALESCE(max({pk}), 0) + 1, false) FROM {qualified};"
            )
        # pg_restore's script empties search_path; the kept tables' references are resolved with the
        # session's usual one.
        return ("RESET search_path;\n" + "\n".join(sql) + "\n").encode() if sql else b""

    def restore(
        self, source: BinaryIO, *, keep: list[KeptTable], lock_timeout: int, terminate_sessions: bool
    ) -> None:
        plan = self._keep_plan(keep)
        prelude = self._prelude(plan, lock_timeout=lock_timeout, terminate_sessions=terminate_sessions)
        epilogue = self._epilogue(plan)
        psql_args, env = self._command("psql", ["--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--file=-"])
        feed_errors: list[BaseException] = []

        with (
            tool_process(
                ["pg_restore", "--single-transaction", "--file=-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            ) as pg_restore,
            tool_process(psql_args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as psql,
        ):
            feeder = threading.Thread(target=self._feed, args=(source, pg_restore.stdin, feed_errors), daemon=True)
            feeder.start()
            try:
                psql.stdin.write(prelude)
                held = b""
                for chunk in iter(lambda: pg_restore.stdout.read(CHUNK_SIZE), b""):
                    data = held + chunk
                    psql.stdin.write(data[:-TAIL_BYTES])
                    held = data[-TAIL_BYTES:]
                feeder.join()
                if feed_errors:
                    raise BackupError(
                        _("The archive could not be read (%(reason)s); it is corrupt or truncated.")
                        % {"reason": feed_errors[0]}
                    ) from feed_errors[0]
                if pg_restore.wait() != 0:
                    raise BackupError(
                        _("pg_restore could not read the archive: %(reason)s.")
                        % {"reason": first_error_line(pg_restore.stderr_text())}
                    )
                commit = held.rfind(b"\nCOMMIT;\n")
                if commit < 0:
                    raise BackupError(_("pg_restore's script did not end with COMMIT; nothing was restored."))
                # Only now does psql receive a COMMIT: the kept rows go back in just before it.
                psql.stdin.write(held[: commit + 1] + epilogue + held[commit + 1 :])
                psql.stdin.close()
            except BrokenPipeError:
                pass  # psql stopped on an error: its exit status and stderr say which.
            except BaseException:
                psql.kill()  # never let psql reach a COMMIT after a failure
                raise
            if psql.wait() != 0:
                raise BackupError(self._restore_failure(first_error_line(psql.stderr_text()), lock_timeout))

    @classmethod
    def archive_tables(cls, source: BinaryIO) -> list[str]:
        # pg_restore --list reads only the archive's table of contents, then stops reading.
        with tool_process(["pg_restore", "--list"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as pg_restore:
            feeder = threading.Thread(target=cls._feed, args=(source, pg_restore.stdin, []), daemon=True)
            feeder.start()
            listing = pg_restore.stdout.read().decode("utf-8", "replace")
            feeder.join()
            if pg_restore.wait() != 0:
                raise BackupError(_("pg_restore could not read the archive: %(reason)s.")
                                  % {"reason": first_error_line(pg_restore.stderr_text())})
        # e.g. "215; 1259 16422 TABLE public actor postgres"
        entries = re.finditer(r"^\d+; \d+ \d+ TABLE (?!DATA |ATTACH )(\S+) (\S+) ", listing, re.MULTILINE)
        return [f"{entry[1]}.{entry[2]}" for entry in entries]

    @staticmethod
    def _feed(source: BinaryIO, target: BinaryIO, errors: list[BaseException]) -> None:
        """Copy `source` into a tool's stdin (in a thread); record read errors, ignore a tool that stopped."""
        try:
            copy_stream(source, target)
        except BrokenPipeError:
            pass  # the tool stopped early: its exit status says why.
        except BaseException as exc:  # noqa: BLE001 (reported by the caller, after the tool exits)
            errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                target.close()

    def _restore_failure(self, reason: str, lock_timeout: int) -> str:
        if "lock timeout" in reason:
            return _(
                "Other sessions held locks on database %(alias)r for more than %(seconds)s s, so nothing was "
                "restored; close them or retry with --terminate-connections."
            ) % {"alias": self.alias, "seconds": lock_timeout}
        return _("The restore failed and was rolled back, the database is unchanged: %(reason)s") % {"reason": reason}
