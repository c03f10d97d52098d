"""Restore by swap, undo a swap, restore into a new database; the plain archive file they all read."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from typing import BinaryIO, Iterator

import zstandard
from django.utils.translation import gettext as _

from .. import archives
from ..errors import BackupError
from ..humanize import human_size
from ..models import BackupJob


@contextlib.contextmanager
def _open_plain_archive(backup: BackupJob) -> Iterator[BinaryIO]:
    """Yield the backup's archive decompressed: the one place this module reads an archive."""
    with archives.backup_storage().open(backup.file_name, "rb") as raw:
        yield archives.decompressor(raw, backup.compression)


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
            with os.fdopen(descriptor, "wb") as output, _open_plain_archive(backup) as plain:
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
