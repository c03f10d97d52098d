"""Restore a backup: verified archive, safety backup, all-or-nothing replacement, catalog kept."""

from __future__ import annotations

import contextlib
from typing import Sequence

from django.apps import apps
from django.contrib.admin.models import CHANGE
from django.core.management import call_command
from django.db import connections, router
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import archives, notifications
from ..conf import setting
from ..engines import Engine, KeptTable, get_engine
from ..errors import BackupError, RestoreIncomplete
from ..engines.postgresql_swap import kept_name
from ..models import (
    BackupJob,
    BackupStatus,
    BackupTrigger,
    Drill,
    Restore,
    RestorePhase,
    RestoreStatus,
    RestoreStrategy,
)
from ..selectors import get_backup
from .audit import log_action
from .backup import _run_backup
from .catalog import checksum_problem
from .common import _process_fields, _user_fields, database_lock, mark_failed, set_phase
from .restore_swap import choose_strategy, restore_by_swap, restore_into


def _catalog_tables() -> list[KeptTable]:
    """Describe the tables that every restore of the catalog's own database keeps as they are now:
    the catalog (backups, restores, drills), and the task queue's results (a running restore's own task
    among them). An archive made before drills existed lacks their table: it is restored, and migrate
    makes the table again."""
    tables = []
    catalog = (BackupJob, Restore, Drill)
    for model in catalog:
        outside_refs = {
            field.column: (field.related_model._meta.db_table, field.target_field.column)
            for field in model._meta.concrete_fields
            if field.is_relation and field.related_model not in catalog
        }
        tables.append(KeptTable(model._meta.db_table, model._meta.pk.column, outside_refs, required=model is not Drill))
    if apps.is_installed("django_tasks_db"):
        queue = apps.get_model("django_tasks_database", "DBTaskResult")
        tables.append(KeptTable(queue._meta.db_table, queue._meta.pk.column, required=False))
    return tables


def _migrate_if_behind(database: str) -> None:
    """Bring an older archive's schema (its own django_migrations) up to this version's, as `migrate` does."""
    executor = MigrationExecutor(connections[database])
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        call_command("migrate", database=database, interactive=False, verbosity=0)


def restore_backup(
    *,
    backup: BackupJob | int,
    acting_user=None,
    database: str | None = None,
    safety_backup: bool = True,
    terminate_sessions: bool = False,
    restore: Restore | None = None,
    trust_archive: bool = False,
    wait: float = 0,
    strategy: str = "",
    jobs: int | None = None,
    into: str = "",
    tables: Sequence[str] = (),
) -> Restore:
    """Replace a database's content with a backup, all or nothing, after a safety backup of it.

    Return the COMPLETED restore record, or raise BackupError (the record then is FAILED and the
    database as it was). Restoring the catalog's own database keeps the catalog as it is now.
    A backup that is not `trusted` (imported without this installation's signature) is restored only
    with `trust_archive`: its archive may hold any SQL, and the restore runs it.

    `restore` is a PENDING record made by request_restore(), run by a worker: it waits up to `wait`
    seconds for a backup or restore of the same database, and is never run twice. The options a restore
    runs with are those on its record (a new record takes them from the arguments).

    `strategy` (auto, swap, in-place; blank: BACKUP_RESTORE_STRATEGY) says how the database is replaced;
    swap loads with `jobs` parallel pg_restore jobs (default: the cores). `into` makes a new database
    (SQLite: file) of that name instead, touching nothing that exists, with only `tables` if given.
    """
    try:
        backup = get_backup(backup)
        database = database or backup.database
        if restore is None:
            check_restore_options(strategy=strategy, jobs=jobs, into=into, tables=tables)
        engine = restorable_into(backup, database)
        into = into or (restore.into if restore is not None else "")
        # A restore into a new database touches no existing one: it takes no database's lock.
        lock = contextlib.nullcontext() if into else database_lock(
            engine, wait=wait, on_wait=lambda: set_phase(restore, RestorePhase.WAITING))
        with lock:
            if restore is None:
                restore = Restore(
                    backup=backup, database=database, take_safety_backup=safety_backup and not into,
                    terminate_sessions=terminate_sessions, trust_archive=trust_archive, **_user_fields(acting_user),
                    strategy=RestoreStrategy.INTO if into else strategy, jobs=jobs, into=into, tables=",".join(tables),
                )
            elif restore.pk:
                restore.refresh_from_db()
                if restore.status != RestoreStatus.PENDING:
                    return restore
            restore.status = RestoreStatus.RUNNING
            for field, value in _process_fields().items():
                setattr(restore, field, value)
            restore.save()
            _run_restore(engine, backup, restore)
        error = None
    except BackupError as exc:
        if restore is not None and restore.pk and restore.status == RestoreStatus.PENDING:
            mark_failed(restore, str(exc))
        error = exc
    if restore is not None and restore.pk:  # it ran, or was refused: say so once it is recorded
        notifications.notify_job(notifications.RESTORE, restore)
    if error is not None:
        raise error
    return restore


