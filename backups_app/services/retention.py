"""Which completed backups a cleanup keeps, and why: restic's keep rules beside the retention in days.

A backup is kept when any rule keeps it:
- it is its database's newest completed backup, or a restore asked for or running reads it;
- it was made less than BACKUP_RETENTION_DAYS ago;
- it is the newest of its day, ISO week or month, for the BACKUP_KEEP_DAILY / _WEEKLY / _MONTHLY most
  recent days, weeks or months that have a completed backup of that database (as restic counts: a
  period without a backup does not use up the count). Periods are those of the server's time zone, by
  when a backup finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.translation import gettext as _

from ..models import USABLE_STATUSES, BackupJob
from ..selectors import FINISHED, NEWEST_FIRST, by_finish_time, latest_successful_per_database, restores_in_progress

# A rule that keeps more periods than this keeps everything anyone has: larger numbers are mistakes.
MAX_KEEP = 100000


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


def _week(moment: datetime) -> str:
    year, week, _weekday = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _month(moment: datetime) -> str:
    return f"{moment.year}-{moment.month:02d}"


# The calendar rules, as (rule, setting, period of a local time).
PERIOD_RULES = (
    ("daily", "BACKUP_KEEP_DAILY", _day),
    ("weekly", "BACKUP_KEEP_WEEKLY", _week),
    ("monthly", "BACKUP_KEEP_MONTHLY", _month),
)


@dataclass(frozen=True)
class KeepReason:
    """One rule that keeps a backup: `rule` is newest, restore, days, daily, weekly or monthly; `detail`
    is the restore's id, the number of days, or the period ("2026-11-26", "2026-W48", "2026-11")."""

    rule: str
    detail: str = ""

    def __str__(self) -> str:
        texts = {
            "newest": _("its database's newest backup"),
            "restore": _("read by restore #%(detail)s"),
            "days": _("younger than %(detail)s days"),
            "daily": _("newest of day %(detail)s"),
            "weekly": _("newest of week %(detail)s"),
            "monthly": _("newest of month %(detail)s"),
        }
        return texts[self.rule] % {"detail": self.detail}

    def as_dict(self) -> dict:
        return {"rule": self.rule, "detail": self.detail or None, "text": str(self)}


@dataclass(frozen=True)
class KeptBackup:
    backup: BackupJob
    reasons: tuple[KeepReason, ...]

    @property
    def reasons_text(self) -> str:
        return ", ".join(map(str, self.reasons))


def keep_reasons(*, days: int, cutoff: datetime, keep: dict[str, int]) -> dict[int, list[KeepReason]]:
    """Return, for each completed backup that a rule keeps, the rules that keep it (in the order above).

    `keep` maps daily, weekly and monthly to how many of those periods to keep (0: that rule is off).
    """
    reasons: dict[int, list[KeepReason]] = {}

    def add(pk: int, reason: KeepReason) -> None:
        reasons.setdefault(pk, []).append(reason)

    for job in latest_successful_per_database().values():
        add(job.pk, KeepReason("newest"))
    for restore_id, backup_id in restores_in_progress().order_by("pk").values_list("pk", "backup_id"):
        if backup_id:
            add(backup_id, KeepReason("restore", str(restore_id)))
    for pk in BackupJob.objects.filter(status__in=USABLE_STATUSES, created_at__gte=cutoff).values_list("pk", flat=True):
        add(pk, KeepReason("days", str(days)))

    rules = [(rule, period, keep[rule]) for rule, _setting, period in PERIOD_RULES if keep.get(rule)]
    if rules:
        # Newest first within each database: the first backup met in a period is that period's newest.
        completed = (
            by_finish_time().filter(status__in=USABLE_STATUSES).annotate(finished_time=FINISHED)
            .order_by("database", *NEWEST_FIRST).values_list("pk", "database", "finished_time")
        )
        seen: dict[tuple[str, str], set[str]] = {}
        for pk, database, finished in completed:
            local = timezone.localtime(finished)
            for rule, period, count in rules:
                periods = seen.setdefault((database, rule), set())
                label = period(local)
                if label not in periods and len(periods) < count:
                    periods.add(label)
                    add(pk, KeepReason(rule, label))
    return reasons


def kept_backups(reasons: dict[int, list[KeepReason]]) -> list[KeptBackup]:
    """Return the kept completed backups with their reasons, by database and newest first."""
    jobs = BackupJob.objects.filter(pk__in=reasons, status__in=USABLE_STATUSES)
    return [KeptBackup(job, tuple(reasons[job.pk])) for job in jobs.order_by("database", *NEWEST_FIRST)]
