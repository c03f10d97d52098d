"""End to end in a real headless Chromium against live_server on PostgreSQL (pagila): a person who
never used the command line backs up, downloads, restores and cleans up from the admin."""

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import psycopg2
import pytest
from django.db import connections
from django.utils import timezone
from playwright.sync_api import expect

from backups_app import services
from backups_app.models import BackupJob, BackupStatus, BackupTrigger, Restore, RestoreStatus

from .conftest import fingerprint, psql

# `make screenshots` refreshes the README's pictures; an ordinary run leaves them alone (test-results/ is ignored).
SCREENSHOTS = Path(__file__).resolve().parent.parent / (
    "docs/screenshots" if os.environ.get("UPDATE_SCREENSHOTS") else "test-results/screenshots"
)
SCREENSHOTS.mkdir(parents=True, exist_ok=True)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, databases=["default", "target"])]


@pytest.fixture(scope="session", autouse=True)
def allow_orm_beside_playwright():
    """Playwright's sync API runs an event loop in this thread; the ORM calls of the test are still sync.

    Session-scoped: the test database may be set up after Playwright started its loop."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


def log_in(page, live_server, django_user_model):
    """Log a new superuser in, on the screen a new user tried the console on (1280 px wide)."""
    django_user_model.objects.create_superuser("operator", "operator@example.com", "a long password")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.set_default_timeout(30_000)
    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "a long password")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()


def test_back_up_download_restore_and_clean_up_from_the_browser(
    page, live_server, django_user_model, pagila, worker, tmp_path
):
    """The admin's Create and Restore run through the worker that `make run` starts (backup_worker)."""
    worker()
    log_in(page, live_server, django_user_model)

    # Create a backup and watch it complete on the list, without reloading.
    page.goto(f"{live_server.url}/admin/backups_app/backupjob/")
    page.click("text=Create backup")
    page.select_option("#id_database", pagila)
    page.fill("#id_description", "before the big change")
    page.click("input[value='Start backup']")
    expect(page.locator(".messagelist")).to_contain_text("is queued; a worker runs it")
    job = BackupJob.objects.get()
    page.evaluate("window.notReloaded = true")
    badge = page.locator(f"[data-backup-id='{job.pk}'][data-field='status']")
    expect(badge).to_have_text("Completed", timeout=60_000)
    assert page.evaluate("window.notReloaded") is True  # updated in place
    job.refresh_from_db()
    assert job.status == BackupStatus.COMPLETED
    expect(page.locator(f"[data-backup-id='{job.pk}'][data-field='size']")).not_to_have_text("-")
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
    name = connections[pagila].settings_dict["NAME"]
    expect(page.locator(".errorlist")).to_contain_text(f"Type {pagila} or {name} exactly to confirm.")
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


def test_the_change_list_fits_a_1280_px_screen(page, live_server, django_user_model):
    """Newcomer issue 3: Size, Checksum, Requested by and Description needed horizontal scrolling."""
    now = timezone.now()
    long_text = "Before the migration of the invoicing schema to the new accounting system, agreed with finance " * 2
    for index, (trigger, status) in enumerate([
        (BackupTrigger.MANUAL, BackupStatus.COMPLETED), (BackupTrigger.SCHEDULED, BackupStatus.FAILED),
        (BackupTrigger.PRE_RESTORE_SAFETY, BackupStatus.RESTORED), (BackupTrigger.PRE_RESTORE_SAFETY, BackupStatus.PENDING),
    ]):
        BackupJob.objects.create(
            database="target", engine="postgresql", trigger=trigger, status=status, compression="zstd",
            description=long_text[: 255 - index], requested_by_name="a.very.long.user.name@example.com",
            size_bytes=123_456_789_012 if status != BackupStatus.FAILED else None,
            checksum_sha256="ab" * 32 if status != BackupStatus.FAILED else "",
            started_at=now - timedelta(hours=2), finished_at=now - timedelta(minutes=57, seconds=55),
        )
    log_in(page, live_server, django_user_model)
    page.goto(f"{live_server.url}/admin/backups_app/backupjob/")

    table, container = page.locator("#result_list"), page.locator("#changelist-form .results")
    assert table.evaluate("t => t.scrollWidth") <= container.evaluate("c => c.clientWidth")
    # Nothing is lost: the full description and trigger are in the titles, the checksum on the detail page.
    descriptions = page.locator("td.field-description_short span")
    expect(descriptions).to_have_count(4)
    assert descriptions.first.get_attribute("title") == long_text[:255 - 3]
    expect(page.locator("td.field-trigger_short span[title='Pre-restore safety']")).to_have_count(2)
    # No cell wraps onto a second line.
    heights = page.locator("#result_list tbody tr").evaluate_all("rows => rows.map(r => r.offsetHeight)")
    assert max(heights) - min(heights) <= 1 and max(heights) < 40, heights
    for column in ("size", "duration"):
        assert page.locator(f"td.field-{column}").first.evaluate("c => getComputedStyle(c).textAlign") == "right"


