"""Where archives lie: the `backups` storage (STORAGES["backups"]), a local directory or an S3 bucket.

Everything here streams. A file only ever appears under its final name once it is complete: on a
local directory it is written to a hidden `.partial` file beside the final one, fsynced and renamed;
on S3 it is a multipart upload in bounded parts, completed at the end and aborted on any error
(django-storages' own `open(name, "wb")` completes the upload even when the writer failed).
"""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import PurePosixPath
from typing import BinaryIO, Iterator

from django.core.files.storage import Storage, storages
from django.utils.translation import gettext as _

from .errors import BackupError

# S3 parts: at least 5 MiB (S3's minimum), at most 10,000 of them. The upload holds one part in memory:
# 8 MiB, doubling every 2,000 parts (16 GiB) so that objects up to 496 GiB fit.
PART_SIZE = 8 << 20
PARTS_PER_SIZE = 2000
PARTIAL_PREFIX, PARTIAL_SUFFIX = ".", ".partial"
# A multipart upload older than this belongs to a killed process (a backup that runs longer would lose it).
STALE_UPLOAD_AGE = timedelta(days=1)
# How cleanup names an unfinished S3 upload among the leftovers it lists and removes.
UPLOAD_MARK = " #unfinished-upload="
PRESIGNED_SECONDS = 300


def backup_storage() -> Storage:
    return storages["backups"]


def is_s3(storage: Storage | None = None) -> bool:
    # An S3 storage has imported its module; a local one never pays for importing boto3.
    module = sys.modules.get("storages.backends.s3")
    return module is not None and isinstance(storage or backup_storage(), module.S3Storage)


def _s3_key(storage, name: str) -> str:
    from storages.utils import clean_name

    return storage._normalize_name(clean_name(name))


def _s3_error(exc: Exception) -> BackupError:
    return BackupError(_("The S3 backup storage refused the request: %(reason)s.") % {"reason": exc})


def local_path(name: str) -> str | None:
    """Return the file system path of a storage name, or None for a storage that is not local."""
    try:
        return backup_storage().path(name)
    except NotImplementedError:
        return None


def partial_name(name: str) -> str:
    path = PurePosixPath(name)
    return str(path.with_name(PARTIAL_PREFIX + path.name + PARTIAL_SUFFIX))


# Writing ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def stored(name: str) -> Iterator[BinaryIO]:
    """Yield a writer; the bytes become `name` in the storage if the block succeeds, else nothing appears."""
    if passes_through_link(name):
        raise BackupError(
            _("%(name)s would be written through a symbolic link in the backup storage; replace the link with a "
              "directory.") % {"name": name}
        )
    storage = backup_storage()
    if is_s3(storage):
        upload = _S3Upload(storage, name)
        try:
            yield upload
            upload.complete()
        except BaseException:
            upload.abort()
            raise
        return
    final_path = local_path(name)
    if final_path is None:
        raise BackupError(_("The backup storage is neither a local directory nor S3; set BACKUP_STORAGE_URL to a "
                            "file:// or s3:// URL."))
    directory = os.path.dirname(final_path)
    for path in (local_path(""), directory):  # makedirs gives only the leaf the mode
        os.makedirs(path, mode=0o700, exist_ok=True)
    staging = local_path(partial_name(name))
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, final_path)
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)


