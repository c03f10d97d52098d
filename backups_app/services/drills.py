"""Restore drills: prove that a backup restores, in a scratch database that is dropped afterwards.

A drill restores the backup into a new database (PostgreSQL, MariaDB/MySQL: on the backed-up database's
server, or on BACKUP_DRILL_DATABASE_URL; SQLite: a temporary file) through the engines' restore_into_new(),
never touching an existing database; it then checks that every table of the archive exists with as
many rows as the archive holds for it (counted from the archive's data), runs the queries of
BACKUP_DRILL_CHECKS, which must each return true, and drops the scratch database. The outcome is a
Drill record, summed up on the backup (`drill_result`, `drilled_at`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import tempfile
import time
from pathlib import Path

from django.db import connections, router
from django.db.utils import load_backend
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import notifications
from ..conf import setting
from ..engines import Engine, get_engine
from ..errors import BackupError
from ..models import BackupJob, Drill, DrillPhase, DrillStatus
from ..selectors import get_backup
from .catalog import checksum_problem
from .common import _process_fields, _user_fields, database_lock, fail_dead_jobs, mark_failed, set_phase
from .restore import untrusted_refusal

logger = logging.getLogger(__name__)

# Scratch databases are named SCRATCH_PREFIX + this installation's tag + the drill's id, so that cleanup
# finds those a killed drill left behind, and never another installation's sharing the server.
SCRATCH_PREFIX = "backups_drill_"
ACTIVE_DRILL_STATUSES = (DrillStatus.PENDING, DrillStatus.RUNNING)


def drillable(backup: BackupJob) -> Engine:
    """Return the engine of a backup's database if the backup can be drilled; else say why not."""
    if not backup.is_usable:
        raise BackupError(
            _("Backup #%(id)s is %(status)s; only a completed backup can be drilled.")
            % {"id": backup.pk, "status": backup.get_status_display().lower()}
        )
    if not backup.trusted:
        # A drill runs the archive's SQL on the scratch database's server just as a restore does.
        raise BackupError(untrusted_refusal(backup))
    return get_engine(backup.database)


def drill_backup(*, backup: BackupJob | int, acting_user=None, drill: Drill | None = None, wait: float = 0) -> Drill:
    """Restore a backup into a scratch database, check it and drop it; return the PASSED or FAILED drill.

    A drill that cannot start (an unusable backup, its database busy) raises BackupError. `drill` is a
    PENDING record made by request_drill(), run by a worker: it waits up to `wait` seconds for the
    database's lock and is never run twice.
    """
    try:
        backup = get_backup(backup)
        engine = drillable(backup)
        checks = read_checks()
        with database_lock(engine, wait=wait, on_wait=lambda: set_phase(drill, DrillPhase.WAITING)):
            if drill is None:
                drill = Drill(backup=backup, database=backup.database, **_user_fields(acting_user))
            elif drill.pk:
                drill.refresh_from_db()
                if drill.status != DrillStatus.PENDING:
                    return drill
            drill.status = DrillStatus.RUNNING
            drill.started_at = timezone.now()
            for field, value in _process_fields().items():
                setattr(drill, field, value)
            drill.save()
            _run_drill(engine, backup, drill, checks)
    except BackupError as exc:
        if drill is not None and drill.pk and drill.status in ACTIVE_DRILL_STATUSES:
            mark_failed(drill, str(exc))
        if drill is None or not drill.pk:
            raise
    BackupJob.objects.filter(pk=drill.backup_id).update(drill_result=drill.status, drilled_at=drill.finished_at)
    notifications.notify_job(notifications.DRILL, drill)
    return drill


def read_checks() -> list[str]:
    """Return the queries of BACKUP_DRILL_CHECKS (none when it is empty), or say why they cannot be read."""
    path = setting("BACKUP_DRILL_CHECKS")
    if not path:
        return []
    import sqlparse

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BackupError(
            _("BACKUP_DRILL_CHECKS names %(path)s, which cannot be read (%(reason)s); fix the path or empty it.")
            % {"path": path, "reason": exc.strerror or exc}
        ) from exc
    queries = [sqlparse.format(query, strip_comments=True).strip().rstrip(";").strip() for query in sqlparse.split(text)]
    return [query for query in queries if query]


