"""The stats panel above the change list."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from backups_app import services

from .forms import database_choices

CRON_NAMES = {
    3: {name: number for number, name in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
                                                     "oct", "nov", "dec"], start=1)},
    4: {name: number for number, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
CRON_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
               "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def _cron_field(text: str, index: int) -> set[int]:
    low, high = CRON_RANGES[index]
    names = CRON_NAMES.get(index, {})
    values = set()
    for part in text.lower().split(","):
        part, _slash, step = part.partition("/")
        if part == "*":
            start, end = low, high
        else:
            first, _dash, last = part.partition("-")
            start = names.get(first) if first in names else int(first)
            end = (names.get(last) if last in names else int(last)) if last else (high if step else start)
        if not (low <= start <= end <= high):
            raise ValueError(text)
        values.update(range(start, end + 1, int(step) if step else 1))
    if index == 4 and 7 in values:
        values.add(0)  # both 0 and 7 mean Sunday
    return values


def next_cron_run(expression: str, now: datetime) -> datetime | None:
    """Return the first time at or after `now` (to the minute) that a 5-field cron expression fires."""
    fields = CRON_MACROS.get(expression.strip(), expression).split()
    if len(fields) != 5:
        raise ValueError(expression)
    minutes, hours, days, months, weekdays = (_cron_field(field, index) for index, field in enumerate(fields))
    any_day, any_weekday = fields[2] == "*", fields[4] == "*"
    start = now.replace(second=0, microsecond=0) + (timedelta(minutes=1) if now.second or now.microsecond else timedelta())
    for offset in range(366 * 5):
        day = (start + timedelta(days=offset)).date()
        day_match, weekday_match = day.day in days, (day.isoweekday() % 7) in weekdays
        # cron's rule: when both day fields are restricted, either one matching is enough.
        matches = day_match or weekday_match if not (any_day or any_weekday) else day_match and weekday_match
        if day.month not in months or not matches:
            continue
        for hour in sorted(hours):
            for minute in sorted(minutes):
                candidate = start.replace(year=day.year, month=day.month, day=day.day, hour=hour, minute=minute)
                if candidate >= start:
                    return candidate
    return None


def stats_panel() -> dict:
    """Return what the stats panel shows: totals, each database's newest backup and its age, the schedule."""
    stats = services.backup_stats()
    max_age = timedelta(hours=getattr(settings, "BACKUP_MAX_AGE_HOURS", 26))
    databases = []
    for alias, _label in database_choices():
        latest = stats["databases"].get(alias)
        age = timedelta(seconds=latest["age_seconds"]) if latest else None
        databases.append({
            "alias": alias,
            "latest": latest,
            "created": datetime.fromisoformat(latest["created"]) if latest else None,
            "age": age,
            "stale": age is None or age > max_age,
        })
    schedule = getattr(settings, "BACKUP_SCHEDULE", None)
    next_run, schedule_error = None, False
    if schedule:
        try:
            next_run = next_cron_run(schedule, timezone.localtime())
        except ValueError:
            schedule_error = True
    return {
        **stats,
        "database_rows": databases,
        "max_age": max_age,
        "schedule": schedule,
        "next_run": next_run,
        "schedule_error": schedule_error,
    }
