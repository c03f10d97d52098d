"""Database-specific work behind one small interface: dump to a stream, restore from a stream, describe.

Adding an engine means adding a module with an `Engine` subclass and listing it in `ENGINES`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator, Sequence

from django.db import connections
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from ..errors import BackupError, DatabaseBusy

# Django's connection.vendor -> the engine class that handles it.
ENGINES = {
    "postgresql": "backups_app.engines.postgresql.PostgreSQLEngine",
    "sqlite": "backups_app.engines.sqlite.SQLiteEngine",
    "mysql": "backups_app.engines.mysql.MySQLEngine",
}

CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class KeptTable:
    """A table whose current rows survive a restore (the backup catalog itself).

    `outside_refs` maps a foreign-key column to the (table, column) it points to outside the
    kept tables: after the restore, references to rows that the restored data lacks become NULL.
    An archive without a `required` table is refused; one without another kept table (older than
    it) is restored, and the table is left to `migrate`.
    """

    name: str
    pk_column: str
    outside_refs: dict[str, tuple[str, str]] = field(default_factory=dict)
    required: bool = True


@dataclass(frozen=True)
class ServerInfo:
    server_version: str
    tool_version: str


class Engine:
    """Back up and restore one configured database alias."""

    name: str = ""
    # The file name suffix of an uncompressed archive, and the bytes it starts with.
    suffix: str = ""
    magic: bytes = b""

    def __init__(self, alias: str, connection=None):
        self.alias = alias
        # A configured alias's connection, or a private one to another database (see on_database()).
        self.connection = connection if connection is not None else connections[alias]
        # What the person should know about an operation that still succeeded; recorded on its job.
        self.warnings: list[str] = []

    @classmethod
    def recognises(cls, header: bytes) -> bool:
        """Return whether an uncompressed archive starting with `header` is one of this engine's."""
        return header.startswith(cls.magic)

    def describe(self) -> ServerInfo:
        """Return the server and tool versions; raise BackupError when a backup cannot run."""
        raise NotImplementedError

    def identity(self) -> tuple:
        """Return what tells this database apart from every other, whatever alias or address names it."""
        raise NotImplementedError

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the one-operation-at-a-time lock of this database; raise DatabaseBusy at once if taken."""
        raise NotImplementedError

    def lock_is_free(self) -> bool:
        """Return whether no operation holds this database's lock now, changing nothing (monitoring asks)."""
        try:
            with self.lock():
                return True
        except DatabaseBusy:
            return False

    def recover_interrupted_restore(self) -> None:
        """Undo what a restore killed half-way left behind; called by whoever has just taken the lock."""

    def dump(self) -> contextlib.AbstractContextManager[BinaryIO]:
        """Yield the uncompressed archive as a stream; raise BackupError on leaving if the dump failed."""
        raise NotImplementedError

    def restore(
        self, source: BinaryIO, *, keep: list[KeptTable], lock_timeout: int, terminate_sessions: bool
    ) -> None:
        """Replace the database's content with the archive read from `source`, all or nothing."""
        raise NotImplementedError

    @property
    def database_name(self) -> str:
        """Return the name of this engine's database (SQLite: its file's path)."""
        return str(self.connection.settings_dict["NAME"])

    def on_database(self, name: str) -> Engine:
        """Return an engine for database `name` on this engine's server (SQLite: the file `name`).

        Its connection is private (not in django.db.connections); its alias is only a label.
        """
        settings_dict = {**self.connection.settings_dict, "NAME": name}
        label = f"{self.alias}\u2192{name}"
        return type(self)(label, connection=type(self.connection)(settings_dict, alias=label))

    def restore_into_new(
        self, archive_path: str, name: str, *, jobs: int = 1, tables: Sequence[str] = ()
    ) -> Engine:
        """Create database `name` on this server from the plain archive file `archive_path`; return its engine.

        Nothing existing is touched: a `name` that exists is refused, and on any failure what was
        created is dropped. `tables` ("schema.table") restores only those tables, with their indexes
        and constraints.
        """
        raise BackupError(_("The %(engine)s engine cannot restore into a new database.") % {"engine": self.name})

    def drop_database(self) -> None:
        """Drop the database of an engine returned by restore_into_new() or on_database()."""
        raise NotImplementedError

    def table_row_counts(self, tables: list[str]) -> dict[str, int | None]:
        """Return each table's rows in this database; None for a missing one."""
        counts: dict[str, int | None] = {}
        with self.connection.cursor() as cursor:
            present = self._table_names(cursor)
            for table in tables:
                if table not in present:
                    counts[table] = None
                    continue
                cursor.execute(f"SELECT COUNT(*) FROM {self.quote(table)}")
                counts[table] = cursor.fetchone()[0]
        return counts

    def _table_names(self, cursor) -> set[str]:
        """Return the names of the tables (not views) in this database, as table_row_counts() takes them."""
        raise NotImplementedError

    @staticmethod
    def quote(name: str) -> str:
        """Quote an identifier for this engine's SQL."""
        return quote_ident(name)

    def _refuse_dropping_a_configured_database(self) -> None:
        for alias in connections.settings:
            settings_dict = connections[alias].settings_dict
            if (settings_dict.get("NAME") == self.database_name and settings_dict.get("HOST") == self.connection.settings_dict.get("HOST")
                    and settings_dict.get("PORT") == self.connection.settings_dict.get("PORT")):
                raise BackupError(_("Database %(name)s is configured as %(alias)r; it is not dropped.")
                                  % {"name": self.database_name, "alias": alias})

    @classmethod
    def archive_tables(cls, source: BinaryIO) -> list[str]:
        """Return the names of the tables in the archive read from `source` (no database needed)."""
        raise NotImplementedError

    @classmethod
    def check_archive(cls, source: BinaryIO) -> None:
        """Read the whole archive from `source` as a restore would, writing nothing anywhere.

        Raise BackupError saying what is wrong with the archive; errors reading `source` propagate.
        """
        raise NotImplementedError


