"""Whoever can write to the backup storage must not get more: no SQL at a restore, no files read or
deleted outside the storage, no half-imported catalog from one bad manifest."""

import hashlib
import json
import os
import shutil
import subprocess
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from backups_app import archives, services
from backups_app.errors import BackupError
from backups_app.models import BackupJob, BackupTrigger, Restore, RestoreStatus

from .conftest import fingerprint, psql
from .test_admin import restore_post, url, wait_for

SQLITE = pytest.mark.django_db(databases=["default", "sqlite"])


@pytest.fixture
def lost_backup(backup_dir):
    """A completed backup of the `sqlite` database whose catalog record is lost."""
    job = services.create_backup(database="sqlite", description="lost")
    BackupJob.objects.all().delete()
    return job


# Symbolic links ----------------------------------------------------------------------------------

@SQLITE
def test_symbolic_links_in_the_storage_are_never_followed(lost_backup, backup_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in (lost_backup.file_name, lost_backup.file_name + ".json"):
        shutil.move(backup_dir / name, outside)
    archive_name = lost_backup.file_name.split("/")[-1]
    (outside / ".leftover.partial").write_bytes(b"not ours")
    (backup_dir / "linked-dir").symlink_to(outside, target_is_directory=True)
    (backup_dir / "linked.sqlite3.gz").symlink_to(outside / archive_name)
    (backup_dir / "loop").symlink_to(backup_dir, target_is_directory=True)

    assert archives.list_names() == []
    assert services.import_scan() == ([], [])
    for path in ("linked.sqlite3.gz", f"linked-dir/{archive_name}", str(backup_dir / "linked.sqlite3.gz")):
        with pytest.raises(BackupError, match="symbolic link|outside the backup storage"):
            services.import_archive(path=path, database="sqlite")
    services.cleanup_backups(retention_days=0)
    (backup_dir / "sqlite").rmdir()
    (backup_dir / "sqlite").symlink_to(outside, target_is_directory=True)
    with pytest.raises(BackupError, match="would be written through a symbolic link in the backup storage"):
        services.create_backup(database="sqlite")

    assert list(BackupJob.objects.values_list("status", flat=True)) == ["failed"]
    assert sorted(p.name for p in outside.iterdir()) == [".leftover.partial", archive_name, archive_name + ".json"]


# Bad manifests -----------------------------------------------------------------------------------

BAD_MANIFESTS = {
    "created": lambda m: {**m, "created": "garbage"},
    "finished": lambda m: {**m, "finished": "2026-13-45T00:00:00+00:00"},
    "huge-id": lambda m: {**m, "id": 2**70},
    "negative-id": lambda m: {**m, "id": -5},
    "nul": lambda m: {**m, "description": "a\x00b"},
    "not-a-dict": lambda m: [m],
    "bad-json": lambda m: "{",
}


@SQLITE
def test_one_bad_manifest_is_reported_and_the_others_are_imported(lost_backup, backup_dir):
    manifest = json.loads((backup_dir / (lost_backup.file_name + ".json")).read_text())
    for label, spoil in BAD_MANIFESTS.items():
        archive = backup_dir / "sqlite" / f"{label}.sqlite3.gz"
        shutil.copy(backup_dir / lost_backup.file_name, archive)
        bad = spoil({**manifest, "file_name": f"sqlite/{label}.sqlite3.gz"})
        bad = bad if isinstance(bad, str) else json.dumps(bad)
        (backup_dir / "sqlite" / f"{label}.sqlite3.gz.json").write_text(bad)

    out = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("backup_import", "--scan", stdout=out)

    problems = str(failure.value).splitlines()  # one line, one sentence, for each bad manifest
    assert len(problems) == len(BAD_MANIFESTS)
    for label, problem in zip(sorted(BAD_MANIFESTS), problems):
        assert problem.startswith(("The manifest sqlite/%s.sqlite3.gz.json " % label, "sqlite/%s." % label))
    assert 'invalid "created" value \'garbage\'; correct or remove it' in str(failure.value)
    assert f"Imported {lost_backup.file_name} as backup #{lost_backup.pk}" in out.getvalue()
    # Nothing half-imported: the good archive is the only record, with the id its manifest gives.
    assert list(BackupJob.objects.values_list("pk", "file_name")) == [(lost_backup.pk, lost_backup.file_name)]


# Signed manifests: a planted archive does not run SQL at the next restore -------------------------

@pytest.fixture
def planted_archive(pagila, backup_dir, settings):
    """Write into the storage what an attacker who can write there but not read the key would: a real
    pg_dump archive whose CHECK constraint runs a program as the server's OS user (COPY ... TO PROGRAM)
    while its rows are restored, with a forged manifest. Return the marker file that program creates."""
    scratch = f"h3_attacker_{settings.RUN_ID}"
    marker = f"/tmp/h3-untrusted-storage-{settings.RUN_ID}-pwned"
    psql("postgres", f"DROP DATABASE IF EXISTS {scratch}")
    psql("postgres", f"CREATE DATABASE {scratch}")
    try:
        psql(scratch, f"""
            CREATE FUNCTION payload(integer) RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN
                IF current_database() <> '{scratch}' THEN
                    EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {marker}''';
                END IF;
                RETURN true;
            END $$;
            CREATE TABLE film (film_id integer CHECK (payload(film_id)));
            INSERT INTO film VALUES (1);
        """)
        params = connections[pagila].settings_dict
        dump = subprocess.run(
            ["pg_dump", "--format=custom", "-h", params["HOST"], "-U", params["USER"], scratch],
            check=True, capture_output=True,
        ).stdout
    finally:
        psql("postgres", f"DROP DATABASE IF EXISTS {scratch}")
    for name, signature in (("unsigned", None), ("forged", "0" * 64)):
        archive = backup_dir / pagila / f"{pagila}-20991231-000000-{name}.dump"
        archive.parent.mkdir(parents=True, exist_ok=True)
        archive.write_bytes(dump)
        manifest = {
            "format": archives.MANIFEST_FORMAT, "database": pagila, "engine": "postgresql", "trigger": "manual",
            "description": "nightly", "created": "2099-12-31T00:00:00+00:00", "compression": "none",
            "sha256": hashlib.sha256(dump).hexdigest(), "size": len(dump), "signature": signature,
        }
        if signature is None:
            del manifest["signature"]
        (backup_dir / pagila / (archive.name + ".json")).write_text(json.dumps(manifest))
    yield marker
    if os.path.exists(marker):
        os.unlink(marker)


@pytest.mark.django_db(transaction=True, databases=["default", "target"])
def test_planted_archive_is_imported_unverified_and_restored_only_when_trusted(pagila, planted_archive):
    before = fingerprint(pagila)
    out = StringIO()
    call_command("backup_import", "--scan", stdout=out)
    planted = list(BackupJob.objects.order_by("file_name"))
    assert [job.trusted for job in planted] == [False, False]
    assert out.getvalue().count("Unverified: its manifest is not signed by this installation") == 2

    for job in planted:
        with pytest.raises(CommandError, match=(
            rf"^Backup #{job.pk} was imported without a manifest signed by this installation, so whoever could "
            r"write to the backup storage may have made it; restore it only if you trust them, with --trust-archive")):
            call_command("backup_restore", str(job.pk), "--no-input", stdout=StringIO())
    assert not os.path.exists(planted_archive)  # the program never ran
    assert fingerprint(pagila) == before
    assert not BackupJob.objects.filter(trigger=BackupTrigger.PRE_RESTORE_SAFETY).exists()  # refused first
    assert set(Restore.objects.values_list("status", flat=True)) == {RestoreStatus.FAILED}

    out = StringIO()
    call_command("backup_verify", "--all", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert sorted((item["signature"], item["trusted"]) for item in report) == [("invalid", False), ("unsigned", False)]

    # Saying so restores it, and shows what the refusal prevented.
    call_command("backup_restore", str(planted[0].pk), "--no-input", "--trust-archive", stdout=StringIO())
    assert os.path.exists(planted_archive)



SIGNED_TRANSACTIONAL = pytest.mark.django_db(transaction=True, databases=["default", "sqlite"])


@SIGNED_TRANSACTIONAL
@pytest.mark.parametrize("change", ["description", "key"])
def test_a_changed_manifest_or_another_key_imports_unverified(lost_backup, backup_dir, settings, change):
    manifest_path = backup_dir / (lost_backup.file_name + ".json")
    manifest = json.loads(manifest_path.read_text())
    assert archives.signature_state(manifest) == archives.Signature.VALID
    if change == "description":
        manifest_path.write_text(json.dumps({**manifest, "description": "restore me"}))
    else:
        settings.BACKUP_SIGNING_KEY = "the key after a rotation"

    (job,), problems = services.import_scan()

    assert problems == [] and job.trusted is False
    out = StringIO()
    call_command("backup_verify", str(job.pk), stdout=out)
    assert "Manifest: badly signed (changed since, or signed with another key). Imported unverified" in out.getvalue()
    with pytest.raises(BackupError, match="restore it only if you trust them, with --trust-archive"):
        services.restore_backup(backup=job, safety_backup=False)
    restore = services.restore_backup(backup=job, safety_backup=False, trust_archive=True)
    assert restore.status == RestoreStatus.COMPLETED


@SIGNED_TRANSACTIONAL
def test_a_bare_archive_imported_by_path_stays_unverified_after_a_rescan(lost_backup, backup_dir):
    (backup_dir / (lost_backup.file_name + ".json")).unlink()
    job = services.import_archive(path=lost_backup.file_name, database="sqlite")
    assert job.trusted is False
    # The manifest the import writes is unsigned: a later scan must not launder the archive into a trusted one.
    BackupJob.objects.all().delete()
    (job,), problems = services.import_scan()
    assert problems == [] and job.trusted is False
    with pytest.raises(BackupError, match="restore it only if you trust them"):
        services.restore_backup(backup=job, safety_backup=False)


@SIGNED_TRANSACTIONAL
def test_backups_made_here_are_signed_trusted_and_verified(backup_dir):
    job = services.create_backup(database="sqlite")
    out = StringIO()
    call_command("backup_verify", str(job.pk), stdout=out)
    assert job.trusted and "Manifest: signed with this installation's key." in out.getvalue()
    BackupJob.objects.all().delete()
    assert services.import_archive(path=job.file_name).trusted  # by path too: the signature decides
    BackupJob.objects.all().delete()
    (again,), _problems = services.import_scan()
    assert again.trusted and services.restore_backup(backup=again).status == RestoreStatus.COMPLETED


@SIGNED_TRANSACTIONAL
def test_console_restores_an_unverified_backup_only_with_the_trust_checkbox(admin_client, lost_backup, worker):
    worker()
    manifest_path = lost_backup.file_name + ".json"
    archives.backup_storage().delete(manifest_path)
    job = services.import_archive(path=lost_backup.file_name, database="sqlite")
    trusted = services.create_backup(database="sqlite")
    assert 'name="trust_archive"' not in admin_client.get(url("restore", trusted.pk)).text

    page = admin_client.get(url("restore", job.pk)).text
    assert "This backup was not made by this installation." in page and 'name="trust_archive"' in page

    confirm = {"post": "yes", "database": "sqlite", "confirm_database": "sqlite"}
    refused = admin_client.post(url("changelist"), restore_post(job, **confirm))
    assert refused.status_code == 200 and "restore it only if you trust them" in refused.text
    assert not Restore.objects.exists() and BackupJob.objects.count() == 2  # nothing queued, no safety backup

    admin_client.post(url("changelist"), restore_post(job, trust_archive="on", **confirm))
    restore = Restore.objects.get()
    assert wait_for(admin_client, restores=[restore.pk])["restores"][0]["status"] == "completed"
