"""Whoever can write to the backup storage must not get more: no SQL at a restore, no files read or
deleted outside the storage, no half-imported catalog from one bad manifest."""

import json
import shutil
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups_app import archives, services
from backups_app.errors import BackupError
from backups_app.models import BackupJob

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

    assert BackupJob.objects.count() == 0
    assert sorted(p.name for p in outside.iterdir()) == sorted([".leftover.partial", archive_name, archive_name + ".json"])


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
        (backup_dir / "sqlite" / f"{label}.sqlite3.gz.json").write_text(bad if isinstance(bad, str) else json.dumps(bad))

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
