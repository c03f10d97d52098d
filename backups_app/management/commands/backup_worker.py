import logging
import threading
import time

from django.core.management import call_command
from django.db import connections
from django.utils.translation import gettext as _

from backups_app import services
from backups_app.conf import setting

from ._common import BackupCommand

logger = logging.getLogger("backups_app.worker")

# How often a worker looks for jobs whose worker died (on any host) and marks them failed.
SWEEP_SECONDS = 15


class Command(BackupCommand):
    help = (
        "Run the backups and restores asked for in the background (the admin, --background, the schedule). "
        "Starts the worker of the configured task backend: BACKUP_TASK_BACKEND=db runs django-tasks' db_worker on "
        "the application's database, rq runs `rqworker default` on BACKUP_REDIS_URL. Start one per host, or more. "
        "Every few seconds it also marks as failed the jobs whose worker died. Ctrl-C stops it once the job it "
        "runs has finished (twice: at once, and the job is marked failed)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--burst", action="store_true", help="Run what is queued now, then exit (for scripts and tests)."
        )

    def handle(self, *args, **options):
        sweeper = threading.Thread(target=self.sweep, name="backups-dead-job-sweeper", daemon=True)
        sweeper.start()
        backend = setting("BACKUP_TASK_BACKEND")
        self.stdout.write(_("Backup worker (%(backend)s backend) started.") % {"backend": backend})
        if backend == "rq":
            call_command("rqworker", "default", burst=options["burst"])
        else:
            worker_options = ["--no-reload", "--queue-name", "default", "--interval", "1"]
            call_command("db_worker", *worker_options, *(["--batch"] if options["burst"] else []))

    def sweep(self):
        while True:
            try:
                failed = services.fail_dead_jobs()
                if failed:
                    logger.warning("Marked %s jobs whose worker died as failed.", failed)
            except Exception:  # noqa: BLE001  (the worker must go on; the next sweep tries again)
                logger.exception("Looking for jobs whose worker died failed.")
            finally:
                connections.close_all()
            time.sleep(SWEEP_SECONDS)
