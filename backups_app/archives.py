"""The one archive layer: the only way to write an archive and the only way to read one.

Writing is one streaming pass: dump stream -> compress -> encrypt (when age recipients are
configured) -> hash -> the storage (archive_storage: a local directory or S3), which shows the
archive under its name only once it is complete. Reading is the reverse: the storage's stream ->
hash check -> decrypt -> decompress; a stored archive whose SHA-256 or size differs from its
record's raises BackupError when its stream ends, before the reader sees the end.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import json
from typing import BinaryIO, Iterator, Sequence

import zstandard
from django.conf import settings
from django.db import models
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from . import encryption
from .archive_storage import (  # noqa: F401  (the storage's names, for the layer's callers)
    backup_storage,
    delete,
    download_url,
    exists,
    leftovers,
    list_names,
    local_path,
    open_stored,
    partial_name,
    passes_through_link,
    remove_leftover,
    storage_name,
    stored,
)
from .conf import setting
from .engines import CHUNK_SIZE  # noqa: F401  (also the layer's callers' read size)
from .errors import BackupError
from .models import Compression, Encryption

SUFFIXES = {Compression.ZSTD: ".zst", Compression.GZIP: ".gz", Compression.NONE: ""}
ENCRYPTION_SUFFIXES = {Encryption.AGE: ".age", Encryption.NONE: ""}
MAGIC = {Compression.ZSTD: b"\x28\xb5\x2f\xfd", Compression.GZIP: b"\x1f\x8b"}
MANIFEST_SUFFIX = ".json"
MANIFEST_FORMAT = "django-backups-manifest/1"
SIGNATURE_FIELD = "signature"
SIGNATURE_SALT = "backups_app.archives.manifest"


class Signature(models.TextChoices):
    """What a manifest's signature says about who wrote it."""

    VALID = "valid", gettext_lazy("signed with this installation's key")
    UNSIGNED = "unsigned", gettext_lazy("unsigned")
    INVALID = "invalid", gettext_lazy("badly signed (changed since, or signed with another key)")
    MISSING = "missing", gettext_lazy("no readable manifest")



class HashingWriter:
    """A file-like sink that counts and hashes what passes through it."""

    def __init__(self, target: BinaryIO):
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def compressor(target, compression: str):
    """Return a writer that compresses into `target`; closing it finishes the stream, not `target`."""
    if compression == Compression.ZSTD:
        # One thread: pg_dump (~130 MB/s) is slower than single-threaded zstd -3 (~260 MB/s), and each
        # extra worker would add its own 8 MB buffers (bench/README.md measured 112 MB peak with one a core).
        return zstandard.ZstdCompressor(level=3).stream_writer(target, closefd=False)
    if compression == Compression.GZIP:
        return gzip.GzipFile(fileobj=target, mode="wb", compresslevel=6)
    if compression == Compression.NONE:
        return contextlib.nullcontext(target)
    raise BackupError(
        _("Unknown compression %(value)r: use one of %(choices)s.")
        % {"value": compression, "choices": ", ".join(Compression.values)}
    )


def detect_compression(header: bytes) -> str:
    for compression, magic in MAGIC.items():
        if header.startswith(magic):
            return compression
    return Compression.NONE


class ZstdFrameCheck:
    """Pass a zstd stream through, following its frames (RFC 8878); raise EOFError if it ends inside one.

    The zstandard reader stops without an error at the end of a truncated stream; gzip raises by itself.
    """

    def __init__(self, source: BinaryIO):
        self.source = source
        self.steps = self._frames()
        self.wanted, self.keep = next(self.steps)
        self.kept = bytearray()
        self.skipped = 0

    def _frames(self):
        """Yield (how many bytes come next, whether to keep them) and receive the kept bytes."""
        while True:
            self.between_frames = True
            magic = int.from_bytes((yield 4, True), "little")
            self.between_frames = False
            if magic >> 4 == 0x184D2A5:  # a skippable frame: its size, then that many bytes
                yield int.from_bytes((yield 4, True), "little"), False
                continue
            if magic != 0xFD2FB528:
                raise zstandard.ZstdError(_("the zstd stream has a damaged frame header"))
            (descriptor,) = yield 1, True
            single_segment = descriptor >> 5 & 1
            content_size = (0, 2, 4, 8)[descriptor >> 6] or single_segment
            yield (1 - single_segment) + (0, 1, 2, 4)[descriptor & 3] + content_size, False
            last_block = False
            while not last_block:
                header = int.from_bytes((yield 3, True), "little")
                last_block, kind, size = header & 1, header >> 1 & 3, header >> 3
                yield (1 if kind == 1 else size), False  # an RLE block holds one byte
            yield (4 if descriptor & 4 else 0), False  # the content checksum

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if not data and not (self.between_frames and not self.kept):
            raise EOFError(_("the zstd stream ends in the middle of a frame"))
        view = memoryview(data)
        while True:
            done = len(self.kept) if self.keep else self.skipped
            take = min(self.wanted - done, len(view))
            if self.keep:
                self.kept += view[:take]
            else:
                self.skipped += take
            view = view[take:]
            if done + take < self.wanted:
                return data
            received, self.skipped = bytes(self.kept), 0
            self.kept.clear()
            self.wanted, self.keep = self.steps.send(received)

    def close(self) -> None:
        self.source.close()


