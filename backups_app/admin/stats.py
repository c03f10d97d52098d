"""The stats panel above the change list."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from backups_app import services
from backups_app.conf import setting
from backups_app.schedule import next_run_of

from .forms import database_choices


def stats_panel() -> dict:
    """Return what the stats panel shows: totals, each database's newest backup and its age, the schedule."""
    stats = services.backup_stats()
    max_age = timedelta(hours=setting("BACKUP_MAX_AGE_HOURS"))
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
    schedule = setting("BACKUP_SCHEDULE")
    next_run, schedule_error = None, False
    if schedule:
        try:
            next_run = next_run_of(schedule, timezone.localtime())
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
