"""Settings, input and the job logs at the edges: where files go, values the code cannot handle, what is logged."""

import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from backups_app.models import BackupJob

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
