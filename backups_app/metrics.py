"""`/metrics`: the backups in Prometheus' text format, for a bearer token (BACKUP_METRICS_TOKEN).

Read from the catalog only (no database server or storage is probed), so a scrape every 15 seconds
costs a few queries. Without BACKUP_METRICS_TOKEN the endpoint does not exist (404).
"""

from __future__ import annotations

import hmac
import shutil

from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from . import archives, selectors
from .conf import setting
from .monitoring import nearest_existing
from .models import DrillStatus
from .schedule import scheduled_databases
from .services.restore_swap import kept_databases

PREFIX = "django_backups"


class CatalogCollector:
    """Collect the per-database gauges from the catalog, afresh at each scrape."""

    def collect(self):
        databases = scheduled_databases()
        latest = selectors.latest_successful_per_database()
        drills = selectors.latest_drill_per_database()
        storage = selectors.storage_per_database()
        failed = selectors.failures_by_kind()
        databases += sorted(set(latest) - set(databases))

        def gauge(name, documentation, labels=("database",)):
            return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=list(labels))

        success_time = gauge("last_success_timestamp_seconds",
                             "When the newest successful backup was made (Unix time; 0: never).")
        size = gauge("last_success_size_bytes", "The size of the newest successful backup's archive.")
        duration = gauge("last_success_duration_seconds", "How long the newest successful backup took.")
        drill_time = gauge("last_drill_timestamp_seconds", "When the newest restore drill finished (Unix time).")
        drill_passed = gauge("last_drill_passed", "Whether the newest restore drill passed (1) or failed (0).")
        failures = gauge("failed_jobs", "Failed jobs the catalog holds, by kind (backup, restore, drill).",
                         labels=("database", "kind"))
        stored = gauge("storage_used_bytes", "The bytes of archives kept in the backup storage.")
        kept = gauge("kept_replaced_databases",
                     "Databases that restores by swap replaced and keep for an undo (their size: backup_check --json).")
        kept_counts: dict[str, int] = {}
        for restore in kept_databases():
            kept_counts[restore.database] = kept_counts.get(restore.database, 0) + 1
        for database in databases:
            job = latest.get(database)
            success_time.add_metric([database], job.created_at.timestamp() if job else 0)
            if job is not None:
                size.add_metric([database], job.size_bytes or 0)
                if job.duration is not None:
                    duration.add_metric([database], job.duration.total_seconds())
            drill = drills.get(database)
            if drill is not None:
                drill_time.add_metric([database], drill.finished_at.timestamp())
                drill_passed.add_metric([database], 1 if drill.status == DrillStatus.PASSED else 0)
            stored.add_metric([database], storage.get(database, 0))
            kept.add_metric([database], kept_counts.get(database, 0))
            for kind in ("backup", "restore", "drill"):
                failures.add_metric([database, kind], failed.get((database, kind), 0))
        yield from (success_time, size, duration, drill_time, drill_passed, failures, stored, kept)
        root = archives.local_path("")
        if root:
            free = GaugeMetricFamily(f"{PREFIX}_storage_free_bytes", "Free space where the backup storage lies.")
            free.add_metric([], shutil.disk_usage(nearest_existing(root)).free)
            yield free


def _authorized(request) -> bool:
    token = setting("BACKUP_METRICS_TOKEN")
    scheme, _space, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics(request):
    """Return the metrics for a request bearing BACKUP_METRICS_TOKEN; 401 without it, 404 when it is unset."""
    if not setting("BACKUP_METRICS_TOKEN"):
        raise Http404("/metrics is off: set BACKUP_METRICS_TOKEN.")
    if not _authorized(request):
        response = HttpResponse("A bearer token is required: Authorization: Bearer <BACKUP_METRICS_TOKEN>.\n",
                                status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CatalogCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