def decompressor(source: BinaryIO, compression: str) -> BinaryIO:
    """Return a reader of the uncompressed content; reading past a truncated end raises EOFError."""
    if compression == Compression.ZSTD:
        return zstandard.ZstdDecompressor().stream_reader(ZstdFrameCheck(source), read_across_frames=True)
    if compression == Compression.GZIP:
        return gzip.GzipFile(fileobj=source, mode="rb")
    return source


def manifest_signature(manifest: dict) -> str:
    """Return the HMAC-SHA256 of a manifest's canonical JSON (sorted keys, without its signature).

    The key (BACKUP_SIGNING_KEY, else derived from SECRET_KEY) is not in the backup storage, so whoever
    can only write there cannot sign a manifest of an archive of their own making.
    """
    content = {key: value for key, value in manifest.items() if key != SIGNATURE_FIELD}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    key = setting("BACKUP_SIGNING_KEY") or settings.SECRET_KEY
    return salted_hmac(SIGNATURE_SALT, canonical, secret=key, algorithm="sha256").hexdigest()


def signature_state(manifest: dict) -> Signature:
    signature = manifest.get(SIGNATURE_FIELD)
    if signature is None:
        return Signature.UNSIGNED
    if isinstance(signature, str) and hmac.compare_digest(signature.encode(), manifest_signature(manifest).encode()):
        return Signature.VALID
    return Signature.INVALID


def write_manifest(archive_name: str, manifest: dict, *, signed: bool = True) -> None:
    """Write an archive's manifest; `signed` vouches that this app made the archive."""
    manifest = {"format": MANIFEST_FORMAT, **manifest}
    if signed:
        manifest[SIGNATURE_FIELD] = manifest_signature(manifest)
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    with stored(archive_name + MANIFEST_SUFFIX) as handle:
        handle.write(data)


def read_manifest(manifest_name: str) -> dict:
    if passes_through_link(manifest_name):
        raise BackupError(_("The manifest %(name)s is a symbolic link; it is not read.") % {"name": manifest_name})
    try:
        with contextlib.closing(open_stored(manifest_name)) as handle:
            manifest = json.loads(_read_up_to(handle, 1 << 20))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise BackupError(_("The manifest %(name)s cannot be read: %(reason)s.") % {"name": manifest_name, "reason": exc}) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BackupError(_("%(name)s is not a backup manifest.") % {"name": manifest_name})
    return manifest




def _read_up_to(source: BinaryIO, limit: int) -> bytes:
    """Read up to `limit` bytes (a network stream may return fewer than asked before its end)."""
    data = bytearray()
    while len(data) < limit and (chunk := source.read(limit - len(data))):
        data += chunk
    return bytes(data)


# Writing and reading archives -----------------------------------------------------------------


def archive_suffix(compression: str, encryption_name: str) -> str:
    """Return what an archive's name ends with after the engine's suffix, e.g. ".zst.age"."""
    return SUFFIXES[compression] + ENCRYPTION_SUFFIXES[encryption_name]


@contextlib.contextmanager
def write_archive(
    name: str, compression: str, *, recipients: Sequence[str] = ()
) -> Iterator[tuple[BinaryIO, HashingWriter]]:
    """Yield (writer, counter): what is written to `writer` is compressed, encrypted to `recipients` (age;
    none: not encrypted), hashed and stored under `name`, which appears only if the block succeeds. The
    counter's sha256 and size are those of the stored bytes."""
    with stored(name) as sink:
        counter = HashingWriter(sink)
        with _encrypted(counter, recipients) as encrypted, compressor(encrypted, compression) as writer:
            yield writer, counter


