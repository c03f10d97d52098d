"""The HTTP API under /api/, through DRF's test client with real tokens, real backups (the `sqlite`
alias; pagila on PostgreSQL where a real `manage.py backup_worker` runs the jobs) and the real schema."""

import hashlib
import io
import json
import os
import re
import subprocess
import time

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connections
from openapi_spec_validator import validate
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from backups_app import services
from backups_app.models import BackupJob, BackupStatus, BackupTrigger, Drill, Restore, RestoreStatus

from .conftest import ROOT, fingerprint, psql

SQLITE = pytest.mark.django_db(databases=["default", "sqlite"])
FINAL = {"completed", "failed", "restored", "passed"}


@pytest.fixture
def make_client(django_user_model):
    """Return a function making a user with these BackupJob permissions and an API client holding its token."""

    def make(username, *codenames, staff=True) -> APIClient:
        user = django_user_model.objects.create_user(username, is_staff=staff)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label="backups_app", codename__in=codenames))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        client.user = user
        return client

    return make


@pytest.fixture
def backups():
    """Two completed backups of the `sqlite` database (the older one past a retention of 0 days) and a
    finished restore of the newer one."""
    older = services.create_backup(database="sqlite", description="older")
    newer = services.create_backup(database="sqlite", description="newer")
    restore = Restore.objects.create(backup=newer, database="sqlite", status=RestoreStatus.COMPLETED)
    return older, newer, restore


ALL_PERMISSIONS = ["view_backupjob", "add_backupjob", "delete_backupjob", "restore_backupjob", "download_backupjob"]

# (name, method, path, body, the permission it needs, the status it answers when allowed)
ENDPOINTS = [
    ("list", "get", "/api/backups/", None, "view_backupjob", 200),
    ("show", "get", "/api/backups/{newer}/", None, "view_backupjob", 200),
    ("create", "post", "/api/backups/", {"database": "sqlite"}, "add_backupjob", 202),
    ("restore", "post", "/api/backups/{newer}/restore/", {"confirm_database": "sqlite"}, "restore_backupjob", 202),
    ("download", "get", "/api/backups/{newer}/download/", None, "download_backupjob", 200),
    ("verify", "post", "/api/backups/{newer}/verify/", None, "view_backupjob", 200),
    ("delete", "delete", "/api/backups/{older}/", None, "delete_backupjob", 204),
    ("stats", "get", "/api/stats/", None, "view_backupjob", 200),
    ("cleanup", "post", "/api/cleanup/", {"retention_days": 0}, "delete_backupjob", 200),
    ("restore status", "get", "/api/restores/{restore}/", None, "view_backupjob", 200),
    ("restore options", "post", "/api/backups/{newer}/restore/",
     {"confirm_database": "sqlite", "strategy": "in-place", "jobs": 2}, "restore_backupjob", 202),
    ("drill", "post", "/api/backups/{newer}/drill/", None, "restore_backupjob", 202),
    ("drill status", "get", "/api/drills/{drill}/", None, "view_backupjob", 200),
]
# The undo of a restore by swap needs PostgreSQL: test_a_swap_restore_over_the_api_is_undone_over_the_api.


def call(client, method, path, body=None):
    return getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)


def state(backup_dir) -> tuple:
    """Everything an API call could change: the catalog, the restores, the admin's log, the storage's files."""
    return (
        sorted(BackupJob.objects.values_list("pk", "status")),
        sorted(Restore.objects.values_list("pk", "status", "undone_at")),
        sorted(Drill.objects.values_list("pk", "status")),
        LogEntry.objects.count(),
        sorted(str(path.relative_to(backup_dir)) for path in backup_dir.rglob("*")),
    )


