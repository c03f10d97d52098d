"""Archives encrypted in the age format (age-encryption.org/v1) with pyrage, streaming.

The server that makes backups needs only the recipients' public keys (BACKUP_AGE_RECIPIENTS); the
private keys live in BACKUP_AGE_IDENTITY_FILE where backups are restored, and never appear in a
message, a log or a record. Files are interchangeable with the `age` command.

pyrage's streaming functions copy from a readable to a writable until the end, so each direction
runs them in a thread joined to the caller by an OS pipe: the pipe's buffer (64 KiB) and pyrage's own
buffers are all the memory a stream takes, whatever its size.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import threading
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import pyrage
from pyrage import x25519
from django.utils.translation import gettext as _

from .conf import setting
from .errors import BackupError

HEADER = b"age-encryption.org/v1"
SECRET_KEY_PREFIX = "AGE-SECRET-KEY-1"
# An identity file holds a few keys and comments: anything larger is not one.
MAX_IDENTITY_FILE_SIZE = 1 << 20
READ_BUFFER_SIZE = 1 << 20
PIPE_SIZE = 1 << 20


def is_encrypted(header: bytes) -> bool:
    """Tell whether bytes read from the start of a file begin an age file (binary, not armored)."""
    return header.startswith(HEADER)


def recipients() -> list[str]:
    """Return the public keys of BACKUP_AGE_RECIPIENTS ([] when encryption is off)."""
    value = setting("BACKUP_AGE_RECIPIENTS")
    items = value.replace(",", " ").split() if isinstance(value, str) else [str(item).strip() for item in value]
    keys: list[str] = []
    for number, item in enumerate(items, start=1):
        key = str(_parse_recipient(item, number))
        if key not in keys:
            keys.append(key)
    return keys


def _parse_recipient(item: str, number: int) -> x25519.Recipient:
    try:
        return x25519.Recipient.from_str(item)
    except pyrage.RecipientError:
        pass
    if item.upper().startswith(SECRET_KEY_PREFIX):
        raise BackupError(_(
            "BACKUP_AGE_RECIPIENTS holds a private key (AGE-SECRET-KEY-1...) as its entry %(number)s; put only "
            "public keys there (the age1... line age-keygen prints as \"public key\") and keep the private key "
            "off the backup server."
        ) % {"number": number})
    # A public key can be shown; anything else might be a mistyped secret, so only its position is.
    shown = item if item.startswith("age1") and len(item) <= 100 else _("entry %(number)s") % {"number": number}
    raise BackupError(_(
        "BACKUP_AGE_RECIPIENTS has %(shown)s, which is not an age public key; a valid one starts with age1 and "
        "has 62 characters, as age-keygen prints it (several are separated by commas or spaces)."
    ) % {"shown": shown})


def identity_file_problem() -> str:
    """Return what is wrong with BACKUP_AGE_IDENTITY_FILE, or "" when it is unset or usable."""
    if not setting("BACKUP_AGE_IDENTITY_FILE"):
        return ""
    try:
        _load_identities()
    except BackupError as exc:
        return str(exc)
    return ""


def identity_public_keys() -> list[str]:
    """Return the public keys of the identities in BACKUP_AGE_IDENTITY_FILE (never the private ones)."""
    return [str(identity.to_public()) for identity in _load_identities()]


def _load_identities(archive_name: str = "") -> list[x25519.Identity]:
    """Read the private keys of BACKUP_AGE_IDENTITY_FILE (age's format: keys, comments, blank lines)."""
    path = setting("BACKUP_AGE_IDENTITY_FILE")
    if not path:
        raise BackupError(_(
            "%(what)s is encrypted; set BACKUP_AGE_IDENTITY_FILE to the file with its private key."
        ) % {"what": _("Archive %(name)s") % {"name": archive_name} if archive_name else _("The archive")})
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            content = file.read(MAX_IDENTITY_FILE_SIZE + 1)
    except OSError as exc:
        raise BackupError(_(
            "BACKUP_AGE_IDENTITY_FILE %(path)s cannot be read (%(reason)s); make it a file this user can read."
        ) % {"path": path, "reason": exc.strerror or exc}) from None
    if len(content) > MAX_IDENTITY_FILE_SIZE or b"\0" in content:
        raise BackupError(_(
            "BACKUP_AGE_IDENTITY_FILE %(path)s is not an age identity file; it should hold AGE-SECRET-KEY-1... "
            "lines as age-keygen writes them."
        ) % {"path": path})
    if is_encrypted(content) or content.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----"):
        raise BackupError(_(
            "BACKUP_AGE_IDENTITY_FILE %(path)s is itself encrypted with a passphrase; give a decrypted copy "
            "(age -d -o key.txt %(path)s) on a machine you trust."
        ) % {"path": path})
    identities = []
    for number, line in enumerate(content.decode("utf-8", "replace").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            # The line is never shown: it may be a private key with a typo.
            raise BackupError(_(
                "Line %(number)s of BACKUP_AGE_IDENTITY_FILE %(path)s is not an age private key; each key line "
                "starts with AGE-SECRET-KEY-1, as age-keygen writes it (other lines are comments starting with #)."
            ) % {"number": number, "path": path}) from None
    if not identities:
        raise BackupError(_(
            "BACKUP_AGE_IDENTITY_FILE %(path)s holds no private key; it should hold the AGE-SECRET-KEY-1... "
            "line(s) that age-keygen wrote."
        ) % {"path": path})
    return identities


def _pipe() -> tuple[int, int]:
    """Return an OS pipe with a 1 MiB buffer where Linux allows it (fewer thread switches than 64 KiB)."""
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return read_fd, write_fd


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


class _Worker:
    """One pyrage copy running in a thread; keeps its first error and the caller's own stream errors."""

    def __init__(self):
        self.error: BaseException | None = None
        self.stream_error: BaseException | None = None  # raised by the caller's source or target itself
        self.aborted = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, function, name: str) -> None:
        self.thread = threading.Thread(target=self._run, args=(function,), daemon=True, name=name)
        self.thread.start()

    def _run(self, function) -> None:
        try:
            function()
        except BaseException as exc:  # noqa: BLE001  (handed to the caller's thread)
            self.error = exc


class _Reader:
    """What pyrage reads from: a file descriptor or the caller's readable, with their errors kept."""

    def __init__(self, worker: _Worker, *, fd: int | None = None, source: BinaryIO | None = None):
        self.worker, self.fd, self.source = worker, fd, source

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else READ_BUFFER_SIZE
        try:
            data = os.read(self.fd, size) if self.source is None else self.source.read(size)
        except BaseException as exc:
            self.worker.stream_error = self.worker.stream_error or exc
            raise
        if not data and self.worker.aborted.is_set():
            raise OSError("the stream was abandoned")  # never let an abandoned stream end like a complete one
        return bytes(data)


class _Writer:
    """What pyrage writes to: a file descriptor or the caller's writable, with their errors kept."""

    def __init__(self, worker: _Worker, *, fd: int | None = None, target: BinaryIO | None = None):
        self.worker, self.fd, self.target = worker, fd, target

    def write(self, data) -> int:
        try:
            if self.target is None:
                _write_all(self.fd, data)
            else:
                view = memoryview(data)
                while view:
                    written = self.target.write(view)
                    if written is None or written >= len(view):
                        break
                    view = view[written:]
        except BaseException as exc:
            self.worker.stream_error = self.worker.stream_error or exc
            raise
        return len(data)

    def flush(self) -> None:
        """Leave flushing the caller's target to the caller."""


class _EncryptingWriter(io.RawIOBase):
    """The writable end of an encryption: closing it finishes the age stream (not the target)."""

    def __init__(self, worker: _Worker, fd: int):
        super().__init__()
        self._worker, self._fd = worker, fd

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            _write_all(self._fd, data)
        except BrokenPipeError:
            # The encryption stopped (its target failed): say why, not that a pipe broke.
            self._worker.thread.join()
            self._raise_error()
            raise
        return memoryview(data).nbytes

    def close(self) -> None:
        if self.closed:
            return
        try:
            os.close(self._fd)  # end of the plaintext: pyrage writes the last chunk and returns
            self._worker.thread.join()
            self._raise_error()
        finally:
            super().close()

    def abort(self) -> None:
        if self.closed:
            return
        self._worker.aborted.set()  # before the end of file, which pyrage would take as complete
        try:
            os.close(self._fd)
            self._worker.thread.join()
        finally:
            super().close()

    def _raise_error(self) -> None:
        worker = self._worker
        if worker.stream_error is not None:
            raise worker.stream_error
        if worker.error is not None:
            raise BackupError(_("age encryption failed: %(reason)s") % {"reason": worker.error}) from worker.error


@contextlib.contextmanager
def encrypting(target: BinaryIO, recipients: Sequence[str]) -> Iterator[BinaryIO]:
    """Yield a writable whose bytes reach `target` encrypted to `recipients` (age public keys).

    Closing the writable (or leaving the block) finishes the age stream, but leaves `target` open. An
    exception inside the block stops the encryption without finishing the stream, and propagates.
    """
    keys = [_parse_recipient(key, number) for number, key in enumerate(recipients, start=1)]
    if not keys:
        raise BackupError(_("Encryption needs at least one public key; set BACKUP_AGE_RECIPIENTS."))
    read_fd, write_fd = _pipe()
    worker = _Worker()
    source, sink = _Reader(worker, fd=read_fd), _Writer(worker, target=target)

    def encrypt():
        try:
            pyrage.encrypt_io(source, sink, keys)
        finally:
            os.close(read_fd)  # a writer still writing gets BrokenPipeError instead of waiting forever

    writer = _EncryptingWriter(worker, write_fd)
    worker.start(encrypt, "age-encrypt")
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.close()


class _DecryptingReader(io.RawIOBase):
    """The readable end of a decryption: its end of file comes only after the age stream checked out."""

    def __init__(self, worker: _Worker, fd: int, describe_error):
        super().__init__()
        self._worker, self._fd, self._describe_error = worker, fd, describe_error
        self._finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = os.readv(self._fd, [buffer])  # straight into the caller's buffer
        if not size:
            self._finish()
        return size

    def _finish(self) -> None:
        if self._finished:
            return
        self._worker.thread.join()
        self._finished = True
        worker = self._worker
        if worker.stream_error is not None:
            raise worker.stream_error
        if worker.error is not None:
            raise self._describe_error(worker.error) from None

    def close(self) -> None:
        if self.closed:
            return
        try:
            os.close(self._fd)  # a decryption still running gets BrokenPipeError and stops
            self._worker.aborted.set()
            self._worker.thread.join()
        finally:
            super().close()


def decrypting(source: BinaryIO, *, archive_name: str = "", encrypted_to: Sequence[str] = ()) -> BinaryIO:
    """Return a readable of the plaintext of the age file `source`, decrypted with the keys in
    BACKUP_AGE_IDENTITY_FILE; the caller closes it (not `source`).

    `archive_name` and `encrypted_to` (the recipients the manifest records) only make the messages
    clearer. A key that does not match raises BackupError here; damage found later raises it from
    read(), never a clean end of file.
    """
    identities = _load_identities(archive_name)
    what = _("Archive %(name)s") % {"name": archive_name} if archive_name else _("The archive")
    path = os.fspath(setting("BACKUP_AGE_IDENTITY_FILE"))

    def describe_error(exc: BaseException) -> BackupError:
        message = str(exc)
        if isinstance(exc, pyrage.DecryptError) and "No matching keys" in message:
            return BackupError(_(
                "%(what)s is encrypted, but none of the keys in %(path)s can decrypt it; it was encrypted to "
                "%(recipients)s (that file holds the keys of %(held)s)."
            ) % {
                "what": what,
                "path": path,
                "recipients": ", ".join(encrypted_to) or _("other keys"),
                "held": ", ".join(str(identity.to_public()) for identity in identities),
            })
        if isinstance(exc, pyrage.DecryptError):
            return BackupError(_(
                "%(what)s is not a readable age file (%(reason)s): its header is damaged or it is not encrypted."
            ) % {"what": what, "reason": message})
        if isinstance(exc, BrokenPipeError):
            return BackupError(_("%(what)s was closed before it was read to its end.") % {"what": what})
        return BackupError(_(
            "%(what)s is damaged: its encrypted data does not decrypt (%(reason)s); it was changed or cut short "
            "after it was written."
        ) % {"what": what, "reason": message})

    read_fd, write_fd = _pipe()
    worker = _Worker()
    reader, sink = _Reader(worker, source=source), _Writer(worker, fd=write_fd)

    def decrypt():
        try:
            pyrage.decrypt_io(reader, sink, identities)
        finally:
            os.close(write_fd)  # the end of file the caller reads

    worker.start(decrypt, "age-decrypt")
    stream = io.BufferedReader(_DecryptingReader(worker, read_fd, describe_error), READ_BUFFER_SIZE)
    try:
        stream.peek(1)  # the header is read first: a key that does not match fails here, before any use
    except BaseException:
        stream.close()
        raise
    return stream
