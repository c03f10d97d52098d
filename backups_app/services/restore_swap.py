"""Restore by swap, undo a swap, restore into a new database; the plain archive file they all read."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from datetime import timedelta
from typing import Iterator

import zstandard
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import archives
from ..conf import setting
from ..engines import Engine, KeptTable, get_engine
from ..engines.postgresql_swap import kept_name
from ..errors import BackupError
from ..humanize import human_size
from ..models import BackupJob, Restore, RestorePhase, RestoreStatus, RestoreStrategy
from .common import set_phase


@contextlib.contextmanager
def archive_file(backup: BackupJob, directory: str | None = None) -> Iterator[str]:
    """Yield the path of a private (0600) temporary file holding the backup's plain archive; remove it after.

    A parallel pg_restore cannot read a pipe. The file takes about the database's dump size; a
    temporary directory with less free space than the compressed archive is refused at once, and one
    that fills up stops the restore with the same sentence.
    """
    directory = directory or tempfile.gettempdir()
    free = shutil.disk_usage(directory).free
    if backup.size_bytes and free < backup.size_bytes:
        raise BackupError(_(
            "The temporary directory %(directory)s has %(free)s free, less than the %(size)s archive needs once "
            "decompressed; free some space or point TMPDIR to a larger disk."
        ) % {"directory": directory, "free": human_size(free), "size": human_size(backup.size_bytes)})
    descriptor, path = tempfile.mkstemp(prefix="backups-restore-", suffix=".archive", dir=directory)
    try:
        try:
            with os.fdopen(descriptor, "wb") as output, archives.read_archive(backup) as plain:
                shutil.copyfileobj(plain, output, archives.CHUNK_SIZE)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise BackupError(_(
                "The temporary directory %(directory)s filled up after %(size)s while decompressing the archive; "
                "free some space or point TMPDIR to a larger disk."
            ) % {"directory": directory, "size": human_size(os.path.getsize(path))}) from exc
        except (EOFError, zstandard.ZstdError) as exc:
            raise BackupError(
                _("The archive could not be read (%(reason)s); it is corrupt or truncated.") % {"reason": exc}
            ) from exc
        yield path
    finally:
        os.unlink(path)


def choose_strategy(engine: Engine, asked: str) -> tuple[str, str]:
    """Return the strategy a restore into `engine`'s database uses (swap or in-place), and why.

    `asked` is auto, swap or in-place (blank: BACKUP_RESTORE_STRATEGY).
    """
    explicit, asked = bool(asked), asked or setting("BACKUP_RESTORE_STRATEGY")
    swappable = getattr(engine, "can_swap", None)
    if swappable is None:
        # BACKUP_RESTORE_STRATEGY=swap is about PostgreSQL; only a swap asked for this restore is refused.
        if asked == RestoreStrategy.SWAP and explicit:
            raise BackupError(_("Restore by swap is for PostgreSQL; database %(alias)r is %(engine)s: use --strategy "
                                "in-place (or auto).") % {"alias": engine.alias, "engine": engine.name})
        return RestoreStrategy.IN_PLACE, _("the %(engine)s engine restores in place") % {"engine": engine.name}
    source = _("asked for") if explicit else _("BACKUP_RESTORE_STRATEGY")
    if asked == RestoreStrategy.IN_PLACE:
        return RestoreStrategy.IN_PLACE, _("in-place: %(source)s") % {"source": source}
    can, why = swappable()
    if asked == RestoreStrategy.SWAP:
        if not can:
            raise BackupError(_("Database %(alias)r cannot be restored by swap: %(why)s; use --strategy in-place.")
                              % {"alias": engine.alias, "why": why})
        return RestoreStrategy.SWAP, _("swap: %(source)s; %(why)s") % {"source": source, "why": why}
    if can:
        return RestoreStrategy.SWAP, _("auto: %(why)s") % {"why": why}
    return RestoreStrategy.IN_PLACE, _("auto: no swap, %(why)s") % {"why": why}


def default_jobs() -> int:
    return os.cpu_count() or 1


def restore_by_swap(engine: Engine, backup: BackupJob, restore: Restore, keep: list[KeptTable]) -> None:
    """Load the backup into a new database, then swap it in for the live one, which is kept for an undo.

    Any failure before the swap leaves the live database untouched and drops the new one.
    """
    live = engine.database_name
    new_name = kept_name(live, f"__restoring_{restore.pk}")
    old_name = kept_name(live, f"__before_restore_{restore.pk}")
    new = _load_new_database(engine, backup, restore, new_name)
    try:
        new.connection.close()
        restore.kept_database = old_name
        restore.save(update_fields=["kept_database"])
        # Set before the swap: from the catalog's copy on, a row written to the live catalog is lost.
        set_phase(restore, RestorePhase.SWAPPING)
        engine.swap_in(new_name, old_name, keep=keep, lock_timeout=setting("BACKUP_LOCK_TIMEOUT"))
    except BaseException:
        new.drop_database()
        Restore.objects.filter(pk=restore.pk).update(kept_database="")
        restore.kept_database = ""
        raise


def restore_into(engine: Engine, backup: BackupJob, restore: Restore) -> None:
    """Make the new database (SQLite: file) `restore.into` from the backup; nothing existing is touched."""
    tables = [table for table in restore.tables.split(",") if table]
    _load_new_database(engine, backup, restore, restore.into, tables=tables).connection.close()


def _load_new_database(engine: Engine, backup: BackupJob, restore: Restore, name: str, *, tables=()) -> Engine:
    """Decompress the backup to a temporary file (its size recorded on the restore), then load it into the new
    database `name`; return its engine."""
    set_phase(restore, RestorePhase.DECOMPRESSING)
    with archive_file(backup) as path:
        restore.scratch_bytes = os.path.getsize(path)
        restore.save(update_fields=["scratch_bytes"])
        set_phase(restore, RestorePhase.LOADING)
        return engine.restore_into_new(path, name, jobs=restore.jobs or default_jobs(), tables=tables)


def kept_databases() -> list[Restore]:
    """Return the restores whose replaced database is still kept (not dropped, not swapped back)."""
    return list(Restore.objects.exclude(kept_database="").filter(kept_dropped_at__isnull=True, undone_at__isnull=True,
                                                                 status=RestoreStatus.COMPLETED))


def kept_databases_size(restores: list[Restore] | None = None) -> int:
    """Return the bytes the databases kept for an undo (`restores`' or all) take on their servers (those
    that can be asked)."""
    total = 0
    for restore in kept_databases() if restores is None else restores:
        with contextlib.suppress(BackupError):
            total += get_engine(restore.database).database_size(restore.kept_database) or 0
    return total


def expired_kept_databases(*, now=None) -> list[Restore]:
    """Return the restores whose kept database is older than BACKUP_KEEP_REPLACED_HOURS (cleanup drops them)."""
    cutoff = (now or timezone.now()) - timedelta(hours=setting("BACKUP_KEEP_REPLACED_HOURS"))
    return [restore for restore in kept_databases() if restore.finished_at and restore.finished_at <= cutoff]


def drop_kept_database(restore: Restore) -> None:
    """Drop the database a restore by swap kept; an undo is no longer possible."""
    get_engine(restore.database).on_database(restore.kept_database).drop_database()
    Restore.objects.filter(pk=restore.pk).update(kept_dropped_at=timezone.now())


def drop_expired_kept_databases(*, now=None) -> list[Restore]:
    """Drop the kept databases older than BACKUP_KEEP_REPLACED_HOURS; return their restores."""
    dropped = expired_kept_databases(now=now)
    for restore in dropped:
        drop_kept_database(restore)
    return dropped
