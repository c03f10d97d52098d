"""Settings, input and the job logs at the edges: where files go, values the code cannot handle, what is logged."""

import os
import stat
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from backups_app import jobs
from backups_app.models import BackupJob, BackupStatus

from .conftest import ROOT


def run_with_production_settings(tmp_path, code, **environment):
    """Run `code` after django.setup() in a child process with config.settings (as cron and the web
    server load them: no test overrides), from tmp_path as the current directory."""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_SECRET_KEY": "tests-only-not-secret",
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        **environment,
    }
    return subprocess.run([sys.executable, "-c", f"import django\ndjango.setup()\n{code}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_relative_backup_directory_is_taken_from_the_project_not_the_current_directory(tmp_path):
    result = run_with_production_settings(
        tmp_path, "from backups_app import archives\nprint(archives.local_path(''))",
        BACKUP_DIRECTORY="relative-backups",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(ROOT / "relative-backups")


# Values outside what the code can handle ---------------------------------------------------------

@pytest.mark.django_db(databases=["default", "sqlite"])
def test_description_longer_than_the_catalog_holds_is_one_clear_error():
    with pytest.raises(CommandError, match=r"^The description is 300 characters long; shorten it to at most 255\.$"):
        call_command("backup_create", "--database", "sqlite", "--description", "x" * 300, stdout=StringIO())
    assert not BackupJob.objects.exists()


@pytest.mark.django_db(databases=["default"])
def test_retention_beyond_a_hundred_years_is_one_clear_error_in_command_and_admin(admin_client):
    for args in (["--retention-days", "1000000"], ["--retention-days", "1000000", "--dry-run"]):
        with pytest.raises(CommandError, match=r"^The retention must be from 0 to 36500 days, not 1000000\.$"):
            call_command("backup_cleanup", *args, stdout=StringIO())

    url = reverse("admin:backups_app_backupjob_cleanup")
    for response in (admin_client.get(url, {"retention_days": 1000000}),
                     admin_client.post(url, {"retention_days": 1000000, "post": "yes", "plan": ""})):
        assert response.status_code == 200
        assert "Ensure this value is less than or equal to 36500." in response.text
    assert admin_client.get(url, {"retention_days": 36500}).status_code == 200


# Job logs -----------------------------------------------------------------------------------------

def test_job_logs_default_to_a_private_directory_of_this_installation_not_the_shared_temp_dir(tmp_path):
    result = run_with_production_settings(
        tmp_path, "from backups_app import jobs\nprint(jobs.log_directory())",
        TMPDIR=str(tmp_path), BACKUP_JOB_LOG_DIRECTORY="",  # empty: the default, whatever a local .env says
    )
    assert result.returncode == 0, result.stderr
    directory = ROOT / "var" / "job-logs"
    assert result.stdout.strip() == str(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and directory.stat().st_uid == os.geteuid()
    assert not (tmp_path / "django-backups-jobs").exists()
    assert "var/" in (ROOT / ".gitignore").read_text().split()
    assert "/app/var/job-logs" in (ROOT / "Dockerfile").read_text()  # the image's app user may not create it


def _symlink_to_a_directory(path, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    path.symlink_to(target)


def _open_to_others(path, tmp_path):
    path.mkdir()
    path.chmod(0o755)


def _owned_by_someone_else(path, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a directory to another user")
    path.mkdir(mode=0o700)
    os.chown(path, 65534, 65534)


@pytest.mark.django_db(databases=["default", "sqlite"])
@pytest.mark.parametrize("prepare, problem", [
    (_symlink_to_a_directory, "is a symbolic link"),
    (_open_to_others, "is open to other users (mode 0o755)"),
    (_owned_by_someone_else, "belongs to user id 65534, not to this process's user id 0"),
])
def test_a_job_log_directory_others_could_change_is_refused(
    settings, tmp_path, admin_user, django_capture_on_commit_callbacks, prepare, problem
):
    directory = tmp_path / "job-logs"
    prepare(directory, tmp_path)
    settings.BACKUP_JOB_LOG_DIRECTORY = str(directory)
    before = sorted(path.name for path in tmp_path.rglob("*"))

    with django_capture_on_commit_callbacks(execute=True):
        job = jobs.start_backup(database="sqlite", description="", compression="zstd", acting_user=admin_user)

    job.refresh_from_db()
    assert job.status == BackupStatus.FAILED and job.pid is None  # no process was started
    assert job.error.startswith(f"The backup process could not be started: The job log directory {directory} {problem}")
    assert job.error.endswith("; make it a directory of this user with mode 0700, or set BACKUP_JOB_LOG_DIRECTORY "
                              "to another.")
    assert sorted(path.name for path in tmp_path.rglob("*")) == before  # no log file written through it


@pytest.mark.django_db(databases=["default", "sqlite"])
def test_a_symlink_in_place_of_a_job_log_is_not_followed(settings, tmp_path, admin_user,
                                                         django_capture_on_commit_callbacks):
    directory = tmp_path / "job-logs"
    directory.mkdir(mode=0o700)
    settings.BACKUP_JOB_LOG_DIRECTORY = str(directory)
    victim = tmp_path / "someone-elses-file"
    victim.write_text("precious\n")
    victim.chmod(0o644)

    with django_capture_on_commit_callbacks(execute=True):
        job = jobs.start_backup(database="sqlite", description="", compression="zstd", acting_user=admin_user)
        (directory / f"backup-{job.pk}.log").symlink_to(victim)  # before the process starts (on commit)

    job.refresh_from_db()
    assert job.status == BackupStatus.FAILED and job.pid is None
    assert job.error.startswith("The backup process could not be started: [Errno 40] Too many levels of symbolic links")
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644


# Logging ------------------------------------------------------------------------------------------

def test_with_debug_off_a_server_error_and_a_failed_job_reach_stderr_with_their_traceback(tmp_path):
    (tmp_path / "failing_urls.py").write_text(
        "from django.urls import path\n\n\n"
        "def fail(request):\n    raise RuntimeError('view failed 4711')\n\n\n"
        "urlpatterns = [path('fail/', fail)]\n"
    )
    code = (
        "import logging\n"
        "from django.test import Client, override_settings\n"
        "with override_settings(ROOT_URLCONF='failing_urls'):\n"
        "    print(Client(raise_request_exception=False).get('/fail/').status_code)\n"
        # What the schedule does with an unexpected error of a backup (backups_app.schedule).
        "try:\n    raise OSError('job failed 4712')\n"
        "except OSError:\n"
        "    logging.getLogger('backups_app.schedule').exception('Scheduled backup raised an unexpected error.')\n"
    )
    result = run_with_production_settings(tmp_path, code, DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="testserver")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "500"
    request_log, job_log = result.stderr.split("ERROR backups_app.schedule: ")
    assert "ERROR django.request: Internal Server Error: /fail/\nTraceback (most recent call last):" in request_log
    assert request_log.count("RuntimeError: view failed 4711") == 1  # logged once
    assert "Traceback (most recent call last):" in job_log and "OSError: job failed 4712" in job_log
