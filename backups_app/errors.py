class BackupError(Exception):
    """A backup or restore could not be done; the message says why and what to do, in one sentence."""


class DatabaseBusy(BackupError):
    """Another backup or restore of the same database holds its lock."""
