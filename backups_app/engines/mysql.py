"""MariaDB and MySQL: `mariadb-dump` (or `mysqldump`) SQL out; a scratch database and one RENAME TABLE back.

MariaDB DDL is not transactional, so the restore leaves the live database alone until the very end.
It loads the archive into a scratch database `<db>__r<token>` on the same server, checks that the
archive ended with mariadb-dump's trailer, and reads back from the scratch database the definitions
of its views, triggers, routines and events. Then one `RENAME TABLE` statement, atomic across
databases, moves every live table to `<db>__o<token>` and every restored one into the live
database (views and tables with triggers cannot move: the live ones are dropped just before). After
it come short, non-atomic steps: views, triggers, routines and events are replaced, defaults that
name a sequence are pointed at the live database, the kept catalog's foreign keys are pointed back
at the restored tables, and both scratch databases are dropped.

Every step after the swap is written down first, in a journal that the RENAME itself moves into
`<db>__o<token>`, and so are the live views and triggers dropped before it: whoever takes the
database's lock next (any backup or restore) finishes the steps of a restore killed after its swap,
or puts back what one killed before it dropped. A step that fails raises RestoreIncomplete, and
the caller puts the safety backup back.

The kept tables (the backup catalog) never move: the archive's copies are dropped in the scratch
database, so every row written to the catalog during the restore stays.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import subprocess
import threading
from typing import BinaryIO, Iterator, Sequence

from django.db import DatabaseError
from django.db.backends.mysql.client import DatabaseClient
from django.utils.translation import gettext as _

from ..errors import BackupError, DatabaseBusy
from . import CHUNK_SIZE, Engine, KeptTable, ServerInfo, tool_environment, tool_process

logger = logging.getLogger(__name__)

TRAILER = b"-- Dump completed"
# A restore's scratch databases: "<live>__r<token>" receives the archive, "<live>__o<token>" the old tables.
SCRATCH_MARK = "__r"
OLD_MARK = "__o"
# In the old tables' database: the statements still to run after the swap, which moves the journal there
# (see _finish), and those that put back the live views and triggers dropped just before it.
JOURNAL = "`backups_restore_journal`"
UNDO = "`backups_restore_undo`"
DEFINER = re.compile(rb"DEFINER=`(?:[^`]|``)*`@`(?:[^`]|``)*`")
OTHER_DATABASE = re.compile(rb"(?:/\*!\d+ )?(?:USE|CREATE DATABASE|DROP DATABASE|CREATE SCHEMA|DROP SCHEMA)\b", re.I)
# An enabled event's CREATE line in a dump: its name, and its status keyword (after ON COMPLETION, before DO).
EVENT_ENABLED = re.compile(
    rb"(/\*!50106 CREATE\*/ .*?EVENT `((?:[^`]|``)+)` (?:(?! DO ).)*? ON COMPLETION (?:NOT )?PRESERVE )ENABLE\b"
)
SEQUENCE_DEFAULT = re.compile(r"nextval\(`(?:[^`]|``)*`\.")


def quote_name(name: str) -> str:
    return "`%s`" % name.replace("`", "``")


def first_error_line(stderr: str) -> str:
    """Return the line of a client tool's stderr that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        match = re.search(r"(ERROR \d+.*|Got error: .*|error: .*)", line)
        if match:
            return match.group(1).strip()
    return lines[0] if lines else _("no error message")


class _ReadAhead:
    """Read a tool's output in a thread, so that it keeps dumping while the caller compresses; keep its tail.

    Without it mariadb-dump waits on a full pipe while each chunk is compressed, and a backup takes
    the sum of the two times instead of the longer one. At most `depth` chunks are held.
    """

    def __init__(self, source: BinaryIO, depth: int = 8):
        self.chunks: queue.Queue = queue.Queue(maxsize=depth)
        self.tail = b""
        self.error: BaseException | None = None
        self.buffer = b""
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._pump, args=(source,), daemon=True)
        self.thread.start()

    def _pump(self, source: BinaryIO) -> None:
        try:
            for chunk in iter(lambda: source.read(CHUNK_SIZE), b""):
                while not self.stopped.is_set():
                    with contextlib.suppress(queue.Full):
                        self.chunks.put(chunk, timeout=0.1)
                        break
                if self.stopped.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 (raised in the reading thread by read())
            self.error = exc
        self.chunks.put(b"")

    def read(self, size: int = -1) -> bytes:
        while not self.buffer:
            chunk = self.chunks.get()
            if not chunk:
                self.chunks.put(b"")  # every later read sees the end too
                if self.error:
                    raise self.error
                return b""
            self.tail = (self.tail + chunk[-64:])[-64:]
            self.buffer = chunk
        size = len(self.buffer) if size is None or size < 0 else size
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()