def get_engine(alias: str) -> Engine:
    """Return the engine for a configured database alias, or raise BackupError saying what is wrong."""
    if alias not in connections.settings:
        raise BackupError(
            _("Unknown database %(alias)r: the configured databases are %(aliases)s.")
            % {"alias": alias, "aliases": ", ".join(connections.settings)}
        )
    vendor = connections[alias].vendor
    if vendor not in ENGINES:
        raise BackupError(
            _("Database %(alias)r uses the %(vendor)s engine, which cannot be backed up; supported engines: %(engines)s.")
            % {"alias": alias, "vendor": vendor, "engines": ", ".join(ENGINES)}
        )
    return engine_class(vendor)(alias)


def engine_class(name: str) -> type[Engine]:
    """Return the engine class of an engine name as a catalog records it ("postgresql", "sqlite", "mysql")."""
    if name not in ENGINES:
        raise BackupError(_("Unknown engine %(name)r; supported engines: %(engines)s.")
                          % {"name": name, "engines": ", ".join(ENGINES)})
    return import_string(ENGINES[name])


def engine_for_archive(header: bytes) -> str | None:
    """Return the name of the engine whose archives start with `header`, if any."""
    for name in ENGINES:
        if engine_class(name).recognises(header):
            return name
    return None


def quote_ident(name: str) -> str:
    """Quote an SQL identifier the same way for PostgreSQL and SQLite."""
    return '"%s"' % name.replace('"', '""')


def chunks_of(source: BinaryIO) -> Iterator[bytes]:
    return iter(lambda: source.read(CHUNK_SIZE), b"")


def copy_stream(source: BinaryIO, target: BinaryIO) -> None:
    for chunk in chunks_of(source):
        target.write(chunk)


def feed_tool(chunks: Iterable[bytes], target: BinaryIO, errors: list[BaseException]) -> None:
    """Write `chunks` into a tool's stdin (in a thread) and close it; record read errors, ignore a tool
    that stopped early (its exit status says why)."""
    try:
        for chunk in chunks:
            target.write(chunk)
    except BrokenPipeError:
        pass
    except BaseException as exc:  # noqa: BLE001 (reported by the caller, after the tool exits)
        errors.append(exc)
    finally:
        with contextlib.suppress(OSError):
            target.close()


class RereadableHead:
    """Let the start of an archive stream (its table of contents) be read again; the rest is read once."""

    def __init__(self, source: BinaryIO):
        self._source = source
        self._head = bytearray()

    def reader(self, *, keep: bool) -> BinaryIO:
        """Return a stream from the start; with `keep`, what it reads past the kept head is kept too."""
        return _HeadReader(self, keep)


class _HeadReader:
    def __init__(self, owner: RereadableHead, keep: bool):
        self._owner, self._keep, self._position = owner, keep, 0

    def read(self, size: int = -1) -> bytes:
        head = self._owner._head
        if self._position < len(head):
            end = len(head) if size < 0 else self._position + size
            chunk = bytes(head[self._position:end])
            self._position += len(chunk)
            return chunk
        chunk = self._owner._source.read(size)
        if self._keep:
            head += chunk
            self._position += len(chunk)
        return chunk


def _die_with_parent() -> None:
    """Have the kernel kill the tool if the process that runs it is killed (prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def tool_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment of an external tool: `extra` over what any client tool needs from ours.

    That is where programs are, the locale and time zone, the home directory (~/.pgpass, certificates)
    and libpq's own PG* settings, which this process's connections obey too. Not the application's
    secrets: DJANGO_SECRET_KEY, the other databases' URLs and passwords.
    """
    needed = {
        name: value
        for name, value in os.environ.items()
        if name in ("PATH", "HOME", "TZ", "LANG", "LANGUAGE") or name.startswith(("LC_", "PG"))
    }
    return {**needed, **(extra or {})}


@contextlib.contextmanager
def tool_process(args: list[str], *, env: dict[str, str] | None = None, **popen_kwargs) -> Iterator[subprocess.Popen]:
    """Run an external tool with its stderr captured in a temporary file; never leave it running.

    The tool's environment is `env` over tool_environment(). The caller reads `process.stderr_text()`
    after it exits. FileNotFoundError becomes BackupError.
    """
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(
                args, env=tool_environment(env), stderr=stderr, preexec_fn=_die_with_parent, **popen_kwargs
            )
        except FileNotFoundError as exc:
            raise BackupError(
                _("%(tool)s is not installed or not on PATH; install the database client tools.") % {"tool": args[0]}
            ) from exc

        def stderr_text() -> str:
            stderr.seek(0)
            return stderr.read(64 * 1024).decode("utf-8", "replace")

        process.stderr_text = stderr_text
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