@SQLITE
@pytest.mark.parametrize("name, method, path, body, permission, allowed", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_each_endpoint_answers_401_to_anonymous_403_without_its_permission_and_changes_nothing_then_works(
    name, method, path, body, permission, allowed, backups, backup_dir, make_client
):
    older, newer, restore = backups
    drill = Drill.objects.create(backup=newer, database="sqlite")
    path = path.format(older=older.pk, newer=newer.pk, restore=restore.pk, drill=drill.pk)
    before = state(backup_dir)
    refused = [
        (APIClient(), 401),
        (make_client("all_but_this", *(p for p in ALL_PERMISSIONS if p != permission)), 403),
        (make_client("not_staff", permission, staff=False), 403),  # the admin lets no one in who is not staff
    ]
    for client, expected in refused:
        response = call(client, method, path, body)
        assert response.status_code == expected, (client, response.content)
        assert set(response.json()) == {"detail"}
        assert state(backup_dir) == before, "a refused request changed something"
    assert refused[0][0].get(path).headers["WWW-Authenticate"] == "Token"

    response = call(make_client("allowed", permission), method, path, body)

    assert response.status_code == allowed, response.content


@SQLITE
def test_tokens_are_made_in_the_admin_too(admin_client, admin_user):
    page = admin_client.post("/admin/authtoken/tokenproxy/add/", {"user": admin_user.pk})
    assert page.status_code == 302 and Token.objects.get().user == admin_user


@SQLITE
def test_a_token_made_with_drf_create_token_is_accepted(django_user_model):
    user = django_user_model.objects.create_user("ci", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_backupjob"))
    out = io.StringIO()
    call_command("drf_create_token", "ci", stdout=out)
    key = Token.objects.get(user=user).key
    assert key in out.getvalue()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/backups/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get("/api/backups/").status_code == 401


# What each endpoint answers and does ---------------------------------------------------------------

@SQLITE
def test_create_answers_202_with_the_id_and_url_at_once_and_logs_like_the_admin(make_client, backup_dir):
    client = make_client("ci", "add_backupjob", "view_backupjob")
    response = client.post("/api/backups/", {"database": "sqlite", "description": "before deploy",
                                              "compression": "gzip"}, format="json")
    assert response.status_code == 202
    job = BackupJob.objects.get()
    body = response.json()
    assert body["id"] == job.pk and body["url"] == f"http://testserver/api/backups/{job.pk}/" == response["Location"]
    assert (job.status, job.database, job.description, job.compression) == ("pending", "sqlite", "before deploy", "gzip")
    assert job.requested_by == client.user and body["requested_by"] == "ci"
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.user, entry.object_id) == (ADDITION, client.user, str(job.pk))
    assert client.get(body["url"]).json()["status"] == "pending"


@SQLITE
def test_show_includes_the_restores_and_the_restore_url_shows_status_and_phase(make_client, backups):
    _older, newer, restore = backups
    client = make_client("viewer", "view_backupjob")
    body = client.get(f"/api/backups/{newer.pk}/").json()
    assert body["checksum"] == newer.checksum_sha256 and body["description"] == "newer"
    assert [r["id"] for r in body["restores"]] == [restore.pk]
    Restore.objects.filter(pk=restore.pk).update(status=RestoreStatus.RUNNING, phase="safety_backup")
    shown = client.get(body["restores"][0]["url"]).json()
    assert (shown["status"], shown["phase"], shown["backup"]) == ("running", "safety_backup", newer.pk)


@SQLITE
def test_list_filters_like_the_admin_and_is_paginated(make_client):
    BackupJob.objects.bulk_create(
        [BackupJob(database="sqlite", compression="zstd", status=BackupStatus.FAILED) for _ in range(51)]
        + [BackupJob(database="default", compression="zstd", status=BackupStatus.COMPLETED,
                     trigger=BackupTrigger.SCHEDULED)]
    )
    client = make_client("viewer", "view_backupjob")
    page = client.get("/api/backups/", {"status": "failed"}).json()
    assert page["count"] == 51 and len(page["results"]) == 50 and page["next"]
    assert len(client.get(page["next"]).json()["results"]) == 1
    only = client.get("/api/backups/", {"database": "default", "trigger": "scheduled"}).json()
    assert only["count"] == 1 and only["results"][0]["database"] == "default"
    response = client.get("/api/backups/", {"status": "complete"})
    assert response.status_code == 400
    assert response.json() == {"detail": "Unknown status 'complete': use one of pending, running, completed, "
                                         "failed, restored."}


@SQLITE
def test_download_streams_the_archive_with_length_and_the_catalogs_checksum(make_client, backups, backup_dir):
    _older, newer, _restore = backups
    client = make_client("ops", "download_backupjob")
    response = client.get(f"/api/backups/{newer.pk}/download/", HTTP_ACCEPT="application/octet-stream")
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content)
    assert body == (backup_dir / newer.file_name).read_bytes()
    assert int(response["Content-Length"]) == newer.size_bytes == len(body)
    assert response["X-Checksum-SHA256"] == hashlib.sha256(body).hexdigest() == newer.checksum_sha256
    assert LogEntry.objects.get().get_change_message() == "Downloaded the archive."


