"""Register archives that lie in the backup storage: disaster recovery of the catalog."""

from __future__ import annotations

from datetime import datetime
from datetime import timezone as dt_timezone

from django.core.management.color import no_style
from django.db import connections, router, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from .. import archives, encryption
from ..engines import ENGINES, engine_for_archive
from ..errors import BackupError
from ..models import BackupJob, BackupStatus, BackupTrigger, Compression, Encryption
from .backup import _manifest
from .common import _user_fields


MAX_ID = 2**63 - 1  # a bigint primary key


def _invalid(manifest_name: str, field: str, value) -> BackupError:
    return BackupError(
        _('The manifest %(name)s has an invalid "%(field)s" value %(value)s; correct or remove it, then import again.')
        % {"name": manifest_name, "field": field, "value": repr(value)[:80]}
    )


def _manifest_time(manifest: dict, field: str, manifest_name: str) -> datetime | None:
    value = manifest.get(field)
    if value is None:
        return None
    try:
        moment = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well formed but impossible, e.g. month 13
        moment = None
    if moment is None:
        raise _invalid(manifest_name, field, value)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, dt_timezone.utc)


def _checked_manifest(manifest: dict, manifest_name: str) -> dict:
    """Return the manifest's id and times as the catalog stores them; raise BackupError on a bad one."""
    manifest_id = manifest.get("id")
    if manifest_id is not None and (type(manifest_id) is not int or not 0 < manifest_id <= MAX_ID):
        raise _invalid(manifest_name, "id", manifest_id)
    database_limit = BackupJob._meta.get_field("database").max_length
    for field, limit in (("database", database_limit), ("description", None), ("server_version", None),
                         ("tool_version", None)):
        value = manifest.get(field) or ""
        # PostgreSQL refuses NUL characters in text, and an alias longer than its column.
        if not isinstance(value, str) or "\x00" in value or (limit and len(value) > limit):
            raise _invalid(manifest_name, field, value)
    return {
        "id": manifest_id,
        "created": _manifest_time(manifest, "created", manifest_name),
        "finished": _manifest_time(manifest, "finished", manifest_name),
    }


@transaction.atomic  # one record or none, even if the process dies half-way
def import_archive(*, path: str, database: str | None = None, acting_user=None) -> BackupJob:
    """Register an archive file that lies in the backup storage (with its manifest, if it has one).

    The backup is trusted only when its manifest carries this installation's signature: anyone who can
    write to the storage can put an archive there, and restoring an archive runs the SQL it holds.
    """
    name = archives.storage_name(path)
    if name.endswith(archives.MANIFEST_SUFFIX):
        name = name.removesuffix(archives.MANIFEST_SUFFIX)
    existing = BackupJob.objects.filter(file_name=name).first()
    if existing:
        raise BackupError(
            _("%(name)s is already in the catalog as backup #%(id)s.") % {"name": name, "id": existing.pk}
        )
    digest, size = archives.stored_digest(name)
    manifest_name = name + archives.MANIFEST_SUFFIX
    manifest = archives.read_manifest(manifest_name) if archives.exists(manifest_name) else {}
    checked = _checked_manifest(manifest, manifest_name)
    if manifest and (manifest.get("sha256") != digest or manifest.get("size") != size):
        raise BackupError(
            _("%(name)s does not match its manifest's checksum; the archive or the manifest was changed.")
            % {"name": name}
        )
    encrypted = encryption.is_encrypted(archives.stored_header(name))
    engine, compression = _engine_and_compression(name, manifest, encrypted)
    job = BackupJob(
        database=database or manifest.get("database") or "default",
        engine=engine,
        status=BackupStatus.COMPLETED,
        trigger=manifest.get("trigger") if manifest.get("trigger") in BackupTrigger.values else BackupTrigger.MANUAL,
        description=str(manifest.get("description") or _("Imported from %(name)s") % {"name": name})[:255],
        compression=compression,
        encryption=Encryption.AGE if encrypted else Encryption.NONE,
        file_name=name,
        size_bytes=size,
        bytes_written=size,
        checksum_sha256=digest,
        server_version=str(manifest.get("server_version", ""))[:100],
        tool_version=str(manifest.get("tool_version", ""))[:100],
        trusted=archives.signature_state(manifest) == archives.Signature.VALID,
        **_user_fields(acting_user),
    )
    manifest_id = checked["id"]
    if manifest_id and not BackupJob.objects.filter(pk=manifest_id).exists():
        job.pk = manifest_id  # the id it had before the catalog was lost
    job.save()
    if job.pk == manifest_id:
        _move_ids_past_imported_ones()
    if checked["created"]:
        BackupJob.objects.filter(pk=job.pk).update(
            created_at=checked["created"], started_at=checked["created"],
            finished_at=checked["finished"] or checked["created"],
        )
    else:
        BackupJob.objects.filter(pk=job.pk).update(started_at=job.created_at, finished_at=job.created_at)
    job.refresh_from_db()
    if not manifest:
        archives.write_manifest(name, _manifest(job, recipients=[]), signed=False)  # the app did not make this archive
    return job


def _engine_and_compression(name: str, manifest: dict, encrypted: bool) -> tuple[str, str]:
    """Read an archive's engine and compression from its first bytes; those of an encrypted archive from its
    manifest, when there is no identity here to decrypt it."""
    try:
        compression, header = archives.peek(name, decrypt=encrypted)
    except BackupError as exc:
        if not encrypted:
            raise
        engine, compression = manifest.get("engine"), manifest.get("compression")
        if engine not in ENGINES or compression not in Compression.values:
            raise BackupError(
                _("%(name)s is encrypted and its manifest does not say its engine and compression, and it cannot be "
                  "decrypted here (%(reason)s); set BACKUP_AGE_IDENTITY_FILE and import it again.")
                % {"name": name, "reason": exc}
            ) from exc
        return engine, compression
    engine = engine_for_archive(header)
    if engine is None:
        raise BackupError(_("%(name)s is not a PostgreSQL, SQLite, MariaDB or MySQL backup archive.") % {"name": name})
    return engine, compression


def _move_ids_past_imported_ones() -> None:
    """Make the catalog's next new id larger than every imported one.

    PostgreSQL's identity sequence does not move when a row is inserted with an explicit id, so
    the next backup would collide with an imported one; SQLite and MySQL move theirs by themselves
    (and return no SQL here).
    """
    connection = connections[router.db_for_write(BackupJob)]
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), [BackupJob]):
            cursor.execute(sql)


def import_scan(*, acting_user=None) -> tuple[list[BackupJob], list[str]]:
    """Register every archive whose manifest lies in the storage and is not in the catalog yet.

    Return the imported jobs and, for each manifest that could not be imported, why (one sentence,
    naming the file). Each import is all or nothing, and one bad manifest does not stop the others.
    """
    known = set(BackupJob.objects.values_list("file_name", flat=True))
    imported, problems = [], []
    for name in archives.list_names():
        archive = name.removesuffix(archives.MANIFEST_SUFFIX)
        if not name.endswith(archives.MANIFEST_SUFFIX) or archive in known:
            continue
        try:
            imported.append(import_archive(path=archive, acting_user=acting_user))
        except BackupError as exc:
            problems.append(str(exc))  # each names its file
    return imported, problems
