"""Long-term retention like restic's keep rules: which backups cleanup keeps, and why it says so."""

import json
from datetime import datetime, timedelta, timezone as dt_timezone
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from backups_app import services
from backups_app.models import BackupJob, BackupStatus, Restore, RestoreStatus

SQLITE = pytest.mark.django_db(databases=["default", "sqlite"])

# Finish times (UTC) of a database's backups, oldest first; E and F fall on the same day.
FINISHED = {
    "A": datetime(2025, 1, 15, 10, 0),  # Wed, 2025-W03
    "B": datetime(2025, 1, 31, 10, 0),  # Fri, 2025-W05
    "C": datetime(2025, 2, 10, 10, 0),  # Mon, 2025-W07
    "D": datetime(2025, 2, 28, 10, 0),  # Fri, 2025-W09
    "E": datetime(2025, 3, 3, 9, 0),  # Mon, 2025-W10
    "F": datetime(2025, 3, 3, 21, 0),  # Mon, 2025-W10, later that day
    "G": datetime(2025, 3, 5, 10, 0),  # Wed, 2025-W10
    "H": datetime(2025, 3, 7, 10, 0),  # Fri, 2025-W10, the newest
}


def made_at(job: BackupJob, finished: datetime) -> BackupJob:
    """Date a backup made by the services as if it had run at `finished` (created five minutes before)."""
    finished = finished.replace(tzinfo=dt_timezone.utc)
    BackupJob.objects.filter(pk=job.pk).update(
        created_at=finished - timedelta(minutes=5), started_at=finished - timedelta(minutes=5), finished_at=finished
    )
    job.refresh_from_db()
    return job


@pytest.fixture
def history(settings, backup_dir):
    """Eight completed backups of the sqlite database at the FINISHED times, by letter."""
    settings.TIME_ZONE = "UTC"
    return {name: made_at(services.create_backup(database="sqlite"), moment) for name, moment in FINISHED.items()}


def reasons_by_letter(plan, history):
    letters = {job.pk: name for name, job in history.items()}
    return {letters[kept.backup.pk]: kept.reasons_text for kept in plan.kept if kept.backup.pk in letters}


@SQLITE
def test_keep_rules_keep_the_newest_of_each_period_and_say_why(history, backup_dir):
    plan = services.plan_cleanup(retention_days=0, keep_daily=3, keep_weekly=2, keep_monthly=3)
    assert reasons_by_letter(plan, history) == {
        "H": "its database's newest backup, newest of day 2025-03-07, newest of week 2025-W10, newest of month 2025-03",
        "G": "newest of day 2025-03-05",
        "F": "newest of day 2025-03-03",  # E, earlier that day, is not the day's newest
        "D": "newest of week 2025-W09, newest of month 2025-02",
        "B": "newest of month 2025-01",
    }
    assert sorted(job.pk for job in plan.expired) == sorted(history[name].pk for name in "ACE")
    assert [kept.backup.pk for kept in plan.kept] == [history[name].pk for name in "HGFDB"]  # newest first

    services.cleanup_backups(retention_days=0, keep_daily=3, keep_weekly=2, keep_monthly=3)
    assert set(BackupJob.objects.values_list("pk", flat=True)) == {history[name].pk for name in "BDFGH"}
    assert not (backup_dir / history["A"].file_name).exists() and (backup_dir / history["B"].file_name).exists()


@SQLITE
def test_periods_without_a_backup_do_not_use_up_the_count(history):
    """As restic counts: the 2 most recent months that have a backup, however long ago they were."""
    plan = services.plan_cleanup(retention_days=0, keep_daily=0, keep_weekly=0, keep_monthly=2)
    assert reasons_by_letter(plan, history) == {
        "H": "its database's newest backup, newest of month 2025-03",
        "D": "newest of month 2025-02",
    }


@SQLITE
def test_the_settings_give_the_rules_and_the_days_keep_everything_younger(history, settings):
    settings.BACKUP_KEEP_DAILY, settings.BACKUP_KEEP_WEEKLY, settings.BACKUP_KEEP_MONTHLY = 0, 1, 0
    recent = services.create_backup(database="sqlite")  # made now: younger than any retention in days
    plan = services.plan_cleanup(retention_days=7)
    reasons = {kept.backup.pk: kept.reasons_text for kept in plan.kept}
    assert reasons == {
        recent.pk: f"its database's newest backup, younger than 7 days, newest of week "
                   f"{recent.finished_at.isocalendar()[0]}-W{recent.finished_at.isocalendar()[1]:02d}",
    }
    assert len(plan.expired) == 8  # the weekly rule's one week is this week: the 2025 backups all go