@SQLITE
def test_verify_reports_intact_and_damaged_and_logs_like_the_admin(make_client, backups, backup_dir):
    _older, newer, _restore = backups
    client = make_client("viewer", "view_backupjob")
    assert client.post(f"/api/backups/{newer.pk}/verify/").json() == {
        "id": newer.pk, "ok": True, "problem": None, "note": None, "signature": "valid", "trusted": True}
    with open(backup_dir / newer.file_name, "r+b") as archive:
        archive.seek(10)
        archive.write(b"\x00\x01\x02")
    damaged = client.post(f"/api/backups/{newer.pk}/verify/")
    assert damaged.status_code == 200 and not damaged.json()["ok"] and "does not match its checksum" in damaged.json()["problem"]
    messages = [(entry.action_flag, entry.get_change_message()) for entry in LogEntry.objects.order_by("pk")]
    assert messages[0] == (CHANGE, "Verified: the archive matches its checksum and reads through.")
    assert messages[1][1].startswith("Verification failed: its archive")


@SQLITE
def test_delete_removes_record_archive_and_manifest_and_logs_the_deletion(make_client, backups, backup_dir):
    older, _newer, _restore = backups
    client = make_client("ops", "delete_backupjob")
    assert client.delete(f"/api/backups/{older.pk}/").status_code == 204
    assert not BackupJob.objects.filter(pk=older.pk).exists() and not (backup_dir / older.file_name).exists()
    assert LogEntry.objects.get().action_flag == DELETION
    running = BackupJob.objects.create(database="sqlite", compression="zstd", status=BackupStatus.RUNNING)
    refused = client.delete(f"/api/backups/{running.pk}/")
    assert refused.status_code == 400
    assert refused.json() == {"detail": f"Backup #{running.pk} is still running; wait for it to finish."}
    assert BackupJob.objects.filter(pk=running.pk).exists() and LogEntry.objects.count() == 1


@SQLITE
def test_cleanup_dry_run_deletes_nothing_and_the_real_one_deletes_what_it_listed(make_client, backups, backup_dir):
    older, newer, _restore = backups
    client = make_client("ops", "delete_backupjob")
    preview = client.post("/api/cleanup/", {"dry_run": True, "retention_days": 0}, format="json").json()
    assert preview["dry_run"] and [job["id"] for job in preview["expired"]] == [older.pk]
    assert BackupJob.objects.count() == 2 and not LogEntry.objects.exists()
    done = client.post("/api/cleanup/", {"retention_days": 0}, format="json").json()
    assert [job["id"] for job in done["expired"]] == [older.pk] and done["bytes_freed"] == older.size_bytes
    assert list(BackupJob.objects.values_list("pk", flat=True)) == [newer.pk]  # a database's newest stays
    assert list(LogEntry.objects.values_list("object_id", "action_flag")) == [(str(older.pk), DELETION)]
    bad = client.post("/api/cleanup/", {"retention_days": -1}, format="json")
    assert bad.json() == {"detail": "The retention must be from 0 to 36500 days, not -1."}


