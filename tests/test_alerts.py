"""Alerts: a failed job or a CRITICAL scheduled check reaches a person by e-mail and webhook."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail

from backups_app import notifications, schedule, tasks
from backups_app.models import BackupJob, BackupStatus, BackupTrigger

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target"])


class Webhook:
    """A real HTTP server on a free local port that records the JSON posted to it; answers `statuses` in turn."""

    def __init__(self, statuses=(200,)):
        self.posts, self.statuses = [], list(statuses)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.posts.append({"body": json.loads(body), "content_type": self.headers["Content-Type"]})
                status = owner.statuses.pop(0) if len(owner.statuses) > 1 else owner.statuses[0]
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/hook-secret"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.stop()


@pytest.fixture
def alerting(settings, webhook):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.BACKUP_NOTIFY_EMAILS = ["ops@example.com"]
    settings.BACKUP_NOTIFY_WEBHOOK_URL = webhook.url
    settings.BACKUP_SITE_URL = "https://backups.example.com/"
    settings.BACKUP_NOTIFY_ON_SUCCESS = False
    return webhook


def test_a_failing_scheduled_backup_sends_one_email_and_one_webhook_post(alerting, monkeypatch, tmp_path):
    runs = schedule.run_scheduled_backups(["target"])
    job = runs[0].job
    assert job.trigger == BackupTrigger.SCHEDULED
    # The worker's host has no pg_dump: the backup fails there (the task runs in this process, as a worker would).
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tasks.run_backup.call(job.pk) == BackupStatus.FAILED
    monkeypatch.undo()

    job.refresh_from_db()
    assert job.status == BackupStatus.FAILED and "pg_dump is not installed" in job.error
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.com"]
    assert message.subject == f"[backups] Backup #{job.pk} of database target failed"
    link = f"https://backups.example.com/admin/backups_app/backupjob/{job.pk}/change/"
    assert "Database: target" in message.body and f"Job: backup #{job.pk}" in message.body
    assert f"Reason: {job.error}" in message.body and link in message.body

    assert len(alerting.posts) == 1
    post = alerting.posts[0]
    assert post["content_type"] == "application/json"
    assert post["body"]["text"] == message.body  # Slack shows `text`
    assert (post["body"]["event"], post["body"]["status"], post["body"]["database"], post["body"]["url"]) == (
        "backup", "failed", "target", link)


def test_a_completed_backup_is_announced_only_with_notify_on_success(alerting, pagila, settings):
    from backups_app import services

    services.create_backup(database=pagila)
    assert mail.outbox == [] and alerting.posts == []
    settings.BACKUP_NOTIFY_ON_SUCCESS = True
    job = services.create_backup(database=pagila)
    assert [message.subject for message in mail.outbox] == [f"[backups] Backup #{job.pk} of database target completed"]
    assert [post["body"]["status"] for post in alerting.posts] == ["ok"]


def test_a_webhook_that_fails_once_is_retried_and_one_that_keeps_failing_never_fails_the_job(settings, caplog):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.BACKUP_NOTIFY_EMAILS = []
    settings.ADMINS = []
    flaky = Webhook(statuses=(500, 200))
    settings.BACKUP_NOTIFY_WEBHOOK_URL = flaky.url
    job = BackupJob.objects.create(database="target", engine="postgresql", compression="zstd",
                                   status=BackupStatus.FAILED, error="pg_dump: error: connection refused")
    try:
        notifications.notify_job(notifications.BACKUP, job)
    finally:
        flaky.stop()
    assert len(flaky.posts) == 2 and flaky.posts[0]["body"] == flaky.posts[1]["body"]
    assert mail.outbox == []  # nobody to write to: no ADMINS, no BACKUP_NOTIFY_EMAILS

    settings.BACKUP_NOTIFY_WEBHOOK_URL = flaky.url  # stopped: the connection is refused, twice
    notifications.notify_job(notifications.BACKUP, job)  # returns, raises nothing
    assert "could not be posted to BACKUP_NOTIFY_WEBHOOK_URL" in caplog.text
    assert "hook-secret" not in caplog.text


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_an_alert_carries_no_password_url_credentials_or_other_databases_paths(settings):
    sqlite_path = str(settings.DATABASES["sqlite"]["NAME"])
    settings.DATABASES = {**settings.DATABASES, "target": {**settings.DATABASES["target"], "PASSWORD": "s3cret-pw"}}
    job = BackupJob(pk=7, database="target", engine="postgresql", status=BackupStatus.FAILED, error=(
        "could not connect to postgres://app:s3cret-pw@db.internal:5432/app; "
        f"password s3cret-pw rejected; see {sqlite_path}"))
    text = notifications.job_alert(notifications.BACKUP, job).text()
    assert "s3cret-pw" not in text and "app:" not in text and sqlite_path not in text
    assert "postgres://db.internal:5432/app" in text and "<sqlite>" in text


def test_the_scheduled_check_alerts_while_backups_are_critical(alerting, settings):
    settings.BACKUP_DATABASES = ["default"]
    assert schedule.run_scheduled_check() == schedule.EXIT_FAILED  # never backed up: CRITICAL
    assert [message.subject for message in mail.outbox] == ["[backups] Backups are CRITICAL"]
    assert "default: no successful backup yet" in mail.outbox[0].body
    assert [post["body"]["event"] for post in alerting.posts] == ["monitoring"]
