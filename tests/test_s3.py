"""Backups in an S3 bucket of a real local S3 server (moto_server, started by tests.conftest.s3_server)."""

import hashlib
import os
import urllib.request
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from backups_app import archive_storage, archives, monitoring, services
from backups_app.errors import BackupError
from backups_app.models import BackupJob, BackupStatus, RestoreStatus

from .conftest import LockHolder, fingerprint, psql, url

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target"])


def test_backup_to_s3_and_restore_gives_identical_content(pagila, s3_bucket, backup_dir):
    before = fingerprint(pagila)
    job = services.create_backup(database=pagila)
    assert job.status == BackupStatus.COMPLETED
    assert s3_bucket.keys() == sorted(f"archives/{job.file_name}{suffix}" for suffix in ("", ".json"))
    stored = s3_bucket.read(job.file_name)
    assert (len(stored), hashlib.sha256(stored).hexdigest()) == (job.size_bytes, job.checksum_sha256)
    assert not backup_dir.exists()  # nothing went to local disk

    psql(pagila, "DELETE FROM payment WHERE payment_id % 3 = 0; UPDATE customer SET email = 'changed@example.com'")
    assert fingerprint(pagila) != before
    restore = services.restore_backup(backup=job)

    assert restore.status == RestoreStatus.COMPLETED
    assert fingerprint(pagila) == before
    assert restore.safety_backup.file_name in {key.removeprefix("archives/") for key in s3_bucket.keys()}
    assert s3_bucket.uploads() == []


def test_failed_backup_leaves_no_object_and_no_open_upload(pagila, s3_bucket, settings):
    settings.BACKUP_LOCK_TIMEOUT = 1
    holder = LockHolder(pagila, "LOCK TABLE film IN ACCESS EXCLUSIVE MODE")  # pg_dump fails on it
    try:
        with pytest.raises(BackupError):
            services.create_backup(database=pagila)
    finally:
        holder.release()
    assert BackupJob.objects.get().status == BackupStatus.FAILED
    assert s3_bucket.keys() == [] and s3_bucket.uploads() == []


def test_an_archive_that_fails_after_parts_were_sent_is_aborted(s3_bucket):
    data = os.urandom(archive_storage.PART_SIZE + (3 << 20))  # one part sent, then the failure
    with pytest.raises(RuntimeError):
        with archives.write_archive("db/broken.dump", "none") as (writer, _counter):
            writer.write(data)
            raise RuntimeError("the dump died")
    assert s3_bucket.keys() == [] and s3_bucket.uploads() == []

    with archives.write_archive("db/whole.dump", "none") as (writer, counter):
        writer.write(data)
    assert s3_bucket.read("db/whole.dump") == data
    assert counter.sha256.hexdigest() == hashlib.sha256(data).hexdigest() and s3_bucket.uploads() == []


def test_verify_detects_a_changed_object(pagila, s3_bucket):
    job = services.create_backup(database=pagila)
    assert services.verify_backup(backup=job).ok
    stored = bytearray(s3_bucket.read(job.file_name))
    stored[len(stored) // 2] ^= 0xFF
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key=f"archives/{job.file_name}", Body=bytes(stored))

    result = services.verify_backup(backup=job)

    assert not result.ok and "does not match its checksum" in result.problem
    with archives.read_archive(job) as stream, pytest.raises(archives.ChecksumMismatch):
        while stream.read(1 << 20):  # a reader that reads to the end learns it before the end
            pass
    with pytest.raises(BackupError, match="does not match its checksum"):
        services.restore_backup(backup=job, safety_backup=False)


def test_import_scan_rebuilds_the_catalog_from_the_bucket(pagila, s3_bucket):
    job = services.create_backup(database=pagila)
    BackupJob.objects.all().delete()  # the catalog is lost

    call_command("backup_import", "--scan", stdout=StringIO())

    imported = BackupJob.objects.get()
    assert (imported.pk, imported.file_name, imported.checksum_sha256, imported.trusted) == (
        job.pk, job.file_name, job.checksum_sha256, True)
    assert services.verify_backup(backup=imported).ok


