"""SQLite: the online backup API out, and the same API back into the live file.

The restore first writes the archive to a scratch file next to the database and checks it; the
swap is one `sqlite3_backup` step into the live database, which commits as a single write
transaction, so other connections see either the old or the new content, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

from django.utils.translation import gettext as _

from ..errors import BackupError, DatabaseBusy
from . import Engine, KeptTable, ServerInfo, copy_stream, quote_ident


class SQLiteEngine(Engine):
    name = "sqlite"
    suffix = "sqlite3"
    magic = b"SQLite format 3\x00"

    @property
    def path(self) -> Path:
        name = str(self.connection.settings_dict["NAME"])
        if self.connection.is_in_memory_db() or not name:
            raise BackupError(_("Database %(alias)r is an in-memory SQLite database, which has no file to back up.")
                              % {"alias": self.alias})
        return Path(name)

    def _scratch_file(self) -> str:
        fd, scratch = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".backup-tmp", dir=self.path.parent)
        os.close(fd)
        return scratch

    def identity(self) -> tuple:
        return (os.path.realpath(self.path),)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        # flock is held by this process until it closes the file (or dies), across processes on this host.
        # The resolved path: two aliases (or links) naming one file share one lock.
        descriptor = os.open(f"{os.path.realpath(self.path)}.backup-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise DatabaseBusy(self.alias) from exc
            yield
        finally:
            os.close(descriptor)

    def describe(self) -> ServerInfo:
        if not self.path.is_file():
            raise BackupError(_("The SQLite file %(path)s of database %(alias)r does not exist; run migrate first.")
                              % {"path": self.path, "alias": self.alias})
        version = f"SQLite {sqlite3.sqlite_version}"
        return ServerInfo(server_version=version, tool_version=f"{version} online backup API (Python sqlite3)")

    @contextlib.contextmanager
    def dump(self) -> Iterator[BinaryIO]:
        scratch = self._scratch_file()
        try:
            source = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            target = sqlite3.connect(scratch)
            try:
                source.backup(target)
            except sqlite3.Error as exc:
                raise BackupError(_("SQLite backup failed: %(reason)s.") % {"reason": exc}) from exc
            finally:
                target.close()
                source.close()
            with open(scratch, "rb") as stream:
                yield stream
        finally:
            os.unlink(scratch)

    def restore(
        self, source: BinaryIO, *, keep: list[KeptTable], lock_timeout: int, terminate_sessions: bool
    ) -> None:
        scratch = self._scratch_file()
        try:
            with open(scratch, "wb") as target:
                copy_stream(source, target)
            _check_file(scratch)
            restored = sqlite3.connect(f"file:{scratch}", uri=True)
            try:
                if keep:
                    self._put_back(restored, keep)
                live = sqlite3.connect(self.path, timeout=lock_timeout)
                deadline = time.monotonic() + lock_timeout

                def give_up_when_late(status, remaining, total):
                    if time.monotonic() > deadline:
                        raise TimeoutError

                try:
                    restored.backup(live, progress=give_up_when_late)
                except (sqlite3.Error, TimeoutError) as exc:
                    raise BackupError(
                        _("Other connections kept database %(alias)r locked for more than %(seconds)s s, so nothing "
                          "was restored; close them and retry.") % {"alias": self.alias, "seconds": lock_timeout}
                    ) from exc
                finally:
                    live.close()
            except sqlite3.DatabaseError as exc:
                raise BackupError(
                    _("The restore failed, the database is unchanged: %(reason)s.") % {"reason": exc}
                ) from exc
            finally:
                restored.close()
        finally:
            os.unlink(scratch)
        self.connection.close()

    def restore_into_new(self, archive_path: str, name: str, *, jobs: int = 1, tables: Sequence[str] = ()):
        """Write the archive to the new file `name` (a path), checked first; refuse a path that exists."""
        if tables:
            raise BackupError(_("A SQLite backup is restored into a new file whole; --table is for PostgreSQL."))
        target = Path(name)
        if target.exists():
            raise BackupError(_("%(path)s already exists; choose a path where there is no file.") % {"path": target})
        if not target.parent.is_dir():
            raise BackupError(_("The directory %(path)s does not exist; create it first.") % {"path": target.parent})
        descriptor, scratch = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".backup-tmp", dir=target.parent)
        try:
            with os.fdopen(descriptor, "wb") as output, open(archive_path, "rb") as source:
                copy_stream(source, output)
            _check_file(scratch)
            os.link(scratch, target)  # never over a file that appeared meanwhile
        except FileExistsError as exc:
            raise BackupError(_("%(path)s already exists; choose a path where there is no file.") % {"path": target}) from exc
        finally:
            os.unlink(scratch)
        return self.on_database(str(target))

    def drop_database(self) -> None:
        self._refuse_dropping_a_configured_database()
        self.connection.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    @classmethod
    def archive_tables(cls, source: BinaryIO) -> list[str]:
        with _scratch_copy(source) as scratch:
            database = sqlite3.connect(f"file:{scratch}?mode=ro", uri=True)
            try:
                rows = database.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                    "ORDER BY name"
                ).fetchall()
            except sqlite3.DatabaseError as exc:
                raise BackupError(_("The archive is not a sound SQLite database (%(reason)s).") % {"reason": exc}) from exc
            finally:
                database.close()
        return [name for (name,) in rows]

    @classmethod
    def check_archive(cls, source: BinaryIO) -> None:
        with _scratch_copy(source) as scratch:
            _check_file(scratch)

    # Restore drills: what the archive holds, and what a database restored from it holds ----------

    @classmethod
    def archive_row_counts(cls, archive_path: str) -> dict[str, int]:
        """Return the rows of each table of the archive, a SQLite file itself, read without changing it."""
        database = sqlite3.connect(f"{Path(archive_path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            return _row_counts(database, _tables(database))
        except sqlite3.DatabaseError as exc:
            raise BackupError(_("The archive is not a sound SQLite database (%(reason)s).") % {"reason": exc}) from exc
        finally:
            database.close()

    def _table_names(self, cursor) -> set[str]:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in cursor.fetchall()}

    def _put_back(self, restored: sqlite3.Connection, keep: list[KeptTable]) -> None:
        """Copy the live rows of the kept tables into the restored file, as they are right now."""
        restored.execute("ATTACH DATABASE ? AS live", (f"file:{self.path}?mode=ro",))
        with restored:
            for table in reversed(keep):
                if restored.execute(f"PRAGMA main.table_info({quote_ident(table.name)})").fetchone():
                    restored.execute(f"DELETE FROM main.{quote_ident(table.name)}")
            for table in keep:
                name = quote_ident(table.name)
                restored_columns = {row[1] for row in restored.execute(f"PRAGMA main.table_info({name})")}
                if not restored_columns and not table.required:
                    continue
                if not restored_columns:
                    raise BackupError(
                        _("The archive has no table %(table)s, so restoring it would erase the backup catalog; "
                          "restore it into another database.") % {"table": table.name}
                    )
                live_columns = [row[1] for row in restored.execute(f"PRAGMA live.table_info({name})")]
                if not live_columns:
                    continue
                columns = ", ".join(quote_ident(c) for c in live_columns if c in restored_columns)
                restored.execute(f"INSERT INTO main.{name} ({columns}) SELECT {columns} FROM live.{name}")
                for column, (ref_table, ref_column) in table.outside_refs.items():
                    col = quote_ident(column)
                    restored.execute(
                        f"UPDATE main.{name} SET {col} = NULL WHERE {col} IS NOT NULL AND {col} NOT IN "
                        f"(SELECT {quote_ident(ref_column)} FROM main.{quote_ident(ref_table)})"
                    )
        restored.execute("DETACH DATABASE live")


@contextlib.contextmanager
def _scratch_copy(source: BinaryIO) -> Iterator[str]:
    """Yield the path of a private temporary file holding what `source` reads; remove it afterwards."""
    descriptor, scratch = tempfile.mkstemp(suffix=".backup-tmp")
    try:
        with os.fdopen(descriptor, "wb") as target:
            copy_stream(source, target)
        yield scratch
    finally:
        os.unlink(scratch)


def _check_file(path: str) -> None:
    """Raise BackupError if the SQLite file at `path` is cut short or fails its quick check."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        header = handle.read(100)
    # https://sqlite.org/fileformat.html#the_database_header: the page size (1 means 65536) and the page
    # count, which is valid when the version-valid-for number matches the change counter.
    page_size = int.from_bytes(header[16:18], "big") if len(header) == 100 else 0
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if not header.startswith(SQLiteEngine.magic):
        raise BackupError(_("The archive is not a SQLite database: it lacks the SQLite header."))
    if pages and header[24:28] == header[92:96]:
        complete = size == pages * page_size
    else:
        complete = bool(page_size) and size % page_size == 0
    if not complete:
        raise BackupError(
            _("The archive holds %(size)s bytes, not the %(pages)s pages of %(page_size)s bytes that its header "
              "announces: it is truncated.") % {"size": size, "pages": pages, "page_size": page_size}
        )
    database = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (result,) = database.execute("PRAGMA quick_check").fetchone()
    except sqlite3.DatabaseError as exc:
        result = str(exc)
    finally:
        database.close()
    if result != "ok":
        raise BackupError(_("The archive is not a sound SQLite database (%(result)s).") % {"result": result})


def _tables(database: sqlite3.Connection) -> list[str]:
    rows = database.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    return [name for (name,) in rows]


def _row_counts(database: sqlite3.Connection, tables: list[str]) -> dict[str, int]:
    return {table: database.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()[0] for table in tables}
