"""/metrics: Prometheus' text format behind a bearer token, read from the catalog."""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from backups_app.models import BackupJob, BackupStatus, Drill, DrillStatus, Restore, RestoreStatus

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "target"])

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def token(settings):
    settings.BACKUP_METRICS_TOKEN = TOKEN
    settings.BACKUP_DATABASES = ["default", "target"]


def samples(response) -> dict:
    """{(metric name, labels as a sorted tuple): value} of a /metrics answer, read by Prometheus' own parser."""
    families = text_string_to_metric_families(response.content.decode())
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families for sample in family.samples}


def test_metrics_are_off_without_a_token(client, settings):
    settings.BACKUP_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_metrics_refuse_a_request_without_the_token(client, token):
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"},
                    {"HTTP_AUTHORIZATION": TOKEN}):
        response = client.get("/metrics", **headers)
        assert response.status_code == 401, headers
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"django_backups" not in response.content


def test_metrics_describe_each_database(client, token):
    now = timezone.now()
    finished = now - timedelta(hours=3)
    job = BackupJob.objects.create(
        database="target", engine="postgresql", compression="zstd", status=BackupStatus.COMPLETED,
        started_at=finished - timedelta(seconds=42), finished_at=finished, size_bytes=123456, file_name="t/a.pgdump.zst")
    BackupJob.objects.filter(pk=job.pk).update(created_at=finished - timedelta(seconds=42))
    BackupJob.objects.create(database="target", engine="postgresql", compression="zstd", status=BackupStatus.FAILED,
                             finished_at=now, error="pg_dump failed")
    Restore.objects.create(backup=job, database="target", status=RestoreStatus.FAILED, finished_at=now)
    Drill.objects.create(backup=job, database="target", status=DrillStatus.PASSED, finished_at=now - timedelta(hours=2))
    Drill.objects.create(backup=job, database="target", status=DrillStatus.FAILED, finished_at=now - timedelta(hours=1))

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    values = samples(response)
    target = (("database", "target"),)
    assert values[("django_backups_last_success_timestamp_seconds", target)] == pytest.approx(
        (finished - timedelta(seconds=42)).timestamp())
    assert values[("django_backups_last_success_size_bytes", target)] == 123456
    assert values[("django_backups_last_success_duration_seconds", target)] == 42
    assert values[("django_backups_last_drill_passed", target)] == 0  # the newest drill failed
    assert values[("django_backups_last_drill_timestamp_seconds", target)] == pytest.approx(
        (now - timedelta(hours=1)).timestamp())
    assert values[("django_backups_failed_jobs", (("database", "target"), ("kind", "backup")))] == 1
    assert values[("django_backups_failed_jobs", (("database", "target"), ("kind", "restore")))] == 1
    assert values[("django_backups_failed_jobs", (("database", "target"), ("kind", "drill")))] == 1
    assert values[("django_backups_storage_used_bytes", target)] == 123456
    # Never backed up: time 0, so that "time() - last success > 26 h" fires for it too.
    assert values[("django_backups_last_success_timestamp_seconds", (("database", "default"),))] == 0
    assert values[("django_backups_storage_free_bytes", ())] > 0