@SQLITE
def test_stats_gives_totals_and_each_databases_newest_backup(make_client, backups):
    _older, newer, _restore = backups
    stats = make_client("viewer", "view_backupjob").get("/api/stats/").json()
    assert (stats["total"], stats["completed"], stats["failed"]) == (2, 2, 0)
    assert stats["databases"]["sqlite"]["id"] == newer.pk
    assert stats["databases"]["sqlite"]["url"] == f"http://testserver/api/backups/{newer.pk}/"


@SQLITE
def test_restore_options_are_recorded_and_shown_and_a_drill_is_queued_and_logged_like_the_admin(make_client, backups):
    _older, newer, _restore = backups
    client = make_client("ops", "restore_backupjob", "view_backupjob")
    queued = client.post(f"/api/backups/{newer.pk}/restore/", {
        "confirm_database": "sqlite", "strategy": "in-place", "jobs": 3, "safety_backup": False}, format="json")
    assert queued.status_code == 202, queued.content
    restore = Restore.objects.get(pk=queued.json()["id"])
    assert (restore.strategy, restore.jobs, restore.into, restore.take_safety_backup) == ("in-place", 3, "", False)
    shown = client.get(queued.json()["url"]).json()
    assert (shown["strategy"], shown["jobs"], shown["into"], shown["tables"]) == ("in-place", 3, None, [])
    assert (shown["kept_database"], shown["undone"]) == (None, None)
    # A new database replaces nothing: no confirmation is asked, and no safety backup is taken.
    into = client.post(f"/api/backups/{newer.pk}/restore/", {"into": "/nonexistent/new.sqlite3"}, format="json")
    assert into.status_code == 202 and into.json()["strategy"] == "into" and into.json()["into"] == "/nonexistent/new.sqlite3"

    drill = client.post(f"/api/backups/{newer.pk}/drill/")

    assert drill.status_code == 202
    body = drill.json()
    assert body["url"] == f"http://testserver/api/drills/{body['id']}/" == drill["Location"]
    assert (body["status"], body["backup"], body["tables"]) == ("pending", newer.pk, {})
    entry = LogEntry.objects.get()
    assert (entry.user, entry.object_id, entry.get_change_message()) == (
        client.user, str(newer.pk), f"Asked for restore drill #{body['id']}.")


@SQLITE
def test_the_admin_form_and_the_api_refuse_restore_options_with_one_sentence(make_client, backups):
    from backups_app.admin.forms import RestoreForm

    _older, newer, _restore = backups
    sentence = "Only tables go into a new database: name the new database too."
    form = RestoreForm({"database": "sqlite", "confirm_database": "sqlite", "tables": "main.t"}, backup=newer)
    assert not form.is_valid() and form.errors["tables"] == [sentence]
    api = make_client("ops", "restore_backupjob").post(
        f"/api/backups/{newer.pk}/restore/", {"confirm_database": "sqlite", "tables": ["main.t"]}, format="json")
    assert api.json() == {"detail": sentence} and not Restore.objects.exclude(pk=_restore.pk).exists()


# Errors: one sentence, the commands' own ---------------------------------------------------------

