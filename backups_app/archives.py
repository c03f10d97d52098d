"""Archive files in the `backups` storage: streaming compression, hashing, atomic commit, manifests.

A file only ever appears under its final name once it is complete: it is written to a staging
file (a hidden `.partial` name beside the final one on a local storage), fsynced, and renamed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import json
import os
import tempfile
from pathlib import PurePosixPath
from typing import BinaryIO, Iterator

import zstandard
from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.db import models
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .conf import setting
from .errors import BackupError
from .models import Compression

CHUNK_SIZE = 1 << 20
SUFFIXES = {Compression.ZSTD: ".zst", Compression.GZIP: ".gz", Compression.NONE: ""}
MAGIC = {Compression.ZSTD: b"\x28\xb5\x2f\xfd", Compression.GZIP: b"\x1f\x8b"}
PARTIAL_PREFIX, PARTIAL_SUFFIX = ".", ".partial"
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


def backup_storage() -> Storage:
    return storages["backups"]


def local_path(name: str) -> str | None:
    """Return the file system path of a storage name, or None for a storage that is not local."""
    try:
        return backup_storage().path(name)
    except NotImplementedError:
        return None


def partial_name(name: str) -> str:
    path = PurePosixPath(name)
    return str(path.with_name(PARTIAL_PREFIX + path.name + PARTIAL_SUFFIX))


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


@contextlib.contextmanager
def _staged(name: str) -> Iterator[BinaryIO]:
    """Yield a 0600 file to write; on success it becomes `name` in the storage, on failure it is removed."""
    if passes_through_link(name):
        raise BackupError(
            _("%(name)s would be written through a symbolic link in the backup storage; replace the link with a "
              "directory.") % {"name": name}
        )
    final_path = local_path(name)
    if final_path:
        directory = os.path.dirname(final_path)
        for path in (local_path(""), directory):  # makedirs gives only the leaf the mode
            os.makedirs(path, mode=0o700, exist_ok=True)
        staging = local_path(partial_name(name))
        descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    else:
        descriptor, staging = tempfile.mkstemp(suffix=PARTIAL_SUFFIX)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if final_path:
            os.replace(staging, final_path)
            directory_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(directory_fd)
            finally:
                os.close(directory_fd)
        else:
            with open(staging, "rb") as handle:
                saved = backup_storage().save(name, File(handle))
            if saved != name:
                raise BackupError(_("The storage saved %(name)s as %(saved)s.") % {"name": name, "saved": saved})
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)


@contextlib.contextmanager
def write_archive(name: str, compression: str) -> Iterator[tuple[BinaryIO, HashingWriter]]:
    """Yield (compressing writer, hashing counter); the archive is committed only if the block succeeds."""
    with _staged(name) as handle:
        counter = HashingWriter(handle)
        with compressor(counter, compression) as writer:
            yield writer, counter


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
    with _staged(archive_name + MANIFEST_SUFFIX) as handle:
        handle.write(data)


def read_manifest(manifest_name: str) -> dict:
    if passes_through_link(manifest_name):
        raise BackupError(_("The manifest %(name)s is a symbolic link; it is not read.") % {"name": manifest_name})
    try:
        with backup_storage().open(manifest_name, "rb") as handle:
            manifest = json.loads(handle.read(1 << 20))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise BackupError(_("The manifest %(name)s cannot be read: %(reason)s.") % {"name": manifest_name, "reason": exc}) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise BackupError(_("%(name)s is not a backup manifest.") % {"name": manifest_name})
    return manifest


def checksum(name: str) -> tuple[str, int]:
    """Return the SHA-256 and size of a stored file, read in one streaming pass."""
    sha256, size = hashlib.sha256(), 0
    with backup_storage().open(name, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_SIZE), b""):
            sha256.update(chunk)
            size += len(chunk)
    return sha256.hexdigest(), size


def passes_through_link(name: str) -> bool:
    """Return whether a storage name is, or lies under, a symbolic link (never, off a local storage).

    Whoever can write to the storage can plant links; following one would read or delete files
    outside it, and a link to a parent directory would make a recursive listing endless.
    """
    path = local_path("")
    if not path:
        return False
    for part in PurePosixPath(name).parts:
        path = os.path.join(path, part)
        if os.path.islink(path):
            return True
    return False


def delete(name: str) -> bool:
    """Delete a stored file if it exists and no symbolic link leads to it; return whether it did."""
    storage = backup_storage()
    if name and not passes_through_link(name) and storage.exists(name):
        storage.delete(name)
        return True
    return False


def list_names() -> list[str]:
    """Return every file name in the storage, recursively, relative to its root; symbolic links are left out."""
    storage = backup_storage()
    names, pending = [], [""]
    while pending:
        directory = pending.pop()
        try:
            subdirectories, files = storage.listdir(directory)
        except FileNotFoundError:
            continue
        names += _not_links(directory, files)
        pending += _not_links(directory, subdirectories)
    return sorted(names)


def _not_links(directory: str, entries: list[str]) -> list[str]:
    names = [str(PurePosixPath(directory, entry)) if directory else entry for entry in entries]
    root = local_path("")
    if not root:
        return names
    # The listing never enters a linked directory, so only the entry itself can be a link.
    return [name for name in names if not os.path.islink(os.path.join(root, name))]


def storage_name(path: str) -> str:
    """Return the storage name of a user-given path, which must lie inside the backup storage."""
    storage = backup_storage()
    root = local_path("")
    if root and os.path.isabs(path):
        resolved = os.path.realpath(path)
        root = os.path.realpath(root)
        if os.path.commonpath([resolved, root]) != root:
            raise BackupError(
                _("%(path)s is outside the backup storage %(root)s; copy the file there first.")
                % {"path": path, "root": root}
            )
        path = os.path.relpath(resolved, root)
    parts = PurePosixPath(path).parts
    if not parts or ".." in parts or PurePosixPath(path).is_absolute():
        raise BackupError(_("%(path)s is not a file name inside the backup storage.") % {"path": path})
    if passes_through_link(path):
        raise BackupError(
            _("%(path)s is a symbolic link or lies under one; copy the file itself into the backup storage.")
            % {"path": path}
        )
    if not storage.exists(path):
        raise BackupError(_("There is no file %(path)s in the backup storage.") % {"path": path})
    return str(PurePosixPath(path))