def _encrypted(target: BinaryIO, recipients: Sequence[str]):
    return encryption.encrypting(target, list(recipients)) if recipients else contextlib.nullcontext(target)


class ChecksumMismatch(BackupError):
    """A stored archive is not the one its record describes."""


class CheckedReader:
    """Read a stored archive's bytes, hashing them; at the end, raise ChecksumMismatch instead of
    returning b"" if their SHA-256 or size is not the record's."""

    def __init__(self, source: BinaryIO, backup):
        self.source, self.backup = source, backup
        self.sha256, self.size, self.checked = hashlib.sha256(), 0, False

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if data:
            self.sha256.update(data)
            self.size += len(data)
        elif not self.checked:
            self.checked = True
            if self.size != self.backup.size_bytes or self.sha256.hexdigest() != self.backup.checksum_sha256:
                raise ChecksumMismatch(
                    _("The archive %(name)s does not match its SHA-256 checksum (changed or damaged in the backup "
                      "storage since the backup); restore another backup.") % {"name": self.backup.file_name}
                )
        return data

    def read_to_end(self) -> None:
        while self.read(CHUNK_SIZE):
            pass

    def close(self) -> None:
        self.source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _EndsChecked:
    """A plain-content reader whose end comes only after the stored bytes were read to their end and checked."""

    def __init__(self, plain: BinaryIO, checked: CheckedReader):
        self.plain, self.checked = plain, checked

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.plain.read(size)
        except ChecksumMismatch:
            raise
        except Exception:
            # A decoder that chokes on changed bytes: say that they were changed, if they were.
            self.checked.read_to_end()
            raise
        if not data:
            self.checked.read_to_end()
        return data


def _missing(backup) -> BackupError:
    return BackupError(
        _("The archive of backup #%(id)s (%(name)s) is missing from the backup storage.")
        % {"id": backup.pk, "name": backup.file_name}
    )


def read_stored(backup) -> CheckedReader:
    """Open a backup's stored bytes as they are (a download), checked at their end; the caller closes it."""
    try:
        return CheckedReader(open_stored(backup.file_name), backup)
    except FileNotFoundError as exc:
        raise _missing(backup) from exc


@contextlib.contextmanager
def read_archive(backup) -> Iterator[BinaryIO]:
    """Yield a reader of a backup's plain content (decrypted, decompressed), streamed from the storage.

    Reading it to the end raises ChecksumMismatch, before the final b"", when the stored bytes are not
    those the backup wrote; a reader that stops early checks nothing.
    """
    with contextlib.ExitStack() as stack:
        checked = stack.enter_context(read_stored(backup))
        source = checked
        if backup.encryption:
            source = stack.enter_context(contextlib.closing(
                encryption.decrypting(checked, archive_name=backup.file_name)
            ))
        yield _EndsChecked(decompressor(source, backup.compression), checked)


def stored_digest(name: str) -> tuple[str, int]:
    """Return the SHA-256 and size of a stored file, read in one streaming pass."""
    sha256, size = hashlib.sha256(), 0
    with contextlib.closing(open_stored(name)) as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            sha256.update(chunk)
            size += len(chunk)
    return sha256.hexdigest(), size


class _Prepended:
    def __init__(self, head: bytes, rest: BinaryIO):
        self.head, self.rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if self.head:
            data = self.head if size < 0 else self.head[:size]
            self.head = self.head[len(data):]
            return data
        return self.rest.read(size)


def peek(name: str, *, decrypt: bool) -> tuple[str, bytes]:
    """Return the compression of a stored archive and the first bytes of its plain content (import)."""
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(contextlib.closing(open_stored(name)))
        source = stack.enter_context(contextlib.closing(encryption.decrypting(raw, archive_name=name))) if decrypt else raw
        head = _read_up_to(source, 16)
        compression = detect_compression(head)
        return compression, _read_up_to(decompressor(_Prepended(head, source), compression), 64)


def stored_header(name: str) -> bytes:
    """Return the first bytes of a stored file as stored (to recognise an encrypted archive)."""
    with contextlib.closing(open_stored(name)) as raw:
        return _read_up_to(raw, 64)
