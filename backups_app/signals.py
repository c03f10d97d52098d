"""What the services announce, so that the task layer can act without the services knowing it."""

from django.dispatch import Signal

# Sent once the request's transaction is committed, with `job` (a PENDING BackupJob) or `restore`
# (a PENDING Restore) or `drill` (a PENDING Drill); backups_app.tasks queues the task that runs it.
backup_requested = Signal()
restore_requested = Signal()
drill_requested = Signal()
