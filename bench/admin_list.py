"""Time the admin change list (with its stats panel) over a catalog of N backups, in-process.

Run with the project's environment (DATABASE_URL of a migrated catalog); prints one JSON object:
the number of SQL queries of one page view and the server time of each view (Django's test client
calls the WSGI handler directly, so this is the server's time without the network).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from backups_app.models import BackupJob, BackupStatus, BackupTrigger

    BackupJob.objects.all().delete()
    statuses = [BackupStatus.COMPLETED] * 8 + [BackupStatus.FAILED, BackupStatus.RESTORED]
    BackupJob.objects.bulk_create(
        (
            BackupJob(database=("default", "bench")[i % 2], engine="postgresql", status=statuses[i % 10],
                      trigger=BackupTrigger.SCHEDULED, compression="zstd", file_name=f"bench/{i}.pgdump.zst",
                      size_bytes=10_000_000 + i, checksum_sha256=f"{i:064x}", requested_by_name="cron")
            for i in range(args.jobs)
        ),
        batch_size=2000,
    )
    user, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={"is_staff": True, "is_superuser": True})
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    url = reverse("admin:backups_app_backupjob_changelist")
    client.get(url)  # warm up: templates, content types
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    queries = len(captured)  # now: the log it reads is cleared by the next request
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    print(json.dumps({"jobs": args.jobs, "queries": queries, "median_ms": statistics.median(times),
                      "min_ms": min(times), "max_ms": max(times), "vendor": connection.vendor}))


if __name__ == "__main__":
    main()