def installation_tag() -> str:
    """Return a short tag of this installation: its catalog's database (server and name)."""
    params = connections[router.db_for_write(BackupJob)].settings_dict
    where = f"{params.get('ENGINE')}|{params.get('HOST')}|{params.get('PORT')}|{params.get('NAME')}"
    return hashlib.sha256(where.encode()).hexdigest()[:8]


def scratch_name(engine: Engine, drill: Drill) -> str:
    name = f"{SCRATCH_PREFIX}{installation_tag()}_{drill.pk}_{secrets.token_hex(3)}"
    if engine.name == "sqlite":
        return os.path.join(tempfile.gettempdir(), f"{name}.sqlite3")
    return name


def scratch_server(engine: Engine) -> Engine:
    """Return the engine whose server receives the scratch databases: BACKUP_DRILL_DATABASE_URL's, or the
    backed-up database's own."""
    url = setting("BACKUP_DRILL_DATABASE_URL")
    if not url or engine.name == "sqlite":
        return engine
    import environ

    label = "drill-server"
    # Django's defaults of a DATABASES entry filled in (it insists on calling the one entry "default").
    params = connections.configure_settings({"default": environ.Env.db_url_config(url)})["default"]
    connection = load_backend(params["ENGINE"]).DatabaseWrapper(params, alias=label)
    if connection.vendor != engine.name:
        raise BackupError(
            _("BACKUP_DRILL_DATABASE_URL is a %(vendor)s server and backup's database is %(engine)s; point it at a "
              "%(engine)s server, or empty it to drill on the database's own server.")
            % {"vendor": connection.vendor, "engine": engine.name}
        )
    return type(engine)(label, connection=connection)


def _run_drill(engine: Engine, backup: BackupJob, drill: Drill, checks: list[str]) -> None:
    """Run a RUNNING drill; the caller holds the database's lock. The scratch database never outlives it."""
    from .restore_swap import archive_file, default_jobs  # the swap restore's one reader of a plain archive file

    scratch = None
    try:
        problem = checksum_problem(backup)
        if problem:
            raise BackupError(_("Backup #%(id)s is refused: %(problem)s") % {"id": backup.pk, "problem": problem})
        server = scratch_server(engine)
        drill.scratch_name = scratch_name(engine, drill)
        drill.save(update_fields=["scratch_name"])  # first: cleanup finds it by this name if the drill is killed
        set_phase(drill, DrillPhase.RESTORING)
        with archive_file(backup) as path:
            started = time.monotonic()
            try:
                scratch = server.restore_into_new(path, drill.scratch_name, jobs=default_jobs())
            except BackupError as exc:
                raise BackupError(_("Backup #%(id)s did not restore into a scratch database: %(reason)s")
                                  % {"id": backup.pk, "reason": exc}) from exc
            drill.restore_seconds = round(time.monotonic() - started, 3)
            set_phase(drill, DrillPhase.COUNTING)
            held = type(engine).archive_row_counts(path)
            with open(path, "rb") as archive:
                tables = sorted(set(held) | set(type(engine).archive_tables(archive)))
        restored = scratch.table_row_counts(tables)
        drill.tables = {table: {"archive": held.get(table, 0), "restored": restored[table]} for table in tables}
        set_phase(drill, DrillPhase.CHECKING)
        drill.failed_checks = run_checks(scratch, checks)
        set_phase(drill, DrillPhase.DROPPING)
        scratch.drop_database()
        scratch = None
        drill.error = _verdict(drill)
        drill.status = DrillStatus.FAILED if drill.error else DrillStatus.PASSED
        drill.finished_at = timezone.now()
        drill.save()
    except BackupError as exc:
        _drop(scratch)
        mark_failed(drill, str(exc))
    except BaseException:
        _drop(scratch)
        mark_failed(drill, _("The drill was interrupted; its scratch database was dropped."))
        raise


