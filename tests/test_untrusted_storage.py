"""Whoever can write to the backup storage must not get more: no SQL at a restore, no files read or
deleted outside the storage, no half-imported catalog from one bad manifest."""

import json
import shutil

import pytest

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