def test_delete_and_cleanup_remove_objects_and_stale_uploads(pagila, s3_bucket, monkeypatch):
    old, newer, newest = (services.create_backup(database=pagila) for _ in range(3))
    BackupJob.objects.filter(pk__in=[old.pk, newer.pk]).update(created_at=timezone.now() - timedelta(days=30))
    services.delete_backup(backup=newer)
    assert f"archives/{newer.file_name}" not in s3_bucket.keys()
    stale = s3_bucket.client.create_multipart_upload(Bucket=s3_bucket.name, Key=f"archives/{pagila}/killed.dump")
    monkeypatch.setattr(archive_storage, "STALE_UPLOAD_AGE", timedelta(0))  # the upload counts as a day old

    plan = services.cleanup_backups()

    assert [job.pk for job in plan.expired] == [old.pk]
    assert plan.leftovers == [f"{pagila}/killed.dump{archive_storage.UPLOAD_MARK}{stale['UploadId']}"]
    assert s3_bucket.keys() == sorted(f"archives/{newest.file_name}{suffix}" for suffix in ("", ".json"))
    assert s3_bucket.uploads() == []


def test_download_streams_the_stored_bytes_or_redirects_to_a_presigned_url(pagila, s3_bucket, admin_client, settings):
    job = services.create_backup(database=pagila)
    response = admin_client.get(url("download", job.pk))
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == job.checksum_sha256 and int(response["Content-Length"]) == len(body)

    settings.BACKUP_S3_PRESIGNED_DOWNLOADS = True
    response = admin_client.get(url("download", job.pk))
    assert response.status_code == 302 and "Signature=" in response["Location"]
    with urllib.request.urlopen(response["Location"]) as presigned:
        assert presigned.read() == body
        assert os.path.basename(job.file_name) in presigned.headers["Content-Disposition"]


def test_monitoring_writes_and_deletes_a_probe_object(s3_bucket, settings):
    report = monitoring.check_health(light=True)
    assert "storage_not_writable" not in {problem.code for problem in report.problems}
    assert s3_bucket.keys() == []  # the probe object was deleted

    storages = {**settings.STORAGES, "backups": {**settings.STORAGES["backups"], "OPTIONS": {
        **settings.STORAGES["backups"]["OPTIONS"], "bucket_name": s3_bucket.name + "-missing"}}}
    settings.STORAGES = storages
    report = monitoring.check_health(light=True)
    assert "storage_not_writable" in {problem.code for problem in report.problems}


# Encrypted archives (age) --------------------------------------------------------------------------

@pytest.fixture
def age_keys(tmp_path, settings):
    """Encrypt new backups to a fresh age key; return the path of the identity file that decrypts them."""
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    path = tmp_path / "backups.key"
    path.write_text(f"# test key\n{identity}\n")
    path.chmod(0o600)
    settings.BACKUP_AGE_RECIPIENTS = str(identity.to_public())
    settings.BACKUP_AGE_IDENTITY_FILE = ""  # the backup host needs no private key
    return path


def test_encrypted_backup_in_s3_holds_no_readable_data_and_restores_with_the_identity(
    pagila, s3_bucket, age_keys, settings
):
    settings.BACKUP_COMPRESSION = "none"  # so that only the encryption can hide the rows
    before = fingerprint(pagila)
    job = services.create_backup(database=pagila)
    assert job.encryption == "age" and job.file_name.endswith(".pgdump.age")
    stored = s3_bucket.read(job.file_name)
    assert stored.startswith(b"age-encryption.org/v1\n") and b"sakilacustomer.org" not in stored
    manifest = archives.read_manifest(job.file_name + archives.MANIFEST_SUFFIX)
    assert manifest["encryption"] == "age" and manifest["recipients"] == [settings.BACKUP_AGE_RECIPIENTS]
    assert manifest["sha256"] == hashlib.sha256(stored).hexdigest() == job.checksum_sha256

    result = services.verify_backup(backup=job)  # no identity here: the checksum only, and it says so
    assert result.ok and "Only the checksum was checked" in result.note
    with pytest.raises(BackupError, match="BACKUP_AGE_IDENTITY_FILE"):
        services.restore_backup(backup=job, safety_backup=False)

    settings.BACKUP_AGE_IDENTITY_FILE = str(age_keys)
    assert services.verify_backup(backup=job) == services.VerifyResult(job, True, "", result.signature, "")
    psql(pagila, "DELETE FROM payment WHERE payment_id % 3 = 0")
    services.restore_backup(backup=job, safety_backup=False)
    assert fingerprint(pagila) == before


def test_import_scan_registers_an_encrypted_archive_without_its_key(pagila, s3_bucket, age_keys):
    job = services.create_backup(database=pagila)
    BackupJob.objects.all().delete()

    call_command("backup_import", "--scan", stdout=StringIO())

    imported = BackupJob.objects.get()
    assert (imported.pk, imported.encryption, imported.engine, imported.compression, imported.trusted) == (
        job.pk, "age", "postgresql", job.compression, True)
