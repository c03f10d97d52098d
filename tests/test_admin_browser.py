"""End to end in a real headless Chromium against live_server on PostgreSQL (pagila): a person who
never used the command line backs up, downloads, restores and cleans up from the admin."""

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from backups_app.models import BackupJob, BackupStatus, Restore

from .conftest import fingerprint, psql
from .test_admin import detached_env  # noqa: F401  (the fixture)

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, databases=["default", "target"])]


@pytest.fixture(scope="session", autouse=True)
def allow_orm_beside_playwright():
    """Playwright's sync API runs an event loop in this thread; the ORM calls of the test are still sync.

    Session-scoped: the test database may be set up after Playwright started its loop."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


def test_back_up_download_restore_and_clean_up_from_the_browser(
    page, live_server, django_user_model, pagila, detached_env, tmp_path  # noqa: F811
):
    django_user_model.objects.create_superuser("operator", "operator@example.com", "a long password")
    page.set_viewport_size({"width": 1600, "height": 900})
    page.set_default_timeout(30_000)

    # Log in.
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "a long password")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()

    # Create a backup and watch it complete on the list, without reloading.
    page.goto(f"{live_server.url}/admin/backups_app/backupjob/")
    page.click("text=Create backup")
    page.select_option("#id_database", pagila)
    page.fill("#id_description", "before the big change")
    page.click("input[value='Start backup']")
    expect(page.locator(".messagelist")).to_contain_text("started")
    job = BackupJob.objects.get()
    page.evaluate("window.notReloaded = true")
    badge = page.locator(f"[data-backup-id='{job.pk}'][data-field='status']")
    expect(badge).to_have_text("Completed", timeout=60_000)
    assert page.evaluate("window.notReloaded") is True  # updated in place
    job.refresh_from_db()
    assert job.status == BackupStatus.COMPLETED
    expect(page.locator(f"[data-backup-id='{job.pk}'][data-field='checksum']")).to_have_text(job.checksum_sha256[:12])
    expect(page.locator("#backup-stats")).to_contain_text("latest successful backup of target")
    page.screenshot(path=str(SCREENSHOTS / "change_list.png"), full_page=True)

    # Download it from the detail page and check its checksum.
    page.click(f"th.field-id a:text-is('{job.pk}')")
    expect(page.locator("[data-field='checksum_full']")).to_have_text(job.checksum_sha256)
    page.screenshot(path=str(SCREENSHOTS / "detail.png"), full_page=True)
    with page.expect_download() as download_info:
        page.click(".object-tools >> text=Download")
    download = download_info.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert download.suggested_filename == Path(job.file_name).name
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == job.checksum_sha256

    # Change the data, then restore through the confirmation page and see the data back.
    before = fingerprint(pagila)
    psql(pagila, "DELETE FROM payment WHERE payment_id % 2 = 0; UPDATE actor SET last_name = 'CHANGED'")
    assert fingerprint(pagila) != before
    page.click(".object-tools >> text=Restore…")
    expect(page.locator("h1")).to_have_text(f"Restore backup #{job.pk}?")
    expect(page.locator("#id_safety_backup")).to_be_checked()
    page.select_option("#id_database", pagila)
    page.screenshot(path=str(SCREENSHOTS / "restore_confirmation.png"), full_page=True)
    page.fill("#id_confirm_database", "wrong")
    page.click("input[value='Yes, restore it']")
    expect(page.locator(".errorlist")).to_contain_text(f"Type {pagila} exactly to confirm.")
    page.fill("#id_confirm_database", pagila)
    page.click("input[value='Yes, restore it']")
    restore = Restore.objects.get()
    page.evaluate("window.notReloaded = true")
    expect(page.locator(f"[data-restore-id='{restore.pk}'][data-field='status']")).to_have_text("Completed", timeout=90_000)
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator(f"[data-restore-id='{restore.pk}'][data-field='safety']")).to_contain_text("completed")
    assert fingerprint(pagila) == before

    # Preview a cleanup and run it: the failed backup and a leftover file go, the good ones stay.
    failed = BackupJob.objects.create(database=pagila, status=BackupStatus.FAILED, compression="zstd",
                                      error="The backup was interrupted.")
    BackupJob.objects.filter(pk=failed.pk).update(created_at=failed.created_at - timedelta(days=8))  # past retention
    page.click("text=Back to the backups")
    page.click("text=Clean up…")
    expect(page.locator(".cleanup-failed")).to_contain_text(f"Backup #{failed.pk} of {pagila}")
    expect(page.locator(".cleanup-expired li")).to_have_count(0)
    page.click("input[value='Yes, delete them']")
    expect(page.locator(".messagelist")).to_contain_text("Cleanup deleted 1 backups")
    assert not BackupJob.objects.filter(pk=failed.pk).exists()
    assert BackupJob.objects.filter(status__in=["completed", "restored"]).count() == 2  # backup + safety backup
