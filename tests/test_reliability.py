"""Issue 6 guarantees not proven elsewhere: CSRF, bad ids in URLs, secrets in pages, bad settings,
and a restore of the application's own database while the admin is being used."""

import subprocess
import sys
import threading

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connections
from django.test import Client
from django.urls import reverse

from backups_app import services
from backups_app.models import BackupJob, BackupStatus, Restore, RestoreStatus

from .conftest import ROOT, psql, url


@pytest.mark.django_db(databases=["default", "sqlite"])
def test_state_changing_posts_without_csrf_token_are_refused(admin_user):
    backup = services.create_backup(database="sqlite")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    posts = [
        (url("create"), {"database": "sqlite", "compression": "zstd"}),
        (url("verify", backup.pk), {}),
        (url("restore", backup.pk), {"post": "yes", "database": "sqlite", "confirm_database": "sqlite"}),
        (url("cleanup"), {"post": "yes", "retention_days": 0}),
        (url("delete", backup.pk), {"post": "yes"}),
        (url("changelist"), {"action": "restore_selected", "_selected_action": [backup.pk], "post": "yes"}),
    ]
    for path, data in posts:
        assert client.post(path, data).status_code == 403, path
    assert list(BackupJob.objects.values_list("pk", "status")) == [(backup.pk, BackupStatus.COMPLETED)]
    assert Restore.objects.count() == 0


@pytest.mark.django_db(databases=["default"])
@pytest.mark.parametrize("bad_id", ["999999", "abc", "1%2F..%2F..%2Fetc%2Fpasswd"])
def test_unknown_and_malformed_ids_in_admin_urls_are_not_found(admin_client, bad_id):
    def path(name):
        return url(name, "0").replace("/0/", f"/{bad_id}/")

    for name in ("download", "restore"):
        assert admin_client.get(path(name)).status_code == 404, name
    assert admin_client.post(path("verify")).status_code == 404
    # The change page is Django's own: it sends the user to the admin index with a message.
    response = admin_client.get(path("change"), follow=True)
    assert response.redirect_chain == [(reverse("admin:index"), 302)]
    assert "doesn’t exist. Perhaps it was deleted?" in response.content.decode()


@pytest.mark.django_db(transaction=True, databases=["default", "target"])
def test_database_password_never_appears_in_admin_pages_or_health(admin_client, pagila):
    secret = "S3cret-never-on-a-page"
    params = connections[pagila].settings_dict
    params["PASSWORD"] = secret  # trust authentication ignores it; every tool still receives it
    try:
        good = services.create_backup(database=pagila)
        params["PORT"], port = 1, params["PORT"]  # an unreachable server: its error lands in the record
        pending = BackupJob.objects.create(database=pagila, compression="zstd")  # as the admin and cron make it
        with pytest.raises(services.BackupError):
            services.create_backup(database=pagila, job=pending)
        params["PORT"] = port
        bad = BackupJob.objects.get(status=BackupStatus.FAILED)
        pages = [url("changelist"), url("change", good.pk), url("change", bad.pk), url("restore", good.pk),
                 url("cleanup"), url("status") + f"?backups={good.pk},{bad.pk}", "/health/"]
        for path in pages:
            response = admin_client.get(path)
            assert response.status_code in (200, 503), path
            assert secret not in response.content.decode(), path
        assert secret not in bad.error and bad.error
        assert all(secret not in entry.change_message for entry in LogEntry.objects.all())
    finally:
        params["PASSWORD"] = ""


@pytest.mark.parametrize("name, value, message", [
    ("BACKUP_RETENTION_DAYS", -1, "BACKUP_RETENTION_DAYS is -1; it must be from 0 to 36500 days."),
    ("BACKUP_RETENTION_DAYS", 1000000, "BACKUP_RETENTION_DAYS is 1000000; it must be from 0 to 36500 days."),
    ("BACKUP_COMPRESSION", "lz4", "BACKUP_COMPRESSION is 'lz4'; use one of zstd, gzip, none."),
    ("BACKUP_LOCK_TIMEOUT", 0, r"BACKUP_LOCK_TIMEOUT is 0; it must be from 1 to 2147483 seconds \(the most PostgreSQL"),
    ("BACKUP_LOCK_TIMEOUT", 3000000, r"BACKUP_LOCK_TIMEOUT is 3000000; it must be from 1 to 2147483 seconds \(the most"),
])
def test_invalid_settings_stop_start_up_with_a_system_check_error(settings, name, value, message):
    setattr(settings, name, value)
    with pytest.raises(SystemCheckError, match=message):
        call_command("check")


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True, databases=["default"])
def test_restore_of_the_application_database_while_the_admin_is_used(admin_user):
    """Requests made during an in-place restore wait for its transaction and then see the restored data;
    none fails, and the catalog and the restore record survive. (A swap ends the sessions connected at the
    swap moment: tests/test_restore_swap.py covers a client during a swap.)"""
    client = Client()
    client.force_login(admin_user)  # the session exists before the backup, so it survives the restore
    backup = services.create_backup(database="default", acting_user=admin_user)
    psql("default", "INSERT INTO auth_group (name) VALUES ('made after the backup')")
    statuses, stop = [], threading.Event()

    def use_the_admin():
        while not stop.is_set():
            statuses.append(client.get(url("changelist")).status_code)
            statuses.append(client.get(url("status"), {"backups": backup.pk}).status_code)
        connections.close_all()

    user = threading.Thread(target=use_the_admin)
    user.start()
    try:
        restore = services.restore_backup(backup=backup, acting_user=admin_user, strategy="in-place")
    finally:
        stop.set()
        user.join()

    assert restore.status == RestoreStatus.COMPLETED
    assert statuses and set(statuses) == {200}
    assert psql("default", "SELECT count(*) FROM auth_group WHERE name = 'made after the backup'").strip() == "0"
    assert Restore.objects.get(pk=restore.pk).status == RestoreStatus.COMPLETED
    assert BackupJob.objects.filter(pk__in=[backup.pk, restore.safety_backup.pk]).count() == 2
    assert client.get(url("changelist")).status_code == 200


def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path):
    # Empty, not absent: a developer's .env (read without overriding the environment) must not fill it in.
    env = {"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "",
           "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "DJANGO_SECRET_KEY is not set: set it in the environment or .env" in result.stderr
    env["DJANGO_SECRET_KEY"] = "a-real-secret-for-this-test"
    assert subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True).returncode == 0
