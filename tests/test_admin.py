"""The backup console in the Django admin, through Django's test client.

Backups here are real (the `sqlite` alias, and pagila on PostgreSQL where a worker runs them).
Tests whose jobs a real `manage.py backup_worker` runs are transactional: the worker cannot see
uncommitted rows, and a job is queued only once the request's data is committed (so the
non-transactional tests queue none).
"""

import hashlib
import os
import re
import socket
import time
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.contrib.admin import helpers
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from django.urls import reverse

from backups_app import services
from backups_app.schedule import next_run_of
from backups_app.engines import get_engine
from backups_app.models import BackupJob, BackupStatus, Restore, RestorePhase, RestoreStatus

from .conftest import fingerprint, psql, url

SQLITE = pytest.mark.django_db(databases=["default", "sqlite"])


@pytest.fixture
def make_user(django_user_model):
    def make(username, *codenames, staff=True):
        user = django_user_model.objects.create_user(username, password="pw", is_staff=staff)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label="backups_app", codename__in=codenames))
        return user

    return make


@pytest.fixture
def backup():
    """A completed backup of the `sqlite` database, made by the core."""
    return services.create_backup(database="sqlite", description="nightly")


def wait_for(client, *, backups=(), restores=(), timeout=60):
    """Poll the status JSON like console.js does until nothing it follows is active; return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        data = client.get(url("status"), {"backups": ",".join(map(str, backups)),
                                           "restores": ",".join(map(str, restores))}).json()
        if not any(item["active"] for item in data["backups"] + data["restores"]):
            return data
        assert time.monotonic() < deadline, data
        time.sleep(0.3)


def restore_safety_id(restore):
    return Restore.objects.get(pk=restore.pk).safety_backup_id


def restore_log_entries(restore):
    return LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Restore), object_id=str(restore.pk))


# Access ----------------------------------------------------------------------------------------

VIEWS = [
    # (method, url name, needs the object, permission the staff user lacks)
    ("get", "changelist", False, "view_backupjob"),
    ("get", "change", True, "view_backupjob"),
    ("get", "status", False, "view_backupjob"),
    ("get", "create", False, "add_backupjob"),
    ("post", "create", False, "add_backupjob"),
    ("get", "download", True, "download_backupjob"),
    ("post", "verify", True, "view_backupjob"),
    ("post", "drill", True, "restore_backupjob"),
    ("get", "restore", True, "restore_backupjob"),
    ("get", "cleanup", False, "delete_backupjob"),
    ("post", "cleanup", False, "delete_backupjob"),
    ("get", "delete", True, "delete_backupjob"),
]
ALL_PERMISSIONS = ["view_backupjob", "add_backupjob", "delete_backupjob", "restore_backupjob", "download_backupjob"]


@SQLITE
@pytest.mark.parametrize("method, name, with_object, permission", VIEWS)
def test_every_view_refuses_anonymous_non_staff_and_staff_without_its_permission(
    client, make_user, backup, method, name, with_object, permission
):
    target = url(name, backup.pk) if with_object else url(name)
    send = getattr(client, method)
    login = reverse("admin:login")

    response = send(target)
    assert response.status_code == 302 and response["Location"].startswith(login)

    client.force_login(make_user("visitor", *ALL_PERMISSIONS, staff=False))
    response = send(target)
    assert response.status_code == 302 and response["Location"].startswith(login)

    others = [p for p in ALL_PERMISSIONS if p != permission and (permission != "view_backupjob")]
    client.force_login(make_user("operator", *others))
    assert send(target).status_code == 403


@SQLITE
@pytest.mark.parametrize("method, name, with_object, permission", VIEWS)
def test_superuser_reaches_every_view(admin_client, backup, method, name, with_object, permission):
    target = url(name, backup.pk) if with_object else url(name)
    response = getattr(admin_client, method)(target)
    if (method, name) in (("post", "verify"), ("post", "drill")):  # does it, then goes back to the backup's page
        assert response.status_code == 302 and response["Location"] == url("change", backup.pk)
    else:  # a page, not an error redirect
        assert response.status_code == 200


@SQLITE
def test_operator_may_create_and_download_but_not_restore(client, make_user, backup):
    client.force_login(make_user("operator", "view_backupjob", "add_backupjob", "download_backupjob"))
    changelist = client.get(url("changelist"))
    assert "Create backup" in changelist.text
    assert 'value="restore_selected"' not in changelist.text
    assert client.get(url("download", backup.pk)).status_code == 200
    assert client.get(url("restore", backup.pk)).status_code == 403
    response = client.post(url("changelist"), {
        "action": "restore_selected", helpers.ACTION_CHECKBOX_NAME: [backup.pk], "post": "yes",
        "database": "sqlite", "safety_backup": "on", "confirm_database": "sqlite",
    })
    assert not Restore.objects.exists()
    assert response.status_code == 302  # "No action selected": the action is not offered to this user


@SQLITE
def test_plain_add_and_change_forms_are_closed(admin_client, backup):
    assert admin_client.get(reverse("admin:backups_app_backupjob_add")).status_code == 403
    response = admin_client.post(url("change", backup.pk), {"description": "edited"})
    assert response.status_code == 403
    backup.refresh_from_db()
    assert backup.description == "nightly"


def test_state_changing_views_refuse_get(admin_client):
    assert admin_client.get(url("verify", 1)).status_code == 405


# The change list and the detail page ------------------------------------------------------------

@SQLITE
def test_change_list_shows_columns_stats_and_tools(admin_client, backup):
    BackupJob.objects.create(database="sqlite", status=BackupStatus.FAILED, compression="zstd", error="disk full")
    response = admin_client.get(url("changelist"))
    text = response.text
    assert response.status_code == 200
    assert 'class="backup-badge backup-badge--completed"' in text and "backup-badge--failed" in text
    assert backup.checksum_sha256[:8] not in text  # the checksum is on the detail page only
    assert '<span class="backup-clipped" title="nightly">nightly</span>' in text
    assert "admin" not in response.context["cl"].result_list[1].requested_by_name
    assert 'id="backup-stats"' in text
    stats = response.context["stats"]
    assert (stats["total"], stats["completed"], stats["failed"]) == (2, 1, 1)
    assert stats["total_size"] == backup.size_bytes
    assert "Create backup" in text and "Clean up" in text
    assert 'data-status-url="%s"' % url("status") in text
    assert "backups_app/console.js" in text
    # Search and filters
    assert admin_client.get(url("changelist"), {"q": "nightly"}).context["cl"].result_count == 1
    assert admin_client.get(url("changelist"), {"status__exact": "failed"}).context["cl"].result_count == 1


@SQLITE
def test_stats_panel_highlights_a_database_whose_newest_backup_is_too_old(admin_client, backup, settings):
    settings.BACKUP_MAX_AGE_HOURS = 26
    settings.BACKUP_SCHEDULE = "0 2 * * *"
    stale = admin_client.get(url("changelist")).context["stats"]
    rows = {row["alias"]: row for row in stale["database_rows"]}
    assert not rows["sqlite"]["stale"] and rows["default"]["stale"]  # default: never backed up
    assert stale["next_run"].hour == 2 and stale["next_run"].minute == 0
    BackupJob.objects.filter(pk=backup.pk).update(created_at=backup.created_at - timedelta(hours=30))
    text = admin_client.get(url("changelist")).text
    assert 'backup-stat backup-stat--stale" data-stat="latest-sqlite"' in text


def test_next_scheduled_run():
    now = datetime(2025, 3, 14, 10, 30, 15, tzinfo=dt_timezone.utc)  # a Friday
    assert next_run_of("0 2 * * *", now) == datetime(2025, 3, 15, 2, 0, tzinfo=dt_timezone.utc)
    assert next_run_of("*/15 * * * *", now) == datetime(2025, 3, 14, 10, 45, tzinfo=dt_timezone.utc)
    assert next_run_of("30 4 * * mon", now) == datetime(2025, 3, 17, 4, 30, tzinfo=dt_timezone.utc)
    assert next_run_of("@monthly", now) == datetime(2025, 4, 1, 0, 0, tzinfo=dt_timezone.utc)
    with pytest.raises(ValueError):
        next_run_of("61 * * * *", now)


@SQLITE
def test_detail_page_is_read_only_with_manifest_restore_history_and_tools(admin_client, backup):
    Restore.objects.create(backup=backup, database="sqlite", status=RestoreStatus.FAILED, error="it broke",
                           requested_by_name="alice")
    response = admin_client.get(url("change", backup.pk))
    text = response.text
    assert response.status_code == 200
    assert 'name="_save"' not in text  # read-only
    assert backup.checksum_sha256 in text and backup.file_name in text
    assert "django-backups-manifest/1" in text  # the manifest
    assert "it broke" in text and "alice" in text  # the restore history
    assert url("download", backup.pk) in text and url("restore", backup.pk) in text and url("verify", backup.pk) in text


@SQLITE
def test_detail_page_shows_the_error_of_a_failed_backup(admin_client):
    job = BackupJob.objects.create(database="sqlite", status=BackupStatus.FAILED, compression="zstd",
                                   error="pg_dump is not installed or not on PATH")
    text = admin_client.get(url("change", job.pk)).text
    assert "pg_dump is not installed or not on PATH" in text
    assert f'data-usable-backup="{job.pk}" hidden' in text  # no download or restore of a failed backup


# Create -------------------------------------------------------------------------------------------

@SQLITE
def test_create_form_records_a_pending_job_and_returns_at_once(admin_client, admin_user):
    form = admin_client.get(url("create"))
    assert form.status_code == 200 and 'name="compression"' in form.text
    response = admin_client.post(url("create"), {"database": "sqlite", "description": "before upgrade",
                                                 "compression": "gzip"})
    assert response.status_code == 302 and response["Location"] == url("changelist")
    job = BackupJob.objects.get()
    assert (job.status, job.database, job.description, job.compression) == ("pending", "sqlite", "before upgrade", "gzip")
    assert job.requested_by == admin_user and job.requested_by_name == "admin"
    entry = LogEntry.objects.get(object_id=str(job.pk))
    assert entry.action_flag == ADDITION and entry.user == admin_user


@SQLITE
def test_create_while_that_database_is_busy_queues_the_backup_behind(admin_client):
    running = BackupJob.objects.create(database="sqlite", status=BackupStatus.RUNNING, compression="zstd")
    response = admin_client.post(url("create"), {"database": "sqlite", "compression": "zstd"})
    assert response.status_code == 302
    assert BackupJob.objects.exclude(pk=running.pk).get().status == BackupStatus.PENDING


@SQLITE
def test_create_of_an_unknown_database_is_a_form_error_and_records_nothing(admin_client):
    response = admin_client.post(url("create"), {"database": "nope", "compression": "zstd"})
    assert response.status_code == 200 and "Select a valid choice" in response.text
    assert not BackupJob.objects.exists()


@pytest.mark.django_db(transaction=True, databases=["default", "target"])
def test_created_backup_runs_on_the_worker_and_the_status_follows_it(admin_client, pagila, worker, backup_dir):
    worker()
    admin_client.post(url("create"), {"database": pagila, "description": "from the console", "compression": "zstd"})
    job = BackupJob.objects.get()
    assert job.status == BackupStatus.PENDING and job.task_id  # queued; the request did not wait for the backup

    data = wait_for(admin_client, backups=[job.pk])

    item = data["backups"][0]
    job.refresh_from_db()
    assert job.status == BackupStatus.COMPLETED and job.pid != os.getpid() and job.hostname == socket.gethostname()
    assert item["status"] == "completed" and item["checksum"] == job.checksum_sha256
    assert item["fields"]["size"] != "-" and item["fields"]["duration"] != "-"
    assert hashlib.sha256((backup_dir / job.file_name).read_bytes()).hexdigest() == job.checksum_sha256


@SQLITE
def test_a_failed_backup_can_be_retried_with_the_same_options(admin_client, admin_user):
    failed = BackupJob.objects.create(database="sqlite", status=BackupStatus.FAILED, compression="gzip",
                                      description="nightly", error="the worker died")
    response = admin_client.post(url("changelist"), {"action": "retry_selected",
                                                     helpers.ACTION_CHECKBOX_NAME: [failed.pk]})
    assert response.status_code == 302
    again = BackupJob.objects.exclude(pk=failed.pk).get()
    assert (again.status, again.database, again.compression, again.description, again.requested_by) == (
        BackupStatus.PENDING, "sqlite", "gzip", "nightly", admin_user)


# Download and verify -------------------------------------------------------------------------------

@SQLITE
def test_download_streams_the_archive_with_length_checksum_and_name(admin_client, admin_user, backup, backup_dir):
    response = admin_client.get(url("download", backup.pk))
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content)
    assert body == (backup_dir / backup.file_name).read_bytes()
    assert int(response["Content-Length"]) == backup.size_bytes
    assert response["X-Checksum-SHA256"] == hashlib.sha256(body).hexdigest() == backup.checksum_sha256
    assert response["Content-Type"] == "application/octet-stream"
    assert f'attachment; filename="{os.path.basename(backup.file_name)}"' == response["Content-Disposition"]
    assert LogEntry.objects.get(object_id=str(backup.pk), action_flag=CHANGE).get_change_message() == "Downloaded the archive."


@SQLITE
def test_download_of_a_backup_without_archive_explains_why(admin_client):
    job = BackupJob.objects.create(database="sqlite", status=BackupStatus.FAILED, compression="zstd")
    response = admin_client.get(url("download", job.pk), follow=True)
    assert f"Backup #{job.pk} is failed and has no archive to download." in response.text


@SQLITE
def test_verify_reports_intact_and_damaged_archives(admin_client, backup, backup_dir):
    response = admin_client.post(url("verify", backup.pk), follow=True)
    assert f"Backup #{backup.pk} is intact" in response.text
    with open(backup_dir / backup.file_name, "r+b") as archive:
        archive.seek(10)
        archive.write(b"\x00\x01\x02")
    response = admin_client.post(url("changelist"), {"action": "verify_selected",
                                                     helpers.ACTION_CHECKBOX_NAME: [backup.pk]}, follow=True)
    assert f"Backup #{backup.pk} is damaged" in response.text and "does not match its checksum" in response.text
    messages = [entry.get_change_message() for entry in LogEntry.objects.order_by("pk")]
    assert messages[0].startswith("Verified") and messages[1].startswith("Verification failed")


# Restore ------------------------------------------------------------------------------------------

def restore_post(backup, **fields):
    return {"action": "restore_selected", helpers.ACTION_CHECKBOX_NAME: [backup.pk], **fields}


@SQLITE
def test_restore_action_shows_a_confirmation_page_first(admin_client, backup):
    response = admin_client.post(url("changelist"), restore_post(backup))
    text = response.text
    assert response.status_code == 200
    assert "Restore backup #%s?" % backup.pk in text
    assert "What will be overwritten" in text and connections["sqlite"].settings_dict["NAME"] in text
    assert backup.checksum_sha256 in text and "sqlite3" in text  # the archive's manifest
    assert "<code>auth_user</code>" in text  # the tables, read from the archive itself
    assert re.search(r'<input type="checkbox" name="safety_backup"[^>]* checked>', text)  # on by default
    assert 'name="post" value="yes"' in text and "cancel-link" in text
    assert not Restore.objects.exists()
    # The button on the detail page leads to the same page.
    assert "What will be overwritten" in admin_client.get(url("restore", backup.pk)).text


@SQLITE
def test_restore_needs_the_database_name_typed_and_one_backup(admin_client, backup):
    name = connections["sqlite"].settings_dict["NAME"]
    response = admin_client.post(url("changelist"), restore_post(
        backup, post="yes", database="sqlite", safety_backup="on", confirm_database="sqlit"))
    assert f"Type sqlite or {name} exactly to confirm." in response.text
    other = services.create_backup(database="sqlite")
    response = admin_client.post(url("changelist"), {
        "action": "restore_selected", helpers.ACTION_CHECKBOX_NAME: [backup.pk, other.pk]}, follow=True)
    assert "Select exactly one backup to restore." in response.text
    assert not Restore.objects.exists()


@SQLITE
def test_restore_confirmation_shows_alias_and_name_side_by_side_and_accepts_either(admin_client, backup):
    """Issue "newcomer" 2: the page showed the real database name but accepted only the alias."""
    name = connections["sqlite"].settings_dict["NAME"]
    page = admin_client.get(url("restore", backup.pk)).text
    assert f"<td><code>sqlite</code></td><td><code>{name}</code></td>" in page
    assert f'data-confirm-hint="sqlite">Type sqlite or {name} exactly to confirm.</div>' in page  # shown, not hidden
    for typed in (name, "sqlite"):
        response = admin_client.post(url("changelist"), restore_post(
            backup, post="yes", database="sqlite", confirm_database=typed))
        restore = Restore.objects.latest("pk")
        assert response.status_code == 302 and response["Location"] == url("restore_status", restore.pk), typed
        Restore.objects.filter(pk=restore.pk).update(status=RestoreStatus.FAILED)  # as if it ended: frees the database
    assert Restore.objects.count() == 2


@SQLITE
def test_confirmed_restore_records_a_pending_restore_and_shows_its_status(admin_client, admin_user, backup):
    response = admin_client.post(url("changelist"), restore_post(
        backup, post="yes", database="sqlite", safety_backup="on", confirm_database="sqlite"))
    restore = Restore.objects.get()
    assert response.status_code == 302 and response["Location"] == url("restore_status", restore.pk)
    assert (restore.status, restore.backup, restore.database, restore.requested_by) == ("pending", backup, "sqlite", admin_user)
    assert not restore_log_entries(restore).exists()  # written once it has finished
    page = admin_client.get(response["Location"])
    assert f'data-restore-id="{restore.pk}" data-field="status" data-status="pending"' in page.text


@pytest.mark.django_db(transaction=True, databases=["default", "target"])
def test_restore_from_the_console_brings_the_data_back_and_is_logged_once(admin_client, pagila, worker):
    worker()
    before = fingerprint(pagila)
    backup = services.create_backup(database=pagila)
    psql(pagila, "DELETE FROM payment WHERE payment_id % 2 = 0; UPDATE film SET title = 'changed'")

    admin_client.post(url("changelist"), restore_post(
        backup, post="yes", database=pagila, safety_backup="on", confirm_database=pagila))
    restore = Restore.objects.get()
    data = wait_for(admin_client, restores=[restore.pk])
    wait_for(admin_client, restores=[restore.pk])  # a second poll writes no second LogEntry

    assert data["restores"][0]["status"] == "completed"
    assert data["restores"][0]["safety_backup"]["status"] == "completed"
    assert data["restores"][0]["links"]["safety"] == url("change", restore_safety_id(restore))
    assert fingerprint(pagila) == before
    assert Restore.objects.get().phase == RestorePhase.SWAPPING  # its last step (auto: a swap, as superuser)
    entry = restore_log_entries(restore).get()
    assert entry.change_message == f"Restored backup #{backup.pk} into database {pagila}."


@pytest.mark.django_db(transaction=True, databases=["default"])
def test_restore_of_the_application_database_is_logged_after_it_finished(admin_client, admin_user, worker):
    """Restoring `default` puts the LogEntry table back to the backup's state: an entry written when the
    restore was asked for would vanish, so the task writes it once the restore has finished. The queue's
    own rows are kept too: the task that ran the restore is recorded as successful."""
    from django_tasks_db.models import DBTaskResult

    worker()
    backup = services.create_backup(database="default", acting_user=admin_user)
    admin_client.post(url("verify", backup.pk))  # a LogEntry made after the backup: the restore removes it
    assert LogEntry.objects.count() == 1

    # In place: a swap would end this test's own session in the catalog's database (the test client keeps
    # one connection across requests); tests/test_restore_swap.py restores the catalog's database by swap.
    admin_client.post(url("changelist"), restore_post(
        backup, post="yes", database="default", confirm_database="default", strategy="in-place"))
    restore = Restore.objects.get()
    data = wait_for(admin_client, restores=[restore.pk])

    assert data["restores"][0]["status"] == "completed"
    entry = LogEntry.objects.get()  # the verify entry is gone with the restore; the restore's own is there
    assert entry.object_id == str(restore.pk) and entry.user == admin_user
    assert Restore.objects.get().status == RestoreStatus.COMPLETED
    assert Restore.objects.get().phase == RestorePhase.KEEPING_CATALOG  # its last step said the catalog stays
    task = DBTaskResult.objects.get(id=Restore.objects.get().task_id)
    assert task.status == "SUCCESSFUL" and task.return_value == RestoreStatus.COMPLETED


@SQLITE
def test_a_failed_restore_says_at_which_step_it_stopped(admin_client, backup, backup_dir, settings):
    """Newcomer issue 5: the restore's page shows its phase and, once failed, where it stopped."""
    settings.BACKUP_LOCK_TIMEOUT = 45
    with open(backup_dir / backup.file_name, "r+b") as archive:
        archive.seek(10)
        archive.write(b"\x00\x01\x02")
    with pytest.raises(services.BackupError):
        services.restore_backup(backup=backup, database="sqlite")
    Restore.objects.update(pid=None)  # ran in this test's process, which the page would take for a running one
    restore = Restore.objects.get()

    data = admin_client.get(url("status"), {"restores": restore.pk}).json()
    assert data["restores"][0]["fields"]["phase"] == "Stopped while checking the archive's checksum"
    page = admin_client.get(url("restore_status", restore.pk)).text
    assert 'data-field="phase">Stopped while checking the archive&#x27;s checksum</span>' in page
    assert "at most 45 s" in page and "BACKUP_LOCK_TIMEOUT" not in page