@SQLITE
def test_each_database_is_counted_on_its_own_and_restores_keep_theirs(history, settings):
    other = {
        moment: BackupJob.objects.create(database="default", engine="postgresql", status=BackupStatus.COMPLETED,
                                         compression="zstd", file_name=f"default/x-{day}.dump.zst", size_bytes=1)
        for day, moment in enumerate([datetime(2024, 6, 1, 3), datetime(2024, 6, 2, 3), datetime(2024, 7, 1, 3)])
    }
    for moment, job in other.items():
        made_at(job, moment)
    restore = Restore.objects.create(backup=history["A"], database="sqlite", status=RestoreStatus.RUNNING)
    plan = services.plan_cleanup(retention_days=0, keep_daily=0, keep_weekly=0, keep_monthly=2)
    reasons = {kept.backup.pk: kept.reasons_text for kept in plan.kept}
    assert reasons == {
        history["H"].pk: "its database's newest backup, newest of month 2025-03",
        history["D"].pk: "newest of month 2025-02",
        history["A"].pk: f"read by restore #{restore.pk}",
        other[datetime(2024, 7, 1, 3)].pk: "its database's newest backup, newest of month 2024-07",
        other[datetime(2024, 6, 2, 3)].pk: "newest of month 2024-06",
    }


@SQLITE
def test_periods_are_days_of_the_servers_time_zone(settings, backup_dir):
    settings.TIME_ZONE = "Pacific/Auckland"  # UTC+13 in March
    late = made_at(services.create_backup(database="sqlite"), datetime(2025, 3, 3, 20, 0))  # 4 March there
    early = made_at(services.create_backup(database="sqlite"), datetime(2025, 3, 3, 9, 0))  # 3 March 22:00 there
    newest = made_at(services.create_backup(database="sqlite"), datetime(2025, 3, 4, 1, 0))  # 4 March there
    plan = services.plan_cleanup(retention_days=0, keep_daily=2, keep_weekly=0, keep_monthly=0)
    assert {kept.backup.pk: kept.reasons_text for kept in plan.kept} == {
        newest.pk: "its database's newest backup, newest of day 2025-03-04",
        early.pk: "newest of day 2025-03-03",
    }
    assert [job.pk for job in plan.expired] == [late.pk]


@SQLITE
def test_a_keep_count_out_of_range_is_one_clear_error(history):
    with pytest.raises(services.BackupError, match=r"^BACKUP_KEEP_WEEKLY must be from 0 to 100000, not -1\.$"):
        services.plan_cleanup(keep_weekly=-1)
    with pytest.raises(CommandError, match="BACKUP_KEEP_MONTHLY must be from 0 to 100000, not -2"):
        call_command("backup_cleanup", "--keep-monthly", "-2", stdout=StringIO())


@SQLITE
def test_the_command_previews_what_it_keeps_and_why(history):
    def run(*args):
        out = StringIO()
        call_command("backup_cleanup", "--retention-days", "0", "--keep-daily", "3", "--keep-weekly", "2",
                     "--keep-monthly", "3", *args, stdout=out)
        return out.getvalue()

    preview = run("--dry-run")
    assert f"Keep #{history['D'].pk} sqlite 10:00, 28 Feb 2025 {history['D'].file_name}: newest of week 2025-W09, " \
           f"newest of month 2025-02\n" in preview
    assert f"Would delete #{history['E'].pk} sqlite " in preview
    assert "Would delete 3 backups and 0 leftover files" in preview and "5 backups kept." in preview
    data = json.loads(run("--dry-run", "--json"))
    kept = {job["id"]: job["kept_because"] for job in data["kept"]}
    assert kept[history["B"].pk] == [{"rule": "monthly", "detail": "2025-01", "text": "newest of month 2025-01"}]
    assert BackupJob.objects.count() == 8  # previews delete nothing

    done = run()
    assert f"Deleted #{history['A'].pk} sqlite " in done and "Keep #" not in done  # the reasons need -v 2
    assert BackupJob.objects.count() == 5


@SQLITE
def test_the_admin_cleanup_page_lists_kept_backups_with_their_reasons(admin_client, history, settings):
    settings.BACKUP_KEEP_DAILY, settings.BACKUP_KEEP_WEEKLY, settings.BACKUP_KEEP_MONTHLY = 3, 2, 3
    page = admin_client.get(reverse("admin:backups_app_backupjob_cleanup"), {"retention_days": 0})
    assert page.status_code == 200
    assert "5 backups kept" in page.text
    assert (f"Backup #{history['D'].pk} of sqlite</a> — " in page.text
            and '<span class="kept-because">newest of week 2025-W09, newest of month 2025-02</span>' in page.text)
    assert '<span class="kept-because">newest of day 2025-03-05</span>' in page.text
    assert [job.pk for job in page.context["plan"].expired] == [history[name].pk for name in "ECA"]