def test_restore_page_says_what_to_type_and_shows_the_phase_safety_backup_and_lock_wait(
    page, live_server, django_user_model, pagila, worker
):
    """Newcomer issues 2 and 5, on a real restore of pagila held in its restoring phase by a lock."""
    worker()
    backup = services.create_backup(database=pagila)
    name = connections[pagila].settings_dict["NAME"]
    log_in(page, live_server, django_user_model)
    page.goto(f"{live_server.url}/admin/backups_app/backupjob/{backup.pk}/restore/")
    row = page.locator(".backup-targets tr", has_text=name)
    expect(row.locator("td").nth(0)).to_have_text(pagila)  # the alias beside the real name
    hint = page.locator(f"[data-confirm-hint='{pagila}']")
    expect(hint).to_have_text(f"Type {pagila} or {name} exactly to confirm.")
    page.select_option("#id_database", "default")  # the hint follows the chosen database
    expect(hint).to_be_hidden()
    expect(page.locator("[data-confirm-hint='default']")).to_be_visible()
    page.select_option("#id_database", pagila)
    expect(hint).to_be_visible()
    expect(page.locator(".form-row:has(#id_terminate_sessions) .help")).to_contain_text("at most 30 s")
    page.fill("#id_confirm_database", name)  # the name the page shows, not only the alias
    page.select_option("#id_strategy", "in-place")  # a swap would not wait for the lock below: it ends the session

    # Another session holds a lock on a table the restore replaces: the restore waits in its last phase.
    params = connections[pagila].settings_dict
    holder = psycopg2.connect(host=params["HOST"], port=params["PORT"] or 5432, user=params["USER"], dbname=name)
    try:
        holder.cursor().execute("LOCK TABLE public.actor IN ACCESS SHARE MODE")
        page.click("input[value='Yes, restore it']")
        restore = Restore.objects.get()
        phase = page.locator(f"[data-restore-id='{restore.pk}'][data-field='phase']")
        expect(phase).to_have_text("Restoring the archive", timeout=60_000)
        restore.refresh_from_db()
        safety = page.locator(f"a[data-restore-id='{restore.pk}'][data-field='safety']")
        expect(safety).to_have_attribute("href", f"/admin/backups_app/backupjob/{restore.safety_backup_id}/change/")
        expect(safety).to_contain_text(f"Backup #{restore.safety_backup_id}: completed")
        expect(page.locator(".backup-facts")).to_contain_text("at most 30 s")
        expect(page.locator(".backup-facts")).not_to_contain_text("BACKUP_LOCK_TIMEOUT")
    finally:
        holder.close()
    expect(page.locator(f"[data-restore-id='{restore.pk}'][data-field='status']")).to_have_text("Completed", timeout=60_000)
    expect(phase).to_have_text("-")
    assert Restore.objects.get().status == RestoreStatus.COMPLETED


def test_buttons_use_the_admin_classes_and_cancel_goes_to_the_list(page, live_server, django_user_model, backup_dir):
    """Newcomer issue 6, on pages opened directly (a new tab: no history to go back to)."""
    failed = BackupJob.objects.create(database="target", status=BackupStatus.FAILED, compression="zstd", error="x")
    BackupJob.objects.filter(pk=failed.pk).update(created_at=failed.created_at - timedelta(days=30))
    log_in(page, live_server, django_user_model)
    changelist = f"{live_server.url}/admin/backups_app/backupjob/"

    create = page.context.new_page()
    create.goto(changelist + "create/")
    start, cancel = create.locator("input[value='Start backup']").bounding_box(), create.locator("text=Cancel").bounding_box()
    assert abs(start["y"] - cancel["y"]) <= 1 and abs(start["height"] - cancel["height"]) <= 1, (start, cancel)
    create.click("text=Cancel")
    expect(create).to_have_url(changelist)

    cleanup = page.context.new_page()
    cleanup.goto(changelist + "cleanup/")
    preview, delete = cleanup.get_by_role("button", name="Preview"), cleanup.locator("input[value='Yes, delete them']")
    background = preview.evaluate("b => getComputedStyle(b).backgroundColor")
    assert background != delete.evaluate("b => getComputedStyle(b).backgroundColor")
    field, button = cleanup.locator("#id_retention_days").bounding_box(), preview.bounding_box()
    assert button["y"] >= field["y"] + field["height"] + 8 or button["x"] >= field["x"] + field["width"] + 8
    preview.click()
    expect(cleanup.locator(".cleanup-failed li")).to_have_count(1)  # still a preview: nothing deleted
    assert BackupJob.objects.filter(pk=failed.pk).exists()
    cleanup.click("text=No, take me back")
    expect(cleanup).to_have_url(changelist)
