from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class BackupStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    RESTORED = "restored", _("Restored")


# A backup whose archive is whole and can be restored (RESTORED: completed, and restored since).
USABLE_STATUSES = (BackupStatus.COMPLETED, BackupStatus.RESTORED)


class BackupTrigger(models.TextChoices):
    MANUAL = "manual", _("Manual")
    SCHEDULED = "scheduled", _("Scheduled")
    PRE_RESTORE_SAFETY = "pre_restore_safety", _("Pre-restore safety")


class Compression(models.TextChoices):
    ZSTD = "zstd", _("zstd")
    GZIP = "gzip", _("gzip")
    NONE = "none", _("none")


class DrillResult(models.TextChoices):
    PASSED = "passed", _("Passed")
    FAILED = "failed", _("Failed")


class Encryption(models.TextChoices):
    NONE = "", _("none")
    AGE = "age", _("age")


class BackupPhase(models.TextChoices):
    WAITING = "waiting", _("waiting for another backup or restore of the database to finish")
    DUMPING = "dumping", _("dumping, compressing and writing the archive")


class BackupJob(models.Model):
    """One backup: the catalog entry for an archive in the backups storage.

    A backup asked for in the background is a PENDING record holding every option; the worker that
    runs its task reads nothing else.
    """

    database = models.CharField(_("database alias"), max_length=100, db_index=True)
    engine = models.CharField(_("engine"), max_length=32)
    status = models.CharField(
        _("status"), max_length=16, choices=BackupStatus.choices, default=BackupStatus.PENDING, db_index=True
    )
    trigger = models.CharField(_("trigger"), max_length=32, choices=BackupTrigger.choices, default=BackupTrigger.MANUAL)
    description = models.CharField(_("description"), max_length=255, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("requested by"), null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept as text so that the history still says who asked after the user is gone.
    requested_by_name = models.CharField(_("requested by (name)"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    compression = models.CharField(_("compression"), max_length=8, choices=Compression.choices)
    # The archive is encrypted to the age recipients its manifest lists; the checksum is of the stored bytes.
    encryption = models.CharField(_("encryption"), max_length=8, choices=Encryption.choices, blank=True, default="")
    file_name = models.CharField(_("file name"), max_length=255, blank=True, db_index=True)
    size_bytes = models.BigIntegerField(_("size (bytes)"), null=True, blank=True)
    bytes_written = models.BigIntegerField(_("bytes written so far"), default=0)
    checksum_sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    server_version = models.CharField(_("server version"), max_length=100, blank=True)
    tool_version = models.CharField(_("tool version"), max_length=100, blank=True)
    error = models.TextField(_("error"), blank=True)
    # What the person should know about a backup that still completed (tables outside the snapshot, say).
    warning = models.TextField(_("warning"), blank=True)
    hostname = models.CharField(_("host"), max_length=255, blank=True)
    pid = models.IntegerField(_("process id"), null=True, blank=True)
    phase = models.CharField(_("phase"), max_length=16, choices=BackupPhase.choices, blank=True)
    # The last time the process running it said it was alive (with the bytes written so far).
    heartbeat_at = models.DateTimeField(_("last sign of life"), null=True, blank=True)
    task_id = models.CharField(_("task id"), max_length=64, blank=True)
    # Whoever can write to the backup storage could plant an archive that runs SQL when restored.
    trusted = models.BooleanField(
        _("trusted"),
        default=True,
        help_text=_(
            "Made by this application, or imported with a manifest it signed; any other archive is restored "
            "only when someone says they trust it."
        ),
    )

    # The outcome of its newest restore drill (blank: never drilled) and when that drill finished, for the
    # list's column and filter; the drill itself (row counts, failed checks) is a Drill record.
    drill_result = models.CharField(
        _("restore drill"), max_length=16, choices=DrillResult.choices, blank=True, db_index=True
    )
    drilled_at = models.DateTimeField(_("drilled"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("backup")
        verbose_name_plural = _("backups")
        permissions = [
            ("restore_backupjob", _("Can restore a backup")),
            ("download_backupjob", _("Can download a backup")),
        ]

    def __str__(self):
        return _("Backup #%(id)s of %(database)s") % {"id": self.pk, "database": self.database}

    @property
    def is_usable(self) -> bool:
        return self.status in USABLE_STATUSES

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    @property
    def last_drill(self):
        """Return its newest finished restore drill, or None."""
        return self.drills.filter(status__in=DrillResult.values).order_by("-finished_at", "-id").first()


class RestoreStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")


# A restore that is asked for (its process has not taken the database's lock yet) or runs.
ACTIVE_RESTORE_STATUSES = (RestoreStatus.PENDING, RestoreStatus.RUNNING)


class RestorePhase(models.TextChoices):
    WAITING = "waiting", _("waiting for another backup or restore of the database to finish")
    CHECKING = "checking", _("checking the archive's checksum")
    SAFETY_BACKUP = "safety_backup", _("taking a safety backup of the database")
    RESTORING = "restoring", _("restoring the archive")
    KEEPING_CATALOG = "keeping_catalog", _("restoring the archive, keeping the list of backups and restores")
    DECOMPRESSING = "decompressing", _("writing the plain archive to a temporary file")
    LOADING = "loading", _("loading the archive into a new database")
    SWAPPING = "swapping", _("swapping the new database in for the live one")


class RestoreStrategy(models.TextChoices):
    AUTO = "auto", _("swap where the role can, else in place")
    SWAP = "swap", _("swap: load a new database, then rename it in")
    IN_PLACE = "in-place", _("in place: replace the content in one transaction")
    INTO = "into", _("into a new database, nothing existing touched")


class Restore(models.Model):
    """One restore of a backup into a database, kept even when the application's own database is restored."""

    backup = models.ForeignKey(
        BackupJob, verbose_name=_("backup"), related_name="restores", null=True, on_delete=models.SET_NULL
    )
    safety_backup = models.ForeignKey(
        BackupJob,
        verbose_name=_("safety backup"),
        related_name="+",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
    )
    database = models.CharField(_("database alias"), max_length=100)
    status = models.CharField(
        _("status"), max_length=16, choices=RestoreStatus.choices, default=RestoreStatus.PENDING
    )
    # The step the restore is at, or was at when it failed; blank until its process has begun.
    phase = models.CharField(_("phase"), max_length=16, choices=RestorePhase.choices, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("requested by"), null=True, blank=True, on_delete=models.SET_NULL
    )
    requested_by_name = models.CharField(_("requested by (name)"), max_length=150, blank=True)
    started_at = models.DateTimeField(_("started"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    hostname = models.CharField(_("host"), max_length=255, blank=True)
    pid = models.IntegerField(_("process id"), null=True, blank=True)
    # The options it was asked with: the worker that runs it reads them from here.
    take_safety_backup = models.BooleanField(_("take a safety backup first"), default=True)
    terminate_sessions = models.BooleanField(_("end other sessions"), default=False)
    trust_archive = models.BooleanField(_("archive trusted by the person who asked"), default=False)
    task_id = models.CharField(_("task id"), max_length=64, blank=True)
    warning = models.TextField(_("warning"), blank=True)
    # Asked for (auto, swap, in-place, into), then the one used, with why.
    strategy = models.CharField(_("strategy"), max_length=16, choices=RestoreStrategy.choices, blank=True)
    strategy_reason = models.CharField(_("why this strategy"), max_length=255, blank=True)
    jobs = models.PositiveSmallIntegerField(_("parallel jobs"), null=True, blank=True)
    # --into: the new database (SQLite: file) made from the backup; --table: only these tables, comma-separated.
    into = models.CharField(_("into new database"), max_length=255, blank=True)
    tables = models.TextField(_("only these tables"), blank=True)
    scratch_bytes = models.BigIntegerField(_("temporary disk used (bytes)"), null=True, blank=True)
    # A swap keeps the replaced database under this name until cleanup drops it, for an undo.
    kept_database = models.CharField(_("replaced database kept as"), max_length=63, blank=True)
    kept_dropped_at = models.DateTimeField(_("kept database dropped"), null=True, blank=True)
    undone_at = models.DateTimeField(_("undone"), null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = _("restore")
        verbose_name_plural = _("restores")

    def __str__(self):
        return _("Restore #%(id)s into %(database)s") % {"id": self.pk, "database": self.database}


class DrillStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    RUNNING = "running", _("Running")
    PASSED = DrillResult.PASSED.value, DrillResult.PASSED.label
    FAILED = DrillResult.FAILED.value, DrillResult.FAILED.label


class DrillPhase(models.TextChoices):
    WAITING = "waiting", _("waiting for another backup or restore of the database to finish")
    RESTORING = "restoring", _("restoring the archive into a scratch database")
    COUNTING = "counting", _("counting every table's rows in the archive and the scratch database")
    CHECKING = "checking", _("running the checks of BACKUP_DRILL_CHECKS")
    DROPPING = "dropping", _("dropping the scratch database")


class Drill(models.Model):
    """One restore drill: a backup restored into a scratch database, counted and checked, then dropped.

    Like a backup or a restore it is a job: asked for (PENDING, every option on the record), run by a
    worker under the database's lock, finished PASSED or FAILED with why.
    """

    backup = models.ForeignKey(BackupJob, verbose_name=_("backup"), related_name="drills", on_delete=models.CASCADE)
    database = models.CharField(_("database alias"), max_length=100)
    status = models.CharField(_("status"), max_length=16, choices=DrillStatus.choices, default=DrillStatus.PENDING)
    phase = models.CharField(_("phase"), max_length=16, choices=DrillPhase.choices, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("requested by"), null=True, blank=True, on_delete=models.SET_NULL
    )
    requested_by_name = models.CharField(_("requested by (name)"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # The scratch database (SQLite: file) it restores into; cleanup drops one left by a killed drill by this name.
    scratch_name = models.CharField(_("scratch database"), max_length=255, blank=True)
    restore_seconds = models.FloatField(_("restore duration (seconds)"), null=True, blank=True)
    # {table: {"archive": rows the archive holds, "restored": rows in the scratch database (null: missing)}}
    tables = models.JSONField(_("row counts"), default=dict, blank=True)
    # [{"query": ..., "result": ...}] of the BACKUP_DRILL_CHECKS queries that did not return true.
    failed_checks = models.JSONField(_("failed checks"), default=list, blank=True)
    error = models.TextField(_("error"), blank=True)
    hostname = models.CharField(_("host"), max_length=255, blank=True)
    pid = models.IntegerField(_("process id"), null=True, blank=True)
    task_id = models.CharField(_("task id"), max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("restore drill")
        verbose_name_plural = _("restore drills")

    def __str__(self):
        return _("Restore drill #%(id)s of backup #%(backup)s") % {"id": self.pk, "backup": self.backup_id}

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