@SQLITE
def test_errors_are_one_sentence_the_same_as_the_commands_and_record_nothing(make_client, backups):
    _older, newer, restore = backups
    client = make_client("admin_like", *ALL_PERMISSIONS)
    untrusted = services.create_backup(database="sqlite")
    BackupJob.objects.filter(pk=untrusted.pk).update(trusted=False)
    before = (BackupJob.objects.count(), Restore.objects.count(), Drill.objects.count(), LogEntry.objects.count())
    cases = [
        (client.get("/api/backups/999999/"), 404, "There is no backup #999999 (see backup_list)."),
        (client.get("/api/restores/999999/"), 404, "There is no restore #999999 (see backup_show)."),
        (client.post("/api/backups/x1/verify/"), 404, "'x1' is not a backup id: ids are whole numbers (see backup_list)."),
        (client.post("/api/backups/", ["sqlite"], format="json"), 400, "Invalid data. Expected a dictionary, but got list."),
        (client.post("/api/backups/", {"database": "nope"}, format="json"), 400,
         "Unknown database 'nope': the configured databases are " + ", ".join(connections.settings) + "."),
        (client.post("/api/backups/", {"database": "sqlite", "compression": "xz"}, format="json"), 400,
         "Unknown compression 'xz': use one of zstd, gzip, none."),
        (client.post(f"/api/backups/{newer.pk}/restore/", {"confirm_database": "sqlit"}, format="json"), 400,
         "Type sqlite or " + str(connections["sqlite"].settings_dict["NAME"]) + " exactly to confirm."),
        (client.post(f"/api/backups/{newer.pk}/restore/", {}, format="json"), 400,
         "Type sqlite or " + str(connections["sqlite"].settings_dict["NAME"]) + " exactly to confirm."),
        (client.post(f"/api/backups/{newer.pk}/restore/", {"confirm_database": "sqlite", "strategy": "fast"},
                     format="json"), 400, "Unknown strategy 'fast': use one of auto, swap, in-place."),
        (client.post(f"/api/backups/{newer.pk}/restore/", {"confirm_database": "sqlite", "jobs": 0},
                     format="json"), 400, "Parallel jobs must be from 1 to 64, not 0."),
        (client.post(f"/api/backups/{newer.pk}/restore/", {"confirm_database": "sqlite", "tables": ["main.t"]},
                     format="json"), 400, "Only tables go into a new database: name the new database too."),
        (client.post(f"/api/backups/{newer.pk}/restore/", {"into": "x" * 64}, format="json"), 400,
         "into: Ensure this field has no more than 63 characters."),
        (client.post(f"/api/restores/{restore.pk}/undo/"), 400,
         f"Restore #{restore.pk} kept no replaced database: only a completed restore by swap can be undone."),
        (client.post("/api/restores/999999/undo/"), 404, "There is no restore #999999 (see backup_show)."),
        (client.get("/api/drills/999999/"), 404, "There is no restore drill #999999 (see backup_show)."),
        (client.post(f"/api/backups/{untrusted.pk}/drill/"), 400, services.restore.untrusted_refusal(untrusted)),
        (client.post(f"/api/backups/{newer.pk}/restore/", {"confirm_database": "sqlite", "safety_backup": "maybe"},
                     format="json"), 400, "safety_backup: Must be a valid boolean."),
        (client.post(f"/api/backups/{untrusted.pk}/restore/", {"confirm_database": "sqlite"}, format="json"), 400,
         services.restore.untrusted_refusal(untrusted)),
        (client.post(f"/api/backups/{newer.pk}/restore/", {"database": "mariadb", "confirm_database": "mariadb"},
                     format="json"), 400, None),  # a SQLite archive into MariaDB
    ]
    for response, status, sentence in cases:
        assert response.status_code == status, response.content
        body = response.json()
        assert set(body) == {"detail"} and body["detail"].endswith("."), body
        if sentence:
            assert body["detail"] == sentence
    assert (BackupJob.objects.count(), Restore.objects.count(), Drill.objects.count(), LogEntry.objects.count()) == before
    assert Restore.objects.get(pk=restore.pk).undone_at is None


# The schema and the Swagger page -------------------------------------------------------------------

