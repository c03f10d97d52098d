"""The admin's history (LogEntry) of what a person did: written here, by the services, so that the
admin's pages and the API leave the same entries for the same operation."""

from __future__ import annotations

from typing import Iterable

from django.contrib.admin.models import LogEntry
from django.db import models


def log_action(*, acting_user, objects: Iterable[models.Model], action_flag: int, message: str | list = "") -> None:
    """Record in the admin's history that `acting_user` did this to each object (nothing when nobody acted:
    the schedule, a command); like ModelAdmin.log_addition/log_change/log_deletions. A deletion is
    recorded before the objects are deleted, in the same transaction."""
    if acting_user is None or not acting_user.is_authenticated:
        return
    LogEntry.objects.log_actions(
        user_id=acting_user.pk, queryset=list(objects), action_flag=action_flag, change_message=message
    )