@SQLITE
def test_pages_and_the_status_endpoint_write_nothing(admin_client, backup):
    """GET requests read state only: even a job whose worker died is left to the workers' sweep."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    dead = Restore.objects.create(backup=backup, database="sqlite", status=RestoreStatus.RUNNING)
    pages = [url("changelist"), url("change", backup.pk), url("restore_status", dead.pk), "/health/",
             url("status") + f"?backups={backup.pk}&restores={dead.pk}&stats=1"]
    for page in pages:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(page).status_code in (200, 503), page
        writes = [q["sql"] for q in queries if q["sql"].split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
        assert writes == [], page
    assert Restore.objects.get(pk=dead.pk).status == RestoreStatus.RUNNING


@SQLITE
def test_a_failed_restore_is_retried_through_its_confirmation_page(admin_client, backup):
    """Retry asks again for what a restore needs a person to say: the database typed, the trust."""
    failed = Restore.objects.create(backup=backup, database="sqlite", status=RestoreStatus.FAILED, error="worker died")
    page = admin_client.get(url("restore_status", failed.pk)).text
    retry = url("restore", backup.pk) + "?database=sqlite"
    assert f'href="{retry}"' in page

    confirmation = admin_client.get(retry)
    assert confirmation.status_code == 200 and confirmation.context["form"]["database"].value() == "sqlite"
    assert Restore.objects.count() == 1  # nothing queued until confirmed


# Cleanup and delete ----------------------------------------------------------------------------------

@SQLITE
def test_cleanup_previews_then_deletes_exactly_that(admin_client, backup, backup_dir):
    old = services.create_backup(database="sqlite", description="old")
    BackupJob.objects.filter(pk=old.pk).update(created_at=old.created_at - timedelta(days=30))
    failed = BackupJob.objects.create(database="sqlite", status=BackupStatus.FAILED, compression="zstd", error="x")
    BackupJob.objects.filter(pk=failed.pk).update(created_at=failed.created_at - timedelta(days=8))
    leftover = backup_dir / "sqlite" / ".sqlite-x.sqlite3.zst.partial"
    leftover.write_bytes(b"12345")
    newest = services.create_backup(database="sqlite", description="newest")

    preview = admin_client.get(url("cleanup"), {"retention_days": 7})
    plan = preview.context["plan"]
    assert [job.pk for job in plan.expired] == [old.pk] and [job.pk for job in plan.failed] == [failed.pk]
    assert plan.leftovers == ["sqlite/.sqlite-x.sqlite3.zst.partial"]
    assert plan.bytes_freed == old.size_bytes + 5
    assert f"Backup #{old.pk} of sqlite</a>" in preview.text and "sqlite/.sqlite-x.sqlite3.zst.partial" in preview.text
    assert BackupJob.objects.filter(pk=old.pk).exists()  # a preview deletes nothing

    # A plan that changed since the preview is shown again, not carried out.
    response = admin_client.post(url("cleanup"), {"retention_days": 7, "post": "yes", "plan": "stale"})
    assert "has changed since the preview" in response.text and BackupJob.objects.filter(pk=old.pk).exists()

    response = admin_client.post(url("cleanup"), {"retention_days": 7, "post": "yes",
                                                  "plan": preview.context["plan_signature"]}, follow=True)
    assert "Cleanup deleted 2 backups and 1 leftover files" in response.text
    assert set(BackupJob.objects.values_list("pk", flat=True)) == {backup.pk, newest.pk}
    assert not (backup_dir / old.file_name).exists() and not leftover.exists()
    assert set(LogEntry.objects.filter(action_flag=DELETION).values_list("object_id", flat=True)) == {str(old.pk), str(failed.pk)}


@SQLITE
def test_delete_removes_record_archive_and_manifest(admin_client, backup, backup_dir):
    archive = backup_dir / backup.file_name
    assert archive.exists() and (backup_dir / (backup.file_name + ".json")).exists()
    confirmation = admin_client.get(url("delete", backup.pk))
    assert confirmation.status_code == 200
    # The confirmation names the files that go with the record.
    assert f"File <code>{backup.file_name}</code> of backup #{backup.pk}" in confirmation.text
    assert f"File <code>{backup.file_name}.json</code> of backup #{backup.pk}" in confirmation.text
    assert "Archive and manifest files: 2" in confirmation.text
    response = admin_client.post(url("delete", backup.pk), {"post": "yes"})
    assert response.status_code == 302 and response["Location"] == url("changelist")  # not the admin's home
    assert not BackupJob.objects.exists()
    assert not archive.exists() and not (backup_dir / (backup.file_name + ".json")).exists()
    assert LogEntry.objects.get().action_flag == DELETION


@SQLITE
def test_deleting_several_backups_names_their_files_first(admin_client, backup, backup_dir):
    other = services.create_backup(database="sqlite")
    selected = {"action": "delete_selected", helpers.ACTION_CHECKBOX_NAME: [backup.pk, other.pk]}
    confirmation = admin_client.post(url("changelist"), selected).text
    for job in (backup, other):
        assert f"File <code>{job.file_name}</code> of backup #{job.pk}" in confirmation
        assert f"File <code>{job.file_name}.json</code> of backup #{job.pk}" in confirmation
    response = admin_client.post(url("changelist"), {**selected, "post": "yes"})
    assert response.status_code == 302 and response["Location"] == url("changelist")
    assert not BackupJob.objects.exists() and not [path for path in backup_dir.rglob("*") if path.is_file()]


@SQLITE
def test_a_running_backup_cannot_be_deleted(admin_client):
    job = BackupJob.objects.create(database="sqlite", status=BackupStatus.RUNNING, compression="zstd")
    with get_engine("sqlite").lock():  # as the process running it holds the lock
        assert admin_client.post(url("delete", job.pk), {"post": "yes"}).status_code == 403
        response = admin_client.post(url("changelist"), {
            "action": "delete_selected", helpers.ACTION_CHECKBOX_NAME: [job.pk], "post": "yes"})
        assert response.status_code == 403
    assert BackupJob.objects.filter(pk=job.pk).exists()


# Scale -------------------------------------------------------------------------------------------

@SQLITE
def test_change_list_query_count_does_not_grow_with_the_catalog(admin_client, django_assert_max_num_queries):
    """Issue 5: at most 10 queries for the list and its stats panel, with 10 or 10,000 backups."""
    def make(count, start):
        BackupJob.objects.bulk_create(
            BackupJob(database=("default", "sqlite")[i % 2], engine="sqlite", status=BackupStatus.COMPLETED,
                      compression="zstd", file_name=f"x/{start + i}.sqlite3.zst", size_bytes=1000 + i,
                      checksum_sha256="0" * 64, requested_by_name="cron")
            for i in range(count)
        )

    make(10, 0)
    with django_assert_max_num_queries(10):
        assert admin_client.get(url("changelist")).status_code == 200
    make(9990, 10)
    with django_assert_max_num_queries(10):
        response = admin_client.get(url("changelist"))
    assert response.status_code == 200 and "10000" in response.text.replace(",", "")