@SQLITE
def test_the_schema_is_valid_openapi_3_and_describes_what_the_endpoints_answer(admin_client, make_client, backups):
    response = admin_client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    spec = json.loads(response.content)
    validate(spec)  # raises on anything against the OpenAPI 3 specification
    assert spec["openapi"].startswith("3.")
    _older, newer, restore = backups
    client = make_client("viewer", "view_backupjob")
    schemas = spec["components"]["schemas"]
    shown = client.get(f"/api/backups/{newer.pk}/").json()
    assert set(schemas["BackupWithRestores"]["properties"]) == set(shown)
    assert set(schemas["Restore"]["properties"]) == set(client.get(f"/api/restores/{restore.pk}/").json())
    stats = client.get("/api/stats/").json()
    assert set(schemas["Stats"]["properties"]) == set(stats)
    assert set(schemas["LatestBackup"]["properties"]) == set(stats["databases"]["sqlite"])
    assert set(schemas["Verification"]["properties"]) == set(client.post(f"/api/backups/{newer.pk}/verify/").json())
    drill = Drill.objects.create(backup=newer, database="sqlite")
    assert set(schemas["Drill"]["properties"]) == set(client.get(f"/api/drills/{drill.pk}/").json())
    paths = spec["paths"]
    assert "post" in paths["/api/backups/{id}/drill/"] and "post" in paths["/api/restores/{id}/undo/"]
    assert {"strategy", "jobs", "into", "tables"} <= set(schemas["RestoreRequestRequest"]["properties"])
    assert make_client("viewer2", "view_backupjob", staff=False).get("/api/schema/").status_code == 403


@SQLITE
def test_the_swagger_page_is_for_staff_and_served_without_a_cdn(admin_client, client):
    page = admin_client.get("/api/docs/")
    assert page.status_code == 200 and "swagger-ui" in page.text and "/api/schema/" in page.text
    assert "cdn." not in page.text and "//unpkg" not in page.text
    anonymous = client.get("/api/docs/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")


# End to end on PostgreSQL, with a real worker --------------------------------------------------------

SECRET = "api-test-password-Zq8"


@pytest.fixture
def db_password():
    """Give the PostgreSQL connections a password (the test server trusts local connections, so any works),
    for the worker too (child_env passes the URL with it): no API response may hold it."""
    aliases = [alias for alias in ("default", "target") if connections[alias].vendor == "postgresql"]
    for alias in aliases:
        connections[alias].settings_dict["PASSWORD"] = SECRET
    yield
    for alias in aliases:
        connections[alias].settings_dict["PASSWORD"] = ""


class Recorder:
    """An API client that keeps every answer's headers and body, to look for secrets in all of them."""

    def __init__(self, client):
        self.client, self.seen = client, []

    def __getattr__(self, method):
        def send(*args, **kwargs):
            response = getattr(self.client, method)(*args, **kwargs)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            response.body = body
            self.seen.append(str(dict(response.headers)).encode() + body)
            return response

        return send

    def wait(self, url, timeout=180):
        """Poll a backup's or restore's URL as a CI job would, until its status is final."""
        deadline = time.monotonic() + timeout
        while (body := self.get(url).json())["status"] not in FINAL:
            assert time.monotonic() < deadline, body
            time.sleep(0.3)
        return body

    def assert_no_secrets(self):
        params = connections["default"].settings_dict
        for text in self.seen:
            for secret in (SECRET, "postgres://", "postgresql://", f"{params['HOST']}:{params['PORT'] or 5432}"):
                assert secret.encode() not in text, (secret, text[:300])


@pytest.mark.django_db(transaction=True, databases=["default", "target"])
def test_a_backup_created_over_the_api_completes_and_downloads_with_the_catalogs_checksum(
    pagila, worker, make_client, db_password
):
    worker()
    api = Recorder(make_client("ci", "add_backupjob", "view_backupjob", "download_backupjob"))
    created = api.post("/api/backups/", {"database": pagila, "description": "before deploy"}, format="json")
    assert created.status_code == 202

    done = api.wait(created.json()["url"])

    assert done["status"] == "completed", done["error"]
    download = api.get(created.json()["url"] + "download/")
    assert hashlib.sha256(download.body).hexdigest() == download["X-Checksum-SHA256"]
    assert download["X-Checksum-SHA256"] == BackupJob.objects.get(pk=done["id"]).checksum_sha256 == done["checksum"]
    assert int(download["Content-Length"]) == len(download.body)
    api.get("/api/stats/")
    api.post("/api/backups/", {"database": "nope"}, format="json")
    api.assert_no_secrets()


