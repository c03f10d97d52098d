"""Alerts: tell a person when a backup, restore or drill fails, or monitoring turns CRITICAL.

Each finished job is announced once, after its record is committed, by e-mail (Django's mail, to
BACKUP_NOTIFY_EMAILS or ADMINS) and by a JSON POST to BACKUP_NOTIFY_WEBHOOK_URL (a Slack-compatible
`text` field, with the details beside it). Successes only with BACKUP_NOTIFY_ON_SUCCESS. Sending never
fails the job: every error is caught and logged, the webhook has a timeout and one retry, and the job's
outcome is recorded before anything is sent. A message names the database, the job, the reason and a
link to its admin page; passwords, URL credentials and other databases' file paths are taken out.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import router, transaction
from django.urls import reverse
from django.utils.translation import gettext as _

from .conf import setting
from .models import BackupJob, Drill, Restore

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT = 10  # seconds, per attempt
WEBHOOK_RETRY_DELAY = 2  # seconds before the one retry

BACKUP, RESTORE, DRILL, MONITORING = "backup", "restore", "drill", "monitoring"
FAILED_STATUSES = ("failed",)


@dataclass(frozen=True)
class Alert:
    event: str  # backup, restore, drill or monitoring
    ok: bool
    database: str | None
    job: str  # "backup #12", "restore #3", "drill #5", "backup_check"
    subject: str
    reason: str
    path: str  # the admin page's path

    @property
    def link(self) -> str:
        return setting("BACKUP_SITE_URL").rstrip("/") + self.path

    def text(self) -> str:
        lines = [self.subject]
        if self.database:
            lines.append(_("Database: %(database)s") % {"database": self.database})
        lines.append(_("Job: %(job)s") % {"job": self.job})
        if self.reason:
            lines.append(_("Reason: %(reason)s") % {"reason": self.reason})
        lines.append(_("Details: %(link)s") % {"link": self.link})
        return "\n".join(lines)

    def payload(self) -> dict:
        return {
            "text": self.text(), "event": self.event, "status": "ok" if self.ok else "failed",
            "database": self.database, "job": self.job, "reason": self.reason, "url": self.link,
        }


def scrub(text: str, database: str | None = None) -> str:
    """Take out of `text` what an alert must never carry: passwords, URL credentials, other databases' paths."""
    text = re.sub(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]*@", r"\1", text, flags=re.I)
    for alias, params in settings.DATABASES.items():
        password = params.get("PASSWORD")
        if password:
            text = text.replace(str(password), "****")
        name = str(params.get("NAME") or "")
        if alias != database and "/" in name:  # a SQLite file: its path says where the data lies
            text = text.replace(name, f"<{alias}>")
    return text


def job_alert(event: str, record: BackupJob | Restore | Drill) -> Alert:
    """Describe a finished backup, restore or drill as an alert."""
    ok = record.status not in FAILED_STATUSES
    values = {"id": record.pk, "database": record.database}
    if event == BACKUP:
        job = _("backup #%(id)s") % values
        subject = (_("Backup #%(id)s of database %(database)s completed") if ok
                   else _("Backup #%(id)s of database %(database)s failed")) % values
        path = reverse("admin:backups_app_backupjob_change", args=[record.pk])
    elif event == RESTORE:
        job = _("restore #%(id)s of backup #%(backup)s") % {**values, "backup": record.backup_id}
        subject = (_("Restore #%(id)s into database %(database)s completed") if ok
                   else _("Restore #%(id)s into database %(database)s failed")) % values
        path = reverse("admin:backups_app_backupjob_restore_status", args=[record.pk])
    else:
        job = _("restore drill #%(id)s of backup #%(backup)s") % {**values, "backup": record.backup_id}
        subject = (_("Restore drill of backup #%(backup)s (database %(database)s) passed") if ok
                   else _("Restore drill of backup #%(backup)s (database %(database)s) failed")) % {
            **values, "backup": record.backup_id}
        path = reverse("admin:backups_app_backupjob_change", args=[record.backup_id])
    return Alert(event, ok, record.database, job, subject, scrub(record.error or "", record.database), path)


def notify_job(event: str, record: BackupJob | Restore | Drill) -> None:
    """Announce a finished job once its record is committed (a failure always, a success when asked)."""
    try:
        alert = job_alert(event, record)
    except Exception:  # noqa: BLE001  (an alert must never fail the job it reports)
        logger.exception("Could not describe %s %s for an alert.", event, record.pk)
        return
    if alert.ok and not setting("BACKUP_NOTIFY_ON_SUCCESS"):
        return
    transaction.on_commit(lambda: send(alert), using=router.db_for_write(BackupJob))


def notify_monitoring(report) -> None:
    """Announce a CRITICAL monitoring report (the schedule's monitoring run calls this)."""
    try:
        problems = [problem for problem in report.problems if problem.level == report.level]
        databases = sorted({problem.database for problem in problems if problem.database})
        alert = Alert(
            MONITORING, False, ", ".join(databases) or None, "backup_check",
            _("Backups are CRITICAL"),
            scrub("; ".join(problem.message for problem in problems)),
            reverse("admin:backups_app_backupjob_changelist"),
        )
    except Exception:  # noqa: BLE001  (an alert must never fail the run that reports)
        logger.exception("Could not describe the monitoring report for an alert.")
        return
    send(alert)


def send(alert: Alert) -> None:
    """Send an alert by e-mail and to the webhook; log, never raise."""
    recipients = list(setting("BACKUP_NOTIFY_EMAILS")) or [
        admin if isinstance(admin, str) else admin[1] for admin in settings.ADMINS  # Django 6: plain addresses
    ]
    if recipients:
        try:
            send_mail(f"[backups] {alert.subject}", alert.text(), None, recipients)
        except Exception as exc:  # noqa: BLE001  (SMTP, DNS, a bad address: the job has its outcome anyway)
            logger.error("The alert e-mail %r could not be sent: %s", alert.subject, scrub(str(exc)))
    url = setting("BACKUP_NOTIFY_WEBHOOK_URL")
    if url:
        try:
            _post(url, alert)
        except Exception:  # noqa: BLE001  (whatever _post did not foresee)
            logger.exception("The alert %r could not be posted.", alert.subject)


def _post(url: str, alert: Alert) -> None:
    body = json.dumps(alert.payload()).encode()
    for attempt in (1, 2):
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
                response.read()
            return
        except Exception as exc:  # noqa: BLE001  (HTTP errors, timeouts, refused connections)
            # The URL is a secret (a Slack webhook's is its key): never logged.
            reason = scrub(str(exc))
        if attempt == 1:
            time.sleep(WEBHOOK_RETRY_DELAY)
    logger.error("The alert %r could not be posted to BACKUP_NOTIFY_WEBHOOK_URL: %s", alert.subject, reason)