class _S3Upload:
    """A writer that sends what it is given as the parts of one multipart upload, one part in memory at a time.

    Nothing is visible under the key until complete(); a small object (a manifest) is one put_object.
    """

    def __init__(self, storage, name: str):
        self.client = storage.connection.meta.client
        self.bucket, self.key = storage.bucket_name, _s3_key(storage, name)
        self.buffer = bytearray()
        self.parts: list[dict] = []
        self.upload_id: str | None = None

    def write(self, data) -> int:
        self.buffer += data
        if len(self.buffer) >= PART_SIZE << (len(self.parts) // PARTS_PER_SIZE):
            self._send_part()
        return len(data)

    def flush(self) -> None:
        pass

    def _send_part(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        body, self.buffer = self.buffer, bytearray()  # handed over, not copied
        try:
            if self.upload_id is None:
                self.upload_id = self.client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.key, ContentType="application/octet-stream"
                )["UploadId"]
            number = len(self.parts) + 1
            response = self.client.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
            )
        except (BotoCoreError, ClientError) as exc:
            raise _s3_error(exc) from exc
        # A server that computed a checksum of the part wants it back in the completion request.
        self.parts.append({"PartNumber": number, "ETag": response["ETag"],
                           **{key: value for key, value in response.items() if key.startswith("Checksum")}})

    def complete(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if self.upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer),
                                       ContentType="application/octet-stream")
                return
            if self.buffer:
                self._send_part()
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
            )
        except (BotoCoreError, ClientError) as exc:
            raise _s3_error(exc) from exc

    def abort(self) -> None:
        if self.upload_id is not None:
            with contextlib.suppress(Exception):  # the upload's own error is the one to report
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


# Reading ---------------------------------------------------------------------------------------


def open_stored(name: str) -> BinaryIO:
    """Open a stored file for streaming reads (on S3 the object's body as it arrives); the caller closes it.

    A missing file raises FileNotFoundError.
    """
    if passes_through_link(name):
        raise BackupError(_("%(name)s is a symbolic link in the backup storage; it is not read.") % {"name": name})
    storage = backup_storage()
    if not is_s3(storage):
        return storage.open(name, "rb")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return storage.bucket.Object(_s3_key(storage, name)).get()["Body"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise FileNotFoundError(name) from exc
        raise _s3_error(exc) from exc
    except BotoCoreError as exc:
        raise _s3_error(exc) from exc


def exists(name: str) -> bool:
    return bool(name) and not passes_through_link(name) and backup_storage().exists(name)


def download_url(name: str, filename: str) -> str | None:
    """Return a short-lived presigned URL that downloads `name` from S3, or None off S3."""
    storage = backup_storage()
    if not is_s3(storage):
        return None
    disposition = 'attachment; filename="%s"' % filename.replace('"', "")
    return storage.url(name, parameters={"ResponseContentDisposition": disposition}, expire=PRESIGNED_SECONDS)


# Listing and deleting --------------------------------------------------------------------------


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
    if exists(name):
        backup_storage().delete(name)
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


def leftovers(active: set[str]) -> list[tuple[str, int]]:
    """Return what killed writers left behind, with sizes: `.partial` files on a local storage, multipart
    uploads started more than STALE_UPLOAD_AGE ago on S3; never those of the archive names in `active`."""
    storage = backup_storage()
    if not is_s3(storage):
        partials = {partial_name(name) for name in active}
        return [
            (name, storage.size(name)) for name in list_names()
            if os.path.basename(name).startswith(PARTIAL_PREFIX) and name.endswith(PARTIAL_SUFFIX)
            and name not in partials
        ]
    from botocore.exceptions import BotoCoreError, ClientError

    client, prefix = storage.connection.meta.client, _s3_key(storage, "")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    since = datetime.now(dt_timezone.utc) - STALE_UPLOAD_AGE
    found = []
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=storage.bucket_name, Prefix=prefix):
            for upload in page.get("Uploads", []):
                name = upload["Key"].removeprefix(prefix)
                if upload["Initiated"] < since and name not in active:
                    found.append((f"{name}{UPLOAD_MARK}{upload['UploadId']}", 0))
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(exc) from exc
    return sorted(found)


def remove_leftover(leftover: str) -> None:
    """Remove one of leftovers()' entries: delete the file, or abort the unfinished upload."""
    name, _mark, upload_id = leftover.partition(UPLOAD_MARK)
    if not upload_id:
        delete(name)
        return
    storage = backup_storage()
    with contextlib.suppress(Exception):  # finished or aborted since: nothing left to remove
        storage.connection.meta.client.abort_multipart_upload(
            Bucket=storage.bucket_name, Key=_s3_key(storage, name), UploadId=upload_id
        )


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