def _drop(scratch: Engine | None) -> None:
    if scratch is None:
        return
    try:
        scratch.drop_database()
    except Exception:  # noqa: BLE001  (cleanup drops it by name later)
        logger.exception("Dropping the scratch database %s failed; backup_cleanup will drop it.", scratch.database_name)


def run_checks(scratch: Engine, checks: list[str]) -> list[dict]:
    """Run each check on the scratch database; return those that did not return true, with what they returned."""
    failed = []
    for query in checks:
        try:
            with scratch.connection.cursor() as cursor:
                cursor.execute(query)
                row = cursor.fetchone()
            result = row[0] if row else None
        except Exception as exc:  # noqa: BLE001  (a query that fails is a check that failed; autocommit: the next runs)
            failed.append({"query": query, "result": _("error: %(reason)s") % {"reason": str(exc).strip().splitlines()[0]}})
            continue
        if result is not True and result != 1:
            failed.append({"query": query, "result": repr(result)})
    return failed


def _verdict(drill: Drill) -> str:
    """Return why a drill that ran to its end failed (empty: it passed)."""
    missing = [table for table, counts in drill.tables.items() if counts["restored"] is None]
    wrong = [
        f"{table} ({counts['restored']} of {counts['archive']})"
        for table, counts in drill.tables.items()
        if counts["restored"] is not None and counts["restored"] != counts["archive"]
    ]
    reasons = []
    if missing:
        reasons.append(_("tables missing after the restore: %(tables)s") % {"tables": ", ".join(missing)})
    if wrong:
        reasons.append(_("row counts differ from the archive's: %(tables)s") % {"tables": ", ".join(wrong)})
    if drill.failed_checks:
        reasons.append(_("%(count)s of the BACKUP_DRILL_CHECKS queries did not return true: %(queries)s") % {
            "count": len(drill.failed_checks), "queries": "; ".join(check["query"] for check in drill.failed_checks)})
    return (_("The drill failed: %(reasons)s.") % {"reasons": "; ".join(reasons)}) if reasons else ""


def drop_leftover_scratch_databases() -> list[str]:
    """Drop the scratch databases (and files) of this installation that no pending or running drill uses.

    A drill that was killed leaves its scratch database behind; the dead-job rule marks the drill FAILED,
    and then this drops it by name. Return the names dropped.
    """
    fail_dead_jobs(kinds=(Drill,))  # a killed drill is RUNNING until the dead-job rule marks it FAILED
    prefix = f"{SCRATCH_PREFIX}{installation_tag()}_"
    in_use = set(Drill.objects.filter(status__in=ACTIVE_DRILL_STATUSES).values_list("scratch_name", flat=True))
    dropped = []
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*.sqlite3"):
        if str(path) not in in_use:
            path.unlink(missing_ok=True)
            dropped.append(str(path))
    for server in _servers():
        try:
            with server.connection.cursor() as cursor:
                if server.name == "postgresql":
                    cursor.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [prefix])
                else:
                    cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE LEFT(SCHEMA_NAME, %s) = %s",
                                   [len(prefix), prefix])
                names = [name for (name,) in cursor.fetchall()]
            for name in names:
                if name not in in_use:
                    server.on_database(name).drop_database()
                    dropped.append(name)
        except Exception:  # noqa: BLE001  (a server that cannot be reached now: the next cleanup looks again)
            logger.exception("Looking for leftover drill databases on %s failed.", server.alias)
    return dropped


def _servers() -> list[Engine]:
    """One engine per PostgreSQL or MariaDB/MySQL server that may hold scratch databases (each configured one, and
    the drill URL's)."""
    servers, seen = [], set()
    for alias in connections.settings:
        if connections[alias].vendor not in ("postgresql", "mysql"):
            continue
        engine = get_engine(alias)
        candidates = [engine]
        if setting("BACKUP_DRILL_DATABASE_URL"):
            with contextlib.suppress(BackupError):  # the drill URL's server is of another kind
                candidates.append(scratch_server(engine))
        for candidate in candidates:
            params = candidate.connection.settings_dict
            where = (candidate.name, params.get("HOST"), str(params.get("PORT")))
            if where not in seen:
                seen.add(where)
                servers.append(candidate)
    return servers