class MySQLEngine(Engine):
    name = "mysql"
    suffix = "sql"
    # mariadb-dump starts with a sandbox comment, then "-- MariaDB dump"; mysqldump with "-- MySQL dump".
    magic = b"/*M!999999\\- enable the sandbox mode */"
    other_magics = (b"-- MariaDB dump", b"-- MySQL dump")

    @classmethod
    def recognises(cls, header: bytes) -> bool:
        return header.startswith((cls.magic, *cls.other_magics))

    @property
    def database(self) -> str:
        options = self.connection.settings_dict["OPTIONS"]
        return options.get("database", options.get("db", self.connection.settings_dict["NAME"]))

    def _connect(self, database: str | None = None):
        params = {**self.connection.get_connection_params(), "autocommit": True, "charset": "utf8mb4"}
        params.pop("db", None)
        params["database"] = database or self.database
        try:
            return self.connection.Database.connect(**params)
        except (DatabaseError, self.connection.Database.Error) as exc:
            raise BackupError(
                _("Cannot connect to database %(alias)r: %(reason)s. Check that the server is running and the URL "
                  "is right.") % {"alias": self.alias, "reason": str(exc).strip().splitlines()[0]}
            ) from exc

    def _is_mariadb(self, raw) -> bool:
        return "mariadb" in self._query(raw, "SELECT VERSION()")[0][0].lower()

    @staticmethod
    def _query(raw, sql: str, params=None) -> list[tuple]:
        with raw.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def _command(self, tool: str, options: list[str], database: str) -> tuple[list[str], dict[str, str]]:
        """Return argv and environment for a client tool; the password travels only in MYSQL_PWD."""
        settings_dict = {**self.connection.settings_dict, "NAME": ""}
        settings_dict["OPTIONS"] = {
            k: v for k, v in settings_dict["OPTIONS"].items() if k not in ("database", "db", "charset")
        }
        args, env = DatabaseClient.settings_to_cmd_args_env(settings_dict, [])
        # A --defaults-file option must come first, which settings_to_cmd_args_env already ensures.
        # tool_process() puts it over the minimal environment of client tools.
        return [tool, *args[1:], "--default-character-set=utf8mb4", *options, database], env or {}

    def identity(self) -> tuple:
        # The server instance (its host and data directory) and the database's name in it.
        raw = self._connect()
        try:
            return self._query(raw, "SELECT @@hostname, @@datadir, @@port, DATABASE()")[0]
        finally:
            raw.close()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        raw = self._connect()
        name = self._lock_name()
        try:
            try:
                (acquired,) = self._query(raw, "SELECT GET_LOCK(%s, 0)", [name])[0]
            except self.connection.Database.Error as exc:
                raise BackupError(_("Cannot take the lock of database %(alias)r: %(reason)s.")
                                  % {"alias": self.alias, "reason": first_error_line(str(exc))}) from exc
            if not acquired:
                raise DatabaseBusy(self.alias)
            try:
                self._lock_connection_id = raw.thread_id()
                # Whoever holds the lock may clean up after a restore that was stopped.
                self._drop_scratch_databases(raw)
                yield
            finally:
                # Released by a statement, not only by closing: the server ends a closed session a moment
                # later, and an operation started right after this one would find the lock still taken.
                with contextlib.suppress(self.connection.Database.Error):
                    self._query(raw, "SELECT RELEASE_LOCK(%s)", [name])
        finally:
            raw.close()

    def _lock_name(self) -> str:
        # Named locks are server-wide, so the name carries the database's; MySQL caps it at 64 characters.
        return f"django-backups:{self.database}"[:64]

    def lock_is_free(self) -> bool:
        # Not lock(): whoever takes the lock also finishes a stopped restore, which a probe must not do.
        raw = self._connect()
        try:
            return bool(self._query(raw, "SELECT IS_FREE_LOCK(%s)", [self._lock_name()])[0][0])
        except self.connection.Database.Error as exc:
            raise BackupError(_("Cannot read the lock of database %(alias)r: %(reason)s.")
                              % {"alias": self.alias, "reason": first_error_line(str(exc))}) from exc
        finally:
            raw.close()

    def _tool(self, raw, mariadb: str, mysql: str) -> str:
        return mariadb if self._is_mariadb(raw) else mysql

    def describe(self) -> ServerInfo:
        raw = self._connect()
        try:
            server_version = self._query(raw, "SELECT VERSION()")[0][0]
            mariadb = "mariadb" in server_version.lower()
            tool = "mariadb-dump" if mariadb else "mysqldump"
            if mariadb:
                self._check_routines_readable(raw)
        finally:
            raw.close()
        try:
            output = subprocess.run(
                [tool, "--version"], env=tool_environment(), capture_output=True, text=True, check=True
            ).stdout
        except FileNotFoundError as exc:
            raise BackupError(
                _("%(tool)s is not installed or not on PATH; install the MariaDB or MySQL client tools.")
                % {"tool": tool}
            ) from exc
        return ServerInfo(server_version=server_version, tool_version=output.strip()[:100])

    def _check_routines_readable(self, raw) -> None:
        # Without SELECT on mysql.proc, mariadb-dump --routines leaves routines out and still exits 0.
        try:
            self._query(raw, "SELECT 1 FROM mysql.proc LIMIT 0")
        except self.connection.Database.Error as exc:
            raise BackupError(
                _("The user of database %(alias)r cannot read mysql.proc, so mariadb-dump would silently leave out "
                  "its stored procedures and functions; grant it SELECT ON mysql.proc.") % {"alias": self.alias}
            ) from exc

    def _warn_about_tables_outside_the_snapshot(self, raw) -> None:
        tables = self._query(
            raw,
            "SELECT CONCAT(TABLE_NAME, ' (', ENGINE, ')') FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' AND ENGINE NOT IN ('InnoDB') "
            "ORDER BY TABLE_NAME",
        )
        if tables:
            self.warnings.append(
                _("Database %(alias)r has tables that the consistent snapshot does not cover (only InnoDB tables are "
                  "dumped as of one instant): %(tables)s.")
                % {"alias": self.alias, "tables": ", ".join(row[0] for row in tables)}
            )
            logger.warning(self.warnings[-1])

    @contextlib.contextmanager
    def dump(self) -> Iterator[BinaryIO]:
        # mariadb-dump has no lock wait option: with --single-transaction it takes no table lock, and
        # waits only for DDL running on a table it reads.
        raw = self._connect()
        try:
            tool = self._tool(raw, "mariadb-dump", "mysqldump")
            self._warn_about_tables_outside_the_snapshot(raw)
        finally:
            raw.close()
        args, env = self._command(tool, [
            "--single-transaction", "--routines", "--triggers", "--events", "--hex-blob", "--quick",
            # No CREATE DATABASE/USE (--databases is not given), so the archive loads into any database.
            "--skip-lock-tables", "--skip-add-locks", "--tz-utc", "--no-tablespaces", "--skip-dump-date",
        ], self.database)
        with tool_process(args, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) as process:
            watcher = _ReadAhead(process.stdout)
            try:
                yield watcher
            except BaseException:
                process.kill()  # the caller gave up (full disk, interrupted): the reading thread sees the end
                raise
            finally:
                watcher.close()
                process.stdout.close()
            if process.wait() != 0:
                raise BackupError(_("%(tool)s failed: %(reason)s.")
                                  % {"tool": tool, "reason": first_error_line(process.stderr_text())})
            if not watcher.tail.rstrip().endswith(TRAILER):
                raise BackupError(_("%(tool)s stopped before the end of the dump (no \"-- Dump completed\" line); "
                                    "check the server's log and retry.") % {"tool": tool})

    @classmethod
    def archive_tables(cls, source: BinaryIO) -> list[str]:
        tables = []
        for line in _lines(source):
            # Sequences are tables to MariaDB (and RENAME TABLE moves them), so they are listed too.
            match = re.match(rb"CREATE (?:TABLE `((?:[^`]|``)+)` \($|SEQUENCE `((?:[^`]|``)+)` )", line)
            if match:
                name = match.group(1) or match.group(2)
                tables.append(name.replace(b"``", b"`").decode("utf-8", "replace"))
        return sorted(tables)

    @classmethod
    def check_archive(cls, source: BinaryIO) -> None:
        """Read the whole archive as a restore would, writing nothing: it must end with the dump's trailer."""
        for _line in _checked_lines(source):
            pass

    # Restore ---------------------------------------------------------------------------

    def _drop_scratch_databases(self, raw) -> None:
        """Drop the scratch databases of restores that were stopped (the lock is held, so none runs)."""
        scratch = re.compile(re.escape(self._scratch_prefix() + SCRATCH_MARK) + "[0-9a-f]{8}")
        old = re.compile(re.escape(self._scratch_prefix() + OLD_MARK) + "[0-9a-f]{8}")
        for (name,) in self._query(raw, "SHOW DATABASES"):
            if scratch.fullmatch(name):  # (finishing a restore below drops its scratch database too)
                self._query(raw, f"DROP DATABASE IF EXISTS {quote_name(name)}")
            elif old.fullmatch(name):
                self._finish_interrupted_restore(raw, name)

    def _finish_interrupted_restore(self, raw, old: str) -> None:
        """Finish the restore that made `old` and was killed: the steps after its swap if it happened, else
        put back the views and triggers it dropped just before."""
        tables = {name for (name,) in self._query(
            raw, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", [old])}
        if JOURNAL.strip("`") in tables or (UNDO.strip("`") in tables and len(tables) == 1):
            steps_table = JOURNAL if JOURNAL.strip("`") in tables else UNDO
            try:
                _finish(raw, old, self.connection.Database.Error, steps_table)
                if steps_table == JOURNAL:
                    message = _("Finished the restore of database %(alias)r that was stopped after its tables were "
                                "swapped in.")
                else:
                    message = _("Put back the views and triggers of database %(alias)r that a restore stopped "
                                "before its swap had dropped.")
                logger.warning(message % {"alias": self.alias})
                return
            except self.connection.Database.Error as exc:
                reason = exc.args[-1] if exc.args else exc
        else:
            reason = _("its safety backup was put back")
        # Only a person can tell whether the tables the database had before are still wanted.
        logger.warning(
            _("Database %(old)s holds the tables database %(alias)r had before a restore that did not finish "
              "(%(reason)s); drop it once the database is known to be right.")
            % {"old": old, "alias": self.alias, "reason": reason}
        )

    # Restore into a new database (drills, restore --into) --------------------------------

    @property
    def database_name(self) -> str:
        return self.database

    def on_database(self, name: str) -> Engine:
        settings_dict = {**self.connection.settings_dict, "NAME": name}
        settings_dict["OPTIONS"] = {k: v for k, v in settings_dict["OPTIONS"].items() if k not in ("database", "db")}
        label = f"{self.alias}\u2192{name}"
        return type(self)(label, connection=type(self.connection)(settings_dict, alias=label))

    def restore_into_new(self, archive_path: str, name: str, *, jobs: int = 1, tables: Sequence[str] = ()) -> Engine:
        """Create database `name` (this database's character set and collation) and load the archive into it with
        the client tool, as the restore loads its scratch database; on any failure it is dropped again."""
        from .mysql_restore import load_dump  # it builds on this module's helpers

        if tables:
            raise BackupError(_("A MariaDB/MySQL backup is restored into a new database whole; --table is for "
                                "PostgreSQL."))
        raw = self._connect()
        try:
            rows = self._query(raw, "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM "
                                    "information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", [self.database])
            properties = "CHARACTER SET %s COLLATE %s" % rows[0] if rows else ""
            try:
                self._query(raw, f"CREATE DATABASE {quote_name(name)} {properties}")
            except self.connection.Database.Error as exc:
                if exc.args and exc.args[0] == 1007:  # database exists
                    raise BackupError(_("Database %(name)s already exists on the server; choose a name that is not "
                                        "taken.") % {"name": name}) from exc
                raise BackupError(_("Cannot create database %(name)s: %(reason)s.")
                                  % {"name": name, "reason": first_error_line(str(exc))}) from exc
            new = self.on_database(name)
            try:
                with open(archive_path, "rb") as source:
                    load_dump(self, raw, name, source)
            except BaseException:
                new.drop_database()
                raise
        finally:
            raw.close()
        return new

    def drop_database(self) -> None:
        self._refuse_dropping_a_configured_database()
        self.connection.close()
        raw = self._connect("information_schema")
        try:
            self._query(raw, f"DROP DATABASE IF EXISTS {quote_name(self.database)}")
        finally:
            raw.close()

    @classmethod
    def archive_row_counts(cls, archive_path: str) -> dict[str, int]:
        """Return the rows the archive holds for each table with data, counted from its INSERT statements'
        value tuples (a sequence holds one row)."""
        with open(archive_path, "rb") as source:
            return count_rows(source)

    quote = staticmethod(quote_name)

    def _table_names(self, cursor) -> set[str]:
        cursor.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                       "AND TABLE_TYPE <> 'VIEW'", [self.database])
        return {name for (name,) in cursor.fetchall()}

    def _scratch_prefix(self) -> str:
        return self.database[:40]

    def restore(
        self, source: BinaryIO, *, keep: list[KeptTable], lock_timeout: int, terminate_sessions: bool
    ) -> None:
        from .mysql_restore import SwapRestore  # it builds on this module's helpers

        SwapRestore(self, keep=keep, lock_timeout=lock_timeout, terminate_sessions=terminate_sessions).run(source)
        self.connection.close()


def _lines(source: BinaryIO) -> Iterator[bytes]:
    """Yield the lines of a stream, each with its newline; a long line (a big BLOB) is joined only once."""
    pending: list[bytes] = []
    for chunk in iter(lambda: source.read(CHUNK_SIZE), b""):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            pending.append(chunk[start:end + 1])
            yield b"".join(pending)
            pending, start = [], end + 1
        pending.append(chunk[start:])
    if any(pending):
        yield b"".join(pending)


# In an archive: the start of a data statement (its table, its column list with --complete-insert), a sequence.
INSERT_HEADER = re.compile(rb"INSERT (?:IGNORE )?INTO `((?:[^`]|``)+)`(?: \((?:[^`)]|`(?:[^`]|``)*`)*\))? VALUES\s")
CREATE_SEQUENCE = re.compile(rb"CREATE SEQUENCE `((?:[^`]|``)+)` ")
VALUES_TOKEN = re.compile(rb"[()';]")  # what matters in a VALUES list outside strings
STRING_TOKEN = re.compile(rb"[\\']")  # inside a '...' string: its end, or an escape
HEADER_LIMIT = 1 << 20


def count_rows(source: BinaryIO) -> dict[str, int]:
    """Count the rows of each table in a mariadb-dump/mysqldump stream: the value tuples of its INSERT statements.

    A small tokenizer, reading chunk by chunk (memory bounded by a chunk and an INSERT's header): strings may
    hold `),(`, quotes (doubled or escaped), backslashes and newlines; statements in DELIMITER blocks
    (routines, triggers, events) are not data. A sequence counts as its one row.
    """
    LINE, SKIP, VALUES, STRING = range(4)
    counts: dict[str, int] = {}
    mode, depth, table, in_block = LINE, 0, "", False
    buffer, position, end_of_file = b"", 0, False
    while not end_of_file:
        chunk = source.read(CHUNK_SIZE)
        end_of_file = not chunk
        buffer, position = buffer[position:] + chunk, 0
        while position < len(buffer):
            if mode == LINE:
                newline = buffer.find(b"\n", position)
                if newline < 0 and not end_of_file and len(buffer) - position < HEADER_LIMIT:
                    break  # the line's start is needed whole
                line = buffer[position:newline if newline >= 0 else len(buffer)]
                header = None if in_block else INSERT_HEADER.match(buffer, position)
                if header:
                    table = header.group(1).replace(b"``", b"`").decode("utf-8", "replace")
                    counts.setdefault(table, 0)
                    mode, depth, position = VALUES, 0, header.end()
                    continue
                if line.startswith(b"DELIMITER "):
                    in_block = line.rstrip() != b"DELIMITER ;"
                elif not in_block and (sequence := CREATE_SEQUENCE.match(line)):
                    counts[sequence.group(1).replace(b"``", b"`").decode("utf-8", "replace")] = 1
                mode = SKIP
            elif mode == SKIP:
                newline = buffer.find(b"\n", position)
                if newline < 0:
                    position = len(buffer)
                    break
                mode, position = LINE, newline + 1
            elif mode == STRING:
                token = STRING_TOKEN.search(buffer, position)
                if token is None:
                    position = len(buffer)
                    break
                if token[0] == b"'":
                    mode, position = VALUES, token.end()
                elif token.end() < len(buffer):
                    position = token.end() + 1  # the escaped byte
                else:
                    position = token.start()  # the escaped byte is in the next chunk
                    break
            else:
                token = VALUES_TOKEN.search(buffer, position)
                if token is None:
                    position = len(buffer)
                    break
                position = token.end()
                if token[0] == b"'":
                    mode = STRING
                elif token[0] == b"(":
                    if depth == 0:
                        counts[table] += 1
                    depth += 1
                elif token[0] == b")":
                    depth -= 1
                elif depth == 0:  # the statement's ";"
                    mode = SKIP
    if mode in (VALUES, STRING):
        raise BackupError(_("The archive ends inside the data of table %(table)s: it is truncated.") % {"table": table})
    return counts


def _checked_lines(source: BinaryIO) -> Iterator[bytes]:
    """Yield an archive's lines; raise BackupError when it switches database or ends before its trailer."""
    last = b""
    for line in _lines(source):
        if not line.startswith((b"(", b"INSERT INTO ")) and OTHER_DATABASE.match(line):
            # Only in a dump made elsewhere: it would make the client write outside the scratch database.
            raise BackupError(_("The archive switches to or creates another database (%(line)s); only dumps of "
                                "one database, made without --databases, can be restored.")
                              % {"line": line[:60].decode("utf-8", "replace").strip()})
        if line.strip():
            last = line
        yield line
    if last.rstrip() != TRAILER:
        # The client exits 0 on a dump cut at a statement boundary: only the trailer proves it is whole.
        raise BackupError(_("The archive ends before its \"-- Dump completed\" line: it is truncated."))


def _session(create: dict) -> dict:
    """Return the session settings a SHOW CREATE row says its object was created under."""
    keys = ("sql_mode", "time_zone", "character_set_client", "collation_connection")
    return {key: create[key] for key in keys if create.get(key) is not None}


def _execute(raw, statement: str, session: dict) -> None:
    """Run a statement under the given session settings, then put the session back as it was."""
    with raw.cursor() as cursor:
        cursor.execute("SELECT @@sql_mode, @@time_zone, @@character_set_client, @@collation_connection, "
                       "@@foreign_key_checks")
        saved = cursor.fetchone()
        try:
            for key, value in session.items():
                cursor.execute(f"SET SESSION {key} = %s", [value])
            cursor.execute(statement)
        finally:
            cursor.execute("SET SESSION sql_mode = %s, time_zone = %s, character_set_client = %s, "
                           "collation_connection = %s, foreign_key_checks = %s", saved)


def _already_done(exc: Exception) -> bool:
    """Whether a step failed only because an earlier, interrupted run of it had succeeded."""
    code, message = (exc.args + (0, ""))[:2]
    # Table or view, procedure or function, trigger, event exists; key to drop is gone; key to add exists.
    return code in (1050, 1304, 1359, 1537, 1091, 1826) or (code == 1005 and "errno: 121" in str(message))


def _run_steps(raw, steps: list[tuple[str, dict]], error: type[Exception], done=None) -> None:
    """Run steps in order; a step that fails (a view over a view not made yet) is retried after the others,
    as long as each pass makes progress. `done(index)` is called after each one that succeeded."""
    pending = list(enumerate(steps))
    while pending:
        failed, last_error = [], None
        for index, (statement, session) in pending:
            try:
                _execute(raw, statement, session)
            except error as exc:
                if not _already_done(exc):
                    failed.append((index, (statement, session)))
                    last_error = exc
                    continue
            if done:
                done(index)
        if len(failed) == len(pending):
            raise last_error
        pending = failed


def _finish(raw, old: str, error: type[Exception], steps_table: str = JOURNAL) -> None:
    """Run the written-down steps that are not done yet (after the swap: the journal; when it did not happen:
    the undo of the drops before it), then drop the restore's scratch databases."""
    journal = f"{quote_name(old)}.{steps_table}"
    with raw.cursor() as cursor:
        cursor.execute(f"SELECT step, statement, session FROM {journal} ORDER BY step")
        rows = cursor.fetchall()
    steps = [(statement, json.loads(session)) for _step, statement, session in rows]

    def done(index: int) -> None:
        with raw.cursor() as cursor:
            cursor.execute(f"DELETE FROM {journal} WHERE step = %s", [rows[index][0]])

    _run_steps(raw, steps, error, done)
    with raw.cursor() as cursor:
        cursor.execute("SET SESSION foreign_key_checks = 0")
        for database in (old, old.replace(OLD_MARK, SCRATCH_MARK, 1)):
            cursor.execute(f"DROP DATABASE IF EXISTS {quote_name(database)}")
        cursor.execute("SET SESSION foreign_key_checks = 1")