@pytest.mark.django_db(transaction=True, databases=["default", "target"])
def test_a_restore_over_the_api_brings_pagila_back_identically(pagila, worker, make_client, db_password):
    worker()
    before = fingerprint(pagila)
    backup = services.create_backup(database=pagila)
    psql(pagila, "DELETE FROM payment WHERE payment_id % 2 = 0; UPDATE film SET title = 'changed'")
    api = Recorder(make_client("ops", "restore_backupjob", "view_backupjob"))

    queued = api.post(f"/api/backups/{backup.pk}/restore/", {"confirm_database": pagila}, format="json")
    assert queued.status_code == 202 and queued.json()["status"] == "pending"
    done = api.wait(queued.json()["url"])

    assert done["status"] == "completed", done["error"]
    assert fingerprint(pagila) == before
    assert done["safety_backup"] and BackupJob.objects.get(pk=done["safety_backup"]).status == BackupStatus.COMPLETED
    entry = LogEntry.objects.get(object_id=str(done["id"]), content_type__model="restore")
    assert entry.user.username == "ops" and entry.change_message == f"Restored backup #{backup.pk} into database {pagila}."
    api.get(f"/api/backups/{backup.pk}/")
    api.assert_no_secrets()


@pytest.mark.django_db(transaction=True, databases=["default", "target"])
def test_a_drill_over_the_api_passes_with_every_tables_counts(pagila, worker, make_client, db_password):
    worker()
    backup = services.create_backup(database=pagila)
    api = Recorder(make_client("ops", "restore_backupjob", "view_backupjob"))

    queued = api.post(f"/api/backups/{backup.pk}/drill/")
    assert queued.status_code == 202 and queued.json()["status"] == "pending"
    done = api.wait(queued.json()["url"])

    assert done["status"] == "passed", done["error"]
    assert done["tables"]["public.actor"] == {"archive": 200, "restored": 200}
    assert done["tables"]["public.film"] == {"archive": 1000, "restored": 1000}
    assert all(counts["archive"] == counts["restored"] for counts in done["tables"].values())
    assert done["failed_checks"] == [] and done["restore_seconds"] > 0 and done["phase"] is None
    assert api.get(f"/api/backups/{backup.pk}/").json()["id"] == backup.pk
    api.assert_no_secrets()


@pytest.mark.django_db(transaction=True, databases=["default", "target"])
def test_a_restore_into_a_new_database_over_the_api_makes_it_and_touches_nothing_else(
    pagila, worker, make_client, db_password
):
    worker()
    backup = services.create_backup(database=pagila)
    psql(pagila, "UPDATE actor SET first_name = 'CHANGED' WHERE actor_id = 1")
    name = f"{connections[pagila].settings_dict['NAME']}__api_into"
    api = Recorder(make_client("ops", "restore_backupjob", "view_backupjob"))
    try:
        queued = api.post(f"/api/backups/{backup.pk}/restore/", {
            "database": pagila, "into": name, "tables": ["public.actor", "public.film_actor"], "jobs": 2}, format="json")
        assert queued.status_code == 202, queued.content
        done = api.wait(queued.json()["url"])

        assert done["status"] == "completed", done["error"]
        assert (done["strategy"], done["into"], done["tables"], done["safety_backup"]) == (
            "into", name, ["public.actor", "public.film_actor"], None)
        assert psql(name, "SELECT first_name FROM actor WHERE actor_id = 1").strip() == "PENELOPE"
        assert psql(name, "SELECT count(*) FROM film_actor").strip() == "5462"
        assert psql(name, "SELECT count(*) FROM pg_tables WHERE tablename = 'film'").strip() == "0"
        assert psql(pagila, "SELECT first_name FROM actor WHERE actor_id = 1").strip() == "CHANGED"
        api.assert_no_secrets()
    finally:
        psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.django_db(transaction=True, databases=["default", "target"])
