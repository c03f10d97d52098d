class BackupError(Exception):
    """A backup or restore could not be done; the message says why and what to do, in one sentence."""


class DatabaseBusy(BackupError):
    """Another backup or restore of the same database holds its lock."""


class RestoreIncomplete(BackupError):
    """A restore replaced the tables but failed in a later step: the safety backup must be put back."""


class NotFound(BackupError):
    """There is no backup or restore with the id given."""