def untrusted_refusal(backup: BackupJob) -> str:
    return _(
        "Backup #%(id)s was imported without a manifest signed by this installation, so whoever could "
        "write to the backup storage may have made it; restore it only if you trust them, with "
        "--trust-archive (in the admin: the trust checkbox)."
    ) % {"id": backup.pk}


def confirmation_hint(database: str) -> str:
    """Say what to type to confirm a restore into a database: its alias or its real name."""
    name = str(connections[database].settings_dict["NAME"])
    if name == database:
        return _("Type %(alias)s exactly to confirm.") % {"alias": database}
    return _("Type %(alias)s or %(name)s exactly to confirm.") % {"alias": database, "name": name}


def check_confirmation(*, database: str, typed: str) -> None:
    """Refuse a restore unless the person typed the target database's alias or real name (the admin's
    confirmation page and the API ask for it; the commands ask to type yes)."""
    get_engine(database)  # an unknown alias is said as such, not as a mistyped confirmation
    if typed not in (database, str(connections[database].settings_dict["NAME"])):
        raise BackupError(confirmation_hint(database))


MAX_JOBS = 64


def check_restore_options(*, strategy: str = "", jobs: int | None = None, into: str = "",
                          tables: Sequence[str] = ()) -> None:
    """Refuse restore options that do not go together (the admin's form, the API and the services ask this)."""
    choices = [value for value in RestoreStrategy.values if value != RestoreStrategy.INTO]
    if strategy and strategy not in choices:
        raise BackupError(_("Unknown strategy %(value)r: use one of %(choices)s.")
                          % {"value": strategy, "choices": ", ".join(choices)})
    if jobs is not None and not 1 <= jobs <= MAX_JOBS:
        raise BackupError(_("Parallel jobs must be from 1 to %(max)s, not %(jobs)s.") % {"max": MAX_JOBS, "jobs": jobs})
    if tables and not into:
        raise BackupError(_("Only tables go into a new database: name the new database too."))


def restorable_into(backup: BackupJob, database: str) -> Engine:
    """Return the engine of `database` if `backup` can be restored into it; else say why not."""
    if not backup.is_usable:
        raise BackupError(
            _("Backup #%(id)s is %(status)s; only a completed backup can be restored.")
            % {"id": backup.pk, "status": backup.get_status_display().lower()}
        )
    engine = get_engine(database)
    if backup.engine != engine.name:
        raise BackupError(
            _(
                "Backup #%(id)s is a %(archive)s archive and database %(database)r is %(engine)s; restore it into a "
                "%(archive)s database."
            )
            % {"id": backup.pk, "archive": backup.engine, "database": database, "engine": engine.name}
        )
    return engine