def test_a_swap_restore_over_the_api_is_undone_over_the_api(pagila, worker, make_client, db_password):
    worker()
    backup = services.create_backup(database=pagila)
    psql(pagila, "UPDATE actor SET first_name = 'CHANGED' WHERE actor_id = 1")
    changed = fingerprint(pagila)
    api = Recorder(make_client("ops", "restore_backupjob", "view_backupjob"))
    queued = api.post(f"/api/backups/{backup.pk}/restore/", {
        "confirm_database": pagila, "strategy": "swap", "jobs": 2, "safety_backup": False}, format="json")
    done = api.wait(queued.json()["url"])
    assert done["status"] == "completed", done["error"]
    assert (done["strategy"], done["strategy_reason"]) == ("swap", "swap: asked for; the role is a superuser")
    assert done["kept_database"] and done["undone"] is None
    assert psql(pagila, "SELECT first_name FROM actor WHERE actor_id = 1").strip() == "PENELOPE"
    undo = f"/api/restores/{done['id']}/undo/"
    before = LogEntry.objects.count()
    for client, expected in [(APIClient(), 401), (make_client("viewer", "view_backupjob"), 403)]:
        assert client.post(undo).status_code == expected
        assert Restore.objects.get(pk=done["id"]).undone_at is None and LogEntry.objects.count() == before
    assert psql(pagila, "SELECT first_name FROM actor WHERE actor_id = 1").strip() == "PENELOPE"

    undone = api.post(undo)

    assert undone.status_code == 200, undone.content
    assert undone.json()["undone"] and undone.json()["id"] == done["id"]
    assert fingerprint(pagila) == changed
    assert LogEntry.objects.get(change_message__startswith="Undid").get_change_message() == (
        f"Undid restore #{done['id']}: database {pagila} is back as it was before it.")
    again = api.post(undo)
    assert again.status_code == 400 and again.json() == {"detail": f"Restore #{done['id']} was undone already."}
    api.assert_no_secrets()


# The README's CI example, run as it is printed --------------------------------------------------------

def readme_ci_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## HTTP API"):]
    return re.search(r"```sh\n(set -eu\n.*?)```", section, re.S).group(1)


def run_ci_script(live_server, client) -> subprocess.CompletedProcess:
    token = client._credentials["HTTP_AUTHORIZATION"].removeprefix("Token ")
    return subprocess.run(
        ["bash", "-c", readme_ci_script()], capture_output=True, text=True, timeout=240,
        env={"PATH": os.environ["PATH"], "BACKUPS_API": f"{live_server.url}/api", "BACKUPS_TOKEN": token},
    )


@pytest.mark.django_db(transaction=True, databases=["default"])
def test_the_readme_ci_script_takes_a_backup_and_waits_for_it(live_server, worker, make_client):
    worker()
    result = run_ci_script(live_server, make_client("ci", "add_backupjob", "view_backupjob"))
    job = BackupJob.objects.get()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Backup done: {live_server.url}/api/backups/{job.pk}/"
    assert (job.status, job.database, job.description) == (BackupStatus.COMPLETED, "default", "before deploy")


@pytest.mark.django_db(transaction=True, databases=["default"])
def test_the_readme_ci_script_fails_when_the_backup_fails(live_server, worker, make_client, tmp_path):
    worker(PATH=str(tmp_path))  # a worker whose host has no pg_dump: the backup fails there
    result = run_ci_script(live_server, make_client("ci", "add_backupjob", "view_backupjob"))
    job = BackupJob.objects.get()
    assert result.returncode == 1 and job.status == BackupStatus.FAILED
    assert result.stderr.strip() == f"Backup failed: {job.error}" and "pg_dump" in job.error


@pytest.mark.django_db(transaction=True, databases=["default"])
def test_the_readme_ci_script_fails_at_once_without_the_permission(live_server, make_client):
    result = run_ci_script(live_server, make_client("ci", "view_backupjob"))
    assert result.returncode == 1
    assert result.stderr.endswith('Backup refused: {"detail":"You do not have permission to perform this action."}\n')
    assert not BackupJob.objects.exists()
