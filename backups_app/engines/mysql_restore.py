"""MariaDB/MySQL restore: load into a scratch database, read its objects back, swap the tables in with
one RENAME TABLE, then replace the rest, each step after the swap written down first (see mysql.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import subprocess
import threading
from typing import BinaryIO, Iterator

from django.utils.translation import gettext as _

from ..errors import BackupError, RestoreIncomplete
from . import KeptTable, feed_tool, tool_process
from .mysql import (
    DEFINER,
    EVENT_ENABLED,
    JOURNAL,
    OLD_MARK,
    SCRATCH_MARK,
    SEQUENCE_DEFAULT,
    UNDO,
    MySQLEngine,
    _checked_lines,
    _finish,
    _run_steps,
    _session,
    first_error_line,
    quote_name,
)

logger = logging.getLogger("backups_app.engines.mysql")


class SwapRestore:
    """One restore: load into a scratch database, read its objects back, swap the tables in, replace the rest."""

    def __init__(self, engine: MySQLEngine, *, keep: list[KeptTable], lock_timeout: int, terminate_sessions: bool):
        self.engine = engine
        self.keep = {table.name: table for table in keep}
        self.lock_timeout = int(lock_timeout)
        self.terminate_sessions = terminate_sessions
        self.live = engine.database
        token = secrets.token_hex(4)
        self.scratch = f"{engine._scratch_prefix()}{SCRATCH_MARK}{token}"
        self.old = f"{engine._scratch_prefix()}{OLD_MARK}{token}"
        self.error = engine.connection.Database.Error

    def sql(self, statement: str, params=None) -> list[tuple]:
        return self.engine._query(self.raw, statement, params)

    def run(self, source: BinaryIO) -> None:
        self.raw = self.engine._connect()
        try:
            (charset, collation), = self.sql(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                "WHERE SCHEMA_NAME = %s", [self.live])
            self.create_database = f"CHARACTER SET {charset} COLLATE {collation}"
            swapped = False
            try:
                self.sql(f"CREATE DATABASE {quote_name(self.scratch)} {self.create_database}")
                self._load(source)
                self._read_restored_objects()
                self._read_live_objects()
                self._swap()
                swapped = True
            except self.error as exc:
                raise BackupError(
                    _("The restore failed before it changed anything, the database is unchanged: %(reason)s.")
                    % {"reason": exc.args[-1] if exc.args else exc}
                ) from exc
            finally:
                if not swapped:
                    self._drop(self.scratch, self.old)
            try:
                _finish(self.raw, self.old, self.error)
            except self.error as exc:
                # The old tables stay for inspection; without the journal no one finishes this restore
                # over the safety backup that the caller now puts back.
                self.sql(f"DROP TABLE IF EXISTS {quote_name(self.old)}.{JOURNAL}, {quote_name(self.old)}.{UNDO}")
                self._drop(self.scratch)
                raise RestoreIncomplete(
                    _("The restored tables of database %(alias)r are in place, but replacing its views, triggers, "
                      "routines and events failed (%(reason)s); the tables it had before are kept in database %(old)s.")
                    % {"alias": self.engine.alias, "reason": exc.args[-1] if exc.args else exc, "old": self.old}
                ) from exc
        finally:
            self.raw.close()

    def _drop(self, *databases: str) -> None:
        self.sql("SET SESSION foreign_key_checks = 0")
        for database in databases:
            with contextlib.suppress(self.error):
                self.sql(f"DROP DATABASE IF EXISTS {quote_name(database)}")
        self.sql("SET SESSION foreign_key_checks = 1")

    # Before the swap: nothing here touches the live database. ---------------------------

    def _load(self, source: BinaryIO) -> None:
        self.enabled_events = load_dump(self.engine, self.raw, self.scratch, source)

    def _show_create(self, kind: str, database: str, name: str) -> dict:
        with self.raw.cursor() as cursor:
            cursor.execute(f"SHOW CREATE {kind} {quote_name(database)}.{quote_name(name)}")
            columns = [column[0] for column in cursor.description]
            return dict(zip(columns, cursor.fetchone()))

    def _read_restored_objects(self) -> None:
        """Read the definitions of what cannot move from the scratch database; stop its events firing there."""
        scratch = self.scratch
        self.sql(f"USE {quote_name(scratch)}")  # SHOW CREATE VIEW leaves the current database's name out
        self.tables = [name for (name,) in self.sql(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE <> 'VIEW' "
            "ORDER BY TABLE_NAME", [scratch])]
        missing = [name for name, table in self.keep.items() if table.required and name not in self.tables]
        if missing:
            raise BackupError(_("The archive has no table %(table)s, so restoring it would erase the backup catalog; "
                                "restore it into another database.") % {"table": missing[0]})
        self.events = [
            (name, "ENABLED" if name in self.enabled_events else status, self._show_create("EVENT", scratch, name))
            for name, status in self.sql(
                "SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s ORDER BY EVENT_NAME",
                [scratch])
        ]
        self.views = [(name, self._show_create("VIEW", scratch, name)) for (name,) in self.sql(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME", [scratch])]
        self.triggers = self._triggers(scratch)
        self.routines = [(kind, name, self._show_create(kind, scratch, name)) for kind, name in self.sql(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
            "AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION') ORDER BY ROUTINE_TYPE, ROUTINE_NAME", [scratch])]
        self.sequence_defaults = self.sql(
            "SELECT c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_DEFAULT FROM information_schema.COLUMNS c "
            "JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
            "WHERE c.TABLE_SCHEMA = %s AND t.TABLE_TYPE = 'BASE TABLE' AND c.COLUMN_DEFAULT LIKE 'nextval(%%'",
            [scratch])
        # Tables with triggers cannot move to another database (ERROR 1435); the definitions are read above.
        for name, _create in self.triggers:
            self.sql(f"DROP TRIGGER {quote_name(scratch)}.{quote_name(name)}")
        self.sql("SET SESSION foreign_key_checks = 0")
        for name in self.keep:
            self.sql(f"DROP TABLE {quote_name(scratch)}.{quote_name(name)}")
        self.sql("SET SESSION foreign_key_checks = 1")
        self.tables = [name for name in self.tables if name not in self.keep]
        self.sql(f"USE {quote_name(self.live)}")

    def _triggers(self, database: str) -> list[tuple[str, dict]]:
        return [(name, self._show_create("TRIGGER", database, name)) for (name,) in self.sql(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
            "ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER", [database])]

    def _read_live_objects(self) -> None:
        live = self.live
        self.live_tables = [name for (name,) in self.sql(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE <> 'VIEW' "
            "ORDER BY TABLE_NAME", [live]) if name not in self.keep]
        self.live_views = [(name, self._show_create("VIEW", live, name)) for (name,) in self.sql(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME", [live])]
        self.live_triggers = self._triggers(live)
        self.live_routines = self.sql(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
            "AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION')", [live])
        self.live_events = [name for (name,) in self.sql(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", [live])]
        # The kept tables' foreign keys to tables that are replaced: they follow their parent to the old
        # database in the swap, and must be pointed back at the restored table afterwards.
        self.kept_keys = self.sql(
            "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, "
            "r.UPDATE_RULE, r.DELETE_RULE FROM information_schema.KEY_COLUMN_USAGE k "
            "JOIN information_schema.REFERENTIAL_CONSTRAINTS r ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA "
            "AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND r.TABLE_NAME = k.TABLE_NAME "
            # A restore that failed after its swap may have left them pointing at its old tables' database.
            "WHERE k.TABLE_SCHEMA = %s AND (k.REFERENCED_TABLE_SCHEMA = %s OR k.REFERENCED_TABLE_SCHEMA LIKE %s) "
            "ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME",
            [live, live, (self.engine._scratch_prefix() + OLD_MARK).replace("_", "\\_") + "%"])
        self.kept_keys = [key for key in self.kept_keys if key[0] in self.keep and key[3] not in self.keep]

    # The swap: one statement, all or nothing. ------------------------------------------

    def _swap(self) -> None:
        live, scratch, old = quote_name(self.live), quote_name(self.scratch), quote_name(self.old)
        self.sql(f"SET SESSION lock_wait_timeout = {self.lock_timeout}")
        self.sql(f"CREATE DATABASE {old} {self.create_database}")
        # Views cannot move to another database (ERROR 1450), tables with triggers neither (ERROR 1435):
        # the live ones are dropped just before the swap, and put back if it does not happen. Both ways
        # are written down first, for whoever takes the lock next if this process is killed: the journal
        # of the steps after the swap moves into the old tables' database with the swap itself.
        undo = [(create["Create View"], _session(create)) for _name, create in self.live_views]
        undo += [(create["SQL Original Statement"], _session(create)) for _name, create in self.live_triggers]
        self._write_steps(f"{old}.{UNDO}", undo)
        self._write_steps(f"{scratch}.{JOURNAL}", self._tail_steps())
        if self.terminate_sessions:
            self._terminate_sessions()
        renames = [f"{live}.{quote_name(name)} TO {old}.{quote_name(name)}" for name in self.live_tables]
        renames += [f"{scratch}.{quote_name(name)} TO {live}.{quote_name(name)}" for name in self.tables]
        renames.append(f"{scratch}.{JOURNAL} TO {old}.{JOURNAL}")
        try:
            for name, _create in self.live_triggers:
                self.sql(f"DROP TRIGGER {live}.{quote_name(name)}")
            for name, _create in self.live_views:
                self.sql(f"DROP VIEW {live}.{quote_name(name)}")
            self.sql("RENAME TABLE " + ", ".join(renames))
        except self.error as exc:
            with contextlib.suppress(self.error):
                _run_steps(self.raw, undo, self.error)
            if exc.args and exc.args[0] == 1205:  # lock wait timeout
                raise BackupError(
                    _("Other sessions held locks on database %(alias)r for more than %(seconds)s s, so nothing was "
                      "restored; close them or retry with --terminate-connections.")
                    % {"alias": self.engine.alias, "seconds": self.lock_timeout}
                ) from exc
            raise

    def _terminate_sessions(self) -> None:
        spare = {self.raw.thread_id(), getattr(self.engine, "_lock_connection_id", None)}
        if self.engine.connection.connection is not None:
            spare.add(self.engine.connection.connection.thread_id())
        for (session,) in self.sql(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND COMMAND <> 'Daemon'", [self.live]
        ):
            if session not in spare:
                with contextlib.suppress(self.error):  # it may have ended by itself meanwhile
                    self.sql(f"KILL CONNECTION {int(session)}")

    # After the swap: short, not atomic, journaled. ----------------------------------------

    def _tail_steps(self) -> list[tuple[str, dict]]:
        """Return the statements that follow the swap, each with the session settings it needs."""
        live = quote_name(self.live)
        steps = [(create["Create View"], _session(create)) for _name, create in self.views]
        steps += [(create["SQL Original Statement"], _session(create)) for _name, create in self.triggers]
        steps += [(f"DROP {kind} IF EXISTS {live}.{quote_name(name)}", {}) for kind, name in self.live_routines]
        steps += [(create[f"Create {kind.title()}"], _session(create)) for kind, _name, create in self.routines]
        steps += [(f"DROP EVENT IF EXISTS {live}.{quote_name(name)}", {}) for name in self.live_events]
        for name, status, create in self.events:
            steps.append((create["Create Event"], _session(create)))
            if status == "ENABLED":
                steps.append((f"ALTER EVENT {live}.{quote_name(name)} ENABLE", {}))
        scratch_prefix = f"nextval({quote_name(self.scratch)}."
        for table, column, default in self.sequence_defaults:
            default = default.replace(scratch_prefix, f"nextval({live}.")
            steps.append((f"ALTER TABLE {live}.{quote_name(table)} ALTER COLUMN {quote_name(column)} "
                          f"SET DEFAULT {default}", {}))
        for table, constraint, column, ref_table, ref_column, on_update, on_delete in self.kept_keys:
            table, column, ref_table, ref_column = map(quote_name, (table, column, ref_table, ref_column))
            # References to rows that the restored data lacks become NULL, then the key is pointed back, in
            # two statements: MariaDB refuses to drop and add a key of the same name in one (errno 121).
            # The rows were just checked, so the new key need not check them again (nor copy the table).
            steps += [
                (f"UPDATE {live}.{table} SET {column} = NULL WHERE {column} IS NOT NULL AND {column} NOT IN "
                 f"(SELECT {ref_column} FROM {live}.{ref_table})", {}),
                (f"ALTER TABLE {live}.{table} DROP FOREIGN KEY {quote_name(constraint)}", {}),
                (f"ALTER TABLE {live}.{table} ADD CONSTRAINT {quote_name(constraint)} FOREIGN KEY ({column}) "
                 f"REFERENCES {live}.{ref_table} ({ref_column}) ON UPDATE {on_update} ON DELETE {on_delete}",
                 {"foreign_key_checks": 0}),
            ]
        return steps

    def _write_steps(self, table: str, steps: list[tuple[str, dict]]) -> None:
        self.sql(f"CREATE TABLE {table} (step int PRIMARY KEY, statement longtext NOT NULL, session longtext NOT NULL)")
        with self.raw.cursor() as cursor:
            rows = [(index, statement, json.dumps(session)) for index, (statement, session) in enumerate(steps)]
            cursor.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)", rows)


def _can_set_definers(engine: MySQLEngine, raw) -> bool:
    # SUPER (or MariaDB's SET USER, MySQL's SET_USER_ID) lets a user create objects for another definer.
    rows = engine._query(
        raw,
        "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE IN "
        "('SUPER', 'SET USER', 'SET_USER_ID') AND GRANTEE = CONCAT(\"'\", SUBSTRING_INDEX(CURRENT_USER(), '@', 1), "
        "\"'@'\", SUBSTRING_INDEX(CURRENT_USER(), '@', -1), \"'\")")
    return rows[0][0] > 0


def load_dump(engine: MySQLEngine, raw, database: str, source: BinaryIO) -> set[str]:
    """Load the archive read from `source` into the empty database `database` with the client tool; return the
    names of the events it creates disabled that were enabled. Raise BackupError when the client fails or the
    archive is cut (no "-- Dump completed" line); what was loaded stays, for the caller to drop."""
    rewrite_definers = not _can_set_definers(engine, raw)
    client = engine._tool(raw, "mariadb", "mysql")
    # Without this, the mariadb client echoes the failing statement (rows of data) to stderr.
    options = ["--skip-print-query-on-error"] if client == "mariadb" else []
    args, env = engine._command(client, options, database)
    errors: list[BaseException] = []
    enabled_events: set[str] = set()
    with tool_process(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as process:
        feeder = threading.Thread(
            target=feed_tool, args=(_rewritten(source, rewrite_definers, enabled_events), process.stdin, errors)
        )
        feeder.start()
        try:
            feeder.join()
        except BaseException:
            process.kill()
            raise
        if process.wait() != 0:
            raise BackupError(
                _("The restore failed before it changed anything, the database is unchanged: %(reason)s.")
                % {"reason": first_error_line(process.stderr_text())}
            )
    if errors:
        if isinstance(errors[0], BackupError):
            raise BackupError(_("%(reason)s Nothing was restored, the database is unchanged.")
                              % {"reason": errors[0]}) from errors[0]
        raise BackupError(
            _("The archive could not be read (%(reason)s); it is corrupt or truncated.") % {"reason": errors[0]}
        ) from errors[0]
    if rewrite_definers:
        engine.warnings.append(
            _("The user of database %(alias)r may not create objects for other users, so the restored views, "
              "triggers, routines and events now belong to it (DEFINER=CURRENT_USER).")
            % {"alias": engine.alias}
        )
        logger.warning(engine.warnings[-1])
    return enabled_events


def _rewritten(source: BinaryIO, rewrite_definers: bool, enabled_events: set[str]) -> Iterator[bytes]:
    """Yield the archive's lines, the few statement lines that need it rewritten for the scratch database."""
    for line in _checked_lines(source):
        if not line.startswith((b"(", b"INSERT INTO ")):
            event = EVENT_ENABLED.match(line)
            if event:
                # Created disabled, so that it never runs in the scratch database; enabled once in place.
                enabled_events.add(event.group(2).replace(b"``", b"`").decode())
                line = event.group(1) + b"DISABLE" + line[event.end():]
            if line.startswith(b"  `") and b"nextval(`" in line:
                # A sequence default names the dump's database; inside the scratch one, name none.
                line = SEQUENCE_DEFAULT.sub("nextval(", line.decode()).encode()
            if rewrite_definers and b"DEFINER=" in line:
                line = DEFINER.sub(b"DEFINER=CURRENT_USER", line)
        yield line