def holds_the_catalog(engine: Engine) -> bool:
    """Return whether an engine's database is the one that holds the catalog.

    Decided by what the servers say they are (PostgreSQL: the server instance and the database's
    oid; SQLite: the resolved file), never by alias: two aliases may name one database.
    """
    catalog_alias = router.db_for_write(BackupJob)
    if catalog_alias == engine.alias:
        return True
    if connections[catalog_alias].vendor != engine.name:
        return False
    return get_engine(catalog_alias).identity() == engine.identity()


def _check_archive_keeps_the_catalog(engine: Engine, backup: BackupJob, keep: list[KeptTable]) -> None:
    """Refuse, before any safety backup is taken, an archive whose restore would erase the catalog."""
    with archives.read_archive(backup) as stream:
        tables = {name.rsplit(".", 1)[-1] for name in engine.archive_tables(stream)}
    for table in keep:
        if table.name not in tables:
            raise BackupError(
                _("Backup #%(id)s has no table %(table)s, so restoring it into database %(database)r would erase "
                  "the backup catalog; restore it into another database.")
                % {"id": backup.pk, "table": table.name, "database": engine.alias}
            )


def _restore_archive(engine: Engine, backup: BackupJob, keep: list[KeptTable], terminate: bool) -> None:
    with archives.read_archive(backup) as stream:
        engine.restore(
            stream,
            keep=keep,
            lock_timeout=setting("BACKUP_LOCK_TIMEOUT"),
            terminate_sessions=terminate,
        )


def _put_back_safety_backup(
    engine: Engine, safety: BackupJob | None, keep: list[KeptTable], error: RestoreIncomplete
) -> BackupError:
    """Return the error to report after an engine restore that failed past its point of no return
    (MariaDB's short tail after the table swap), having put the safety backup back when there is one."""
    if safety is None:
        return BackupError(
            _("%(reason)s There is no safety backup: restore another backup of this database.") % {"reason": error}
        )
    try:
        _restore_archive(engine, safety, keep, terminate=False)
    except BackupError as exc:
        return BackupError(
            _("%(reason)s Putting back safety backup #%(id)s failed too (%(again)s): restore it with "
              "backup_restore %(id)s.") % {"reason": error, "id": safety.pk, "again": exc}
        )
    return BackupError(
        _("%(reason)s The database was put back as it was from safety backup #%(id)s.") % {"reason": error, "id": safety.pk}
    )


def _run_restore(engine: Engine, backup: BackupJob, restore: Restore) -> Restore:
    """Run a RUNNING restore record with the options it holds; the caller holds the database's lock."""
    try:
        set_phase(restore, RestorePhase.CHECKING)
        if not backup.trusted and not restore.trust_archive:
            raise BackupError(untrusted_refusal(backup))
        # The checksum proves the archive is the one the backup wrote (backup_verify also reads it through).
        problem = checksum_problem(backup)
        if problem:
            raise BackupError(_("Backup #%(id)s is refused: %(problem)s") % {"id": backup.pk, "problem": problem})
        if restore.into:
            restore_into(engine, backup, restore)
            return _completed(engine, restore)
        restore.strategy, restore.strategy_reason = choose_strategy(engine, restore.strategy)
        restore.save(update_fields=["strategy", "strategy_reason"])
        keep = _catalog_tables() if holds_the_catalog(engine) else []
        if keep:
            _check_archive_keeps_the_catalog(engine, backup, keep)
        if restore.take_safety_backup:
            set_phase(restore, RestorePhase.SAFETY_BACKUP)
            safety_job = BackupJob(
                database=restore.database,
                trigger=BackupTrigger.PRE_RESTORE_SAFETY,
                description=_("Before restoring backup #%(id)s") % {"id": backup.pk},
                compression=setting("BACKUP_COMPRESSION"),
                requested_by=restore.requested_by,
                requested_by_name=restore.requested_by_name,
            )
            restore.safety_backup = _run_backup(engine, safety_job)
            restore.save(update_fields=["safety_backup"])
        engine.warnings.clear()
        if restore.strategy == RestoreStrategy.SWAP:
            restore_by_swap(engine, backup, restore, keep)
        else:
            # Set before the engine starts: while it restores the catalog's database it locks the catalog.
            set_phase(restore, RestorePhase.KEEPING_CATALOG if keep else RestorePhase.RESTORING)
            try:
                _restore_archive(engine, backup, keep, restore.terminate_sessions)
            except RestoreIncomplete as exc:
                raise _put_back_safety_backup(engine, restore.safety_backup, keep, exc) from exc
        if keep:
            try:
                _migrate_if_behind(engine.alias)
            except Exception as exc:  # noqa: BLE001  (whatever migrate raises, the person must run it)
                raise BackupError(
                    _("Backup #%(id)s was restored, but bringing its older schema up to this version failed "
                      "(%(reason)s); run manage.py migrate.") % {"id": backup.pk, "reason": exc}
                ) from exc
    except BackupError as exc:
        mark_failed(restore, str(exc))
        raise
    except BaseException:
        mark_failed(restore, _("The restore was interrupted; the database is as it was before."))
        raise
    _completed(engine, restore)
    # An update, not a save: the backup's record may be gone (deleted by hand), the restore still happened.
    BackupJob.objects.filter(pk=backup.pk).update(status=BackupStatus.RESTORED)
    backup.status = BackupStatus.RESTORED
    return restore


