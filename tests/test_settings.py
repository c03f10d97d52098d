"""Settings and input at the edges: where files go, values the code cannot handle, what is logged."""

import os
import subprocess
import sys

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