def _completed(engine: Engine, restore: Restore) -> Restore:
    restore.status = RestoreStatus.COMPLETED
    restore.finished_at = timezone.now()
    restore.warning = " ".join(engine.warnings)
    # Only these: a restore of the catalog's database may have set requested_by to NULL (a user the
    # archive lacks), which the object in memory does not know.
    restore.save(update_fields=["status", "finished_at", "warning"])
    return restore


def undo_restore(*, restore: Restore | int, acting_user=None) -> Restore:
    """Swap back, in one step, the database that a restore by swap replaced (kept until cleanup).

    The restored database is dropped; restoring the catalog's database keeps the catalog as it is now.
    """
    restore_id = restore.pk if isinstance(restore, Restore) else restore
    restore = Restore.objects.filter(pk=restore_id).first()
    if restore is None:
        raise BackupError(_("There is no restore #%(id)s; backup_list shows the restores.") % {"id": restore_id})
    if restore.undone_at:
        raise BackupError(_("Restore #%(id)s was undone already.") % {"id": restore.pk})
    if restore.status != RestoreStatus.COMPLETED or not restore.kept_database:
        raise BackupError(_("Restore #%(id)s kept no replaced database: only a completed restore by swap can be "
                            "undone.") % {"id": restore.pk})
    if restore.kept_dropped_at:
        raise BackupError(_("The database that restore #%(id)s replaced was dropped by cleanup; restore its safety "
                            "backup or another backup instead.") % {"id": restore.pk})
    engine = get_engine(restore.database)
    with database_lock(engine):
        kept = restore.kept_database
        if engine.database_size(kept) is None:
            raise BackupError(_("Database %(name)s, which restore #%(id)s kept, no longer exists.")
                              % {"name": kept, "id": restore.pk})
        keep = _catalog_tables() if holds_the_catalog(engine) else []
        replaced = kept_name(engine.database_name, f"__undone_{restore.pk}")
        engine.allow_connections(kept, True)
        try:
            engine.swap_in(kept, replaced, keep=keep, lock_timeout=setting("BACKUP_LOCK_TIMEOUT"))
        except BaseException:
            engine.allow_connections(kept, False)
            raise
        engine.on_database(replaced).drop_database()
        Restore.objects.filter(pk=restore.pk).update(undone_at=timezone.now())
    restore.refresh_from_db()
    if restore.backup_id:
        log_action(acting_user=acting_user, objects=[restore.backup], action_flag=CHANGE, message=_(
            "Undid restore #%(id)s: database %(database)s is back as it was before it."
        ) % {"id": restore.pk, "database": restore.database})
    return restore
