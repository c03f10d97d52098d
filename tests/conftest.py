import copy
import gzip
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connections
from django.urls import reverse

ROOT = Path(__file__).resolve().parent.parent
PAGILA = ROOT / "tests" / "fixtures" / "pagila"
PAGILA_TEMPLATE = f"backups_pagila_template_{settings.RUN_ID}"


def pytest_collection_modifyitems(config, items):
    """Skip what needs PostgreSQL when TEST_DATABASE_URL is not a PostgreSQL server (see tests.settings)."""
    if settings.POSTGRESQL:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: TEST_DATABASE_URL is not a postgres:// URL")
    for item in items:
        db = item.get_closest_marker("django_db")
        if (item.get_closest_marker("postgresql") or {"pagila", "pagila_template"} & set(item.fixturenames)
                or (db and "target" in (db.kwargs.get("databases") or ()))):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def backup_dir(tmp_path, settings):
    """Give every test its own empty backup storage."""
    directory = tmp_path / "backups"
    storages = copy.deepcopy(settings.STORAGES)
    storages["backups"]["OPTIONS"]["location"] = str(directory)
    settings.STORAGES = storages
    return directory


@pytest.fixture(autouse=True)
def no_databases_left_by_swaps(request):
    """Drop the databases a restore by swap keeps or leaves (NAME__before_restore_ID and the like) of this
    run's test databases, after each test that used PostgreSQL."""
    yield
    if settings.POSTGRESQL and request.node.get_closest_marker("django_db"):
        drop_swap_leftovers()


def drop_swap_leftovers() -> None:
    """Drop the databases that restores by swap kept or left for this run's test databases (through the
    driver, not psql: some tests take the client tools off PATH)."""
    from backups_app.engines import get_engine

    engine = get_engine("target")
    with engine._maintenance() as raw, raw.cursor() as cursor:
        # NAME_RUNID__... and NAME_RUNID_other__... (a test's second database), never another run's.
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s OR datname LIKE %s",
                       [f"test\\_backups%\\_{settings.RUN_ID}\\_\\_%", f"test\\_backups%\\_{settings.RUN_ID}\\_%\\_\\_%"])
        names = [name for (name,) in cursor.fetchall()]
    for name in names:
        engine.on_database(name).drop_database()  # subscriptions first, as cleanup does


@pytest.fixture(autouse=True)
def empty_cache():
    """/health/ keeps its probes in Django's cache for a minute: no test sees another test's."""
    cache.clear()


def psql(alias_or_dbname: str, sql: str | None = None, *, stdin: bytes | None = None) -> str:
    """Run SQL through psql against a configured alias (its test database) or a database name."""
    if alias_or_dbname in connections.settings:
        params = connections[alias_or_dbname].settings_dict
        dbname = params["NAME"]
    else:
        params, dbname = connections["default"].settings_dict, alias_or_dbname
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", params["HOST"] or "127.0.0.1",
            "-p", str(params["PORT"] or 5432), "-U", params["USER"] or "postgres", "-d", dbname]
    args += ["-c", sql] if sql is not None else ["-f", "-"]
    env = {**os.environ, "PGPASSWORD": params.get("PASSWORD") or ""}
    result = subprocess.run(args, input=stdin, env=env, capture_output=True)
    if result.returncode:
        raise AssertionError(f"psql failed on {dbname}: {result.stderr.decode()}")
    return result.stdout.decode()


@pytest.fixture(scope="session")
def pagila_template(django_db_setup, django_db_blocker):
    """A database loaded once with the pagila sample (partitioned tables, large objects added)."""
    with django_db_blocker.unblock():
        psql("postgres", f"DROP DATABASE IF EXISTS {PAGILA_TEMPLATE}")
        psql("postgres", f"CREATE DATABASE {PAGILA_TEMPLATE}")
        psql(PAGILA_TEMPLATE, stdin=(PAGILA / "pagila-schema.sql").read_bytes())
        psql(PAGILA_TEMPLATE, stdin=gzip.decompress((PAGILA / "pagila-data.sql.gz").read_bytes()))
        psql(PAGILA_TEMPLATE, "SELECT lo_from_bytea(424242, convert_to(repeat('large object ', 1000), 'UTF8'))")
    yield PAGILA_TEMPLATE
    with django_db_blocker.unblock():
        psql("postgres", f"DROP DATABASE IF EXISTS {PAGILA_TEMPLATE}")


@pytest.fixture
def pagila(pagila_template):
    """Fill the `target` test database with a fresh copy of pagila; return the alias."""
    connections["target"].close()
    name = connections["target"].settings_dict["NAME"]
    psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql("postgres", f"CREATE DATABASE {name} TEMPLATE {pagila_template}")
    return "target"


@pytest.fixture
def old_pg_dump(monkeypatch, tmp_path):
    """Return a function that puts first on PATH a stand-in `pg_dump` reporting version 12: only one
    PostgreSQL version is installed here, and the version check reads nothing but `pg_dump --version`."""
    fake = tmp_path / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.22'\n")
    fake.chmod(0o755)
    return lambda: monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")


def rows(alias: str, sql: str) -> list[str]:
    """The lines psql prints for a query: one row a line, columns separated by |."""
    return psql(alias, sql).splitlines()


def fingerprint(alias: str) -> dict:
    """Describe a PostgreSQL database's content: schema, every table's rows, sequences, large objects."""
    tables = psql(alias, """
        SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE (c.relkind IN ('r', 'p') OR (c.relkind = 'm' AND c.relispopulated)) AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
        ORDER BY 1""").split()
    result = {}
    for table in tables:
        result[table] = psql(alias, f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t").strip()
    sequences = psql(alias, "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences ORDER BY 1").split()
    for sequence in sequences:
        result[sequence] = psql(alias, f"SELECT last_value || ':' || is_called FROM {sequence}").strip()
    result["<large objects>"] = psql(alias, "SELECT string_agg(oid || ':' || md5(lo_get(oid)), ',' ORDER BY oid) FROM pg_largeobject_metadata").strip()
    params = connections[alias].settings_dict
    schema = subprocess.run(
        ["pg_dump", "--schema-only", "-h", params["HOST"], "-p", str(params["PORT"] or 5432), "-U", params["USER"], params["NAME"]],
        check=True, capture_output=True, text=True,
    ).stdout
    schema = "\n".join(line for line in schema.splitlines() if not re.match(r"\\(un)?restrict |--", line))
    result["<schema>"] = hashlib.sha256(schema.encode()).hexdigest()
    return result


def database_url(alias: str) -> str:
    """The URL of a configured alias (its test database), password included."""
    params = connections[alias].settings_dict
    if "sqlite" in params["ENGINE"]:
        return f"sqlite:///{params['NAME']}"
    credentials = params["USER"] + (f":{params['PASSWORD']}" if params.get("PASSWORD") else "")
    if "mysql" in params["ENGINE"]:
        return f"mysql://{credentials}@{params['HOST']}:{params['PORT'] or 3306}/{params['NAME']}"
    return f"postgres://{credentials}@{params['HOST']}:{params['PORT'] or 5432}/{params['NAME']}"


def url(name: str, *args) -> str:
    """The path of a backup admin page, e.g. url("restore", 3)."""
    return reverse(f"admin:backups_app_backupjob_{name}", args=args)


def wait_for(predicate, timeout=30):
    """Return predicate()'s first true value, polling it until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def finished(record, timeout=120):
    """Wait until a backup or restore has finished, following it as the admin's pages do; return it fresh."""
    done = ("completed", "failed", "restored")
    return wait_for(lambda: type(record).objects.filter(pk=record.pk, status__in=done).first(), timeout=timeout)


class LockHolder:
    """A psql session holding a lock (taken by `statement`) in a database until released."""

    def __init__(self, alias: str, statement: str):
        params = connections[alias].settings_dict
        self.alias = alias
        self.name = f"backups-test-lock-holder-{os.getpid()}"
        self.process = subprocess.Popen(
            ["psql", "-X", "-h", params["HOST"], "-U", params["USER"], "-d", params["NAME"]],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PGAPPNAME": self.name, "PGPASSWORD": params.get("PASSWORD") or ""},
        )
        self.process.stdin.write(f"BEGIN; {statement}; SELECT pg_sleep(600);\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + 10
        # Only this session's locks count: other suites may share the server.
        while psql(alias, "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) WHERE application_name = "
                          f"'{self.name}' AND granted AND relation IS NOT NULL").strip() == "0":
            assert time.monotonic() < deadline, "the lock was never taken"
            time.sleep(0.05)

    def release(self):
        # Killing psql alone would leave its backend asleep in pg_sleep, still holding the lock.
        psql(self.alias, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{self.name}'")
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def child_env(backup_dir) -> dict[str, str]:
    """The environment for a manage.py child process that must see this test's databases and storage."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DATABASE_URL": database_url("default"),
        "TEST_TARGET_NAME": connections["target"].settings_dict["NAME"],
        "TEST_MARIADB_URL": database_url("mariadb"),
        "TEST_SQLITE_PATH": str(connections["sqlite"].settings_dict["NAME"]),
        "TEST_BACKUP_DIRECTORY": str(backup_dir),
    }


def manage(backup_dir, *args: str, **popen_kwargs) -> subprocess.Popen:
    """Start `manage.py ARGS` as a child process of this test (the caller waits for it)."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args], env=child_env(backup_dir), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_kwargs,
    )


@pytest.fixture
def worker(backup_dir, tmp_path):
    """Start real `manage.py backup_worker` processes (as `make run` and `make worker` do) that see this
    test's databases and storage: call it with extra environment variables; each is stopped after the test."""
    processes = []

    def start(**env) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(processes)}.log", "wb")
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "backup_worker"], env={**child_env(backup_dir), **env},
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()  # a worker finishes the job it runs, then stops
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Drive the system Chromium (never `playwright install`), see ../shared/TOOLCHAIN.md."""
    return {
        **browser_type_launch_args,
        "executable_path": "/usr/bin/chromium",
        "args": ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    }


@pytest.fixture(scope="session")
def s3_server():
    """A real local S3 server (moto_server, in memory) for this run, stopped by its PID at the end."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        def listening():
            with socket.socket() as client:
                return client.connect_ex(("127.0.0.1", port)) == 0
        wait_for(listening, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


class S3Bucket:
    """A bucket of the local S3 server that the backup storage writes to, under `prefix`."""

    def __init__(self, endpoint: str, name: str, prefix: str):
        import boto3

        self.endpoint, self.name, self.prefix = endpoint, name, prefix
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                   aws_access_key_id="test-key", aws_secret_access_key="test-secret")

    def keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def uploads(self) -> list[dict]:
        return self.client.list_multipart_uploads(Bucket=self.name).get("Uploads", [])

    def read(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=f"{self.prefix}/{name}")["Body"].read()

    def remove(self) -> None:
        for upload in self.uploads():
            self.client.abort_multipart_upload(Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"])
        for key in self.keys():
            self.client.delete_object(Bucket=self.name, Key=key)
        self.client.delete_bucket(Bucket=self.name)


S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def s3_bucket(s3_server, settings, monkeypatch):
    """Point the backup storage at a new bucket of the local S3 server (as BACKUP_STORAGE_URL=s3://... does);
    the bucket is removed after the test."""
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = S3Bucket(s3_server, f"backups-{settings.RUN_ID}-{uuid.uuid4().hex[:8]}", "archives")
    bucket.client.create_bucket(Bucket=bucket.name)
    from botocore.config import Config

    storages = copy.deepcopy(settings.STORAGES)
    storages["backups"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": bucket.name, "location": bucket.prefix, "endpoint_url": s3_server,
        "region_name": "us-east-1", "default_acl": None,
        "client_config": Config(request_checksum_calculation="when_supported",
                                response_checksum_validation="when_supported"),
    }}
    settings.STORAGES = storages
    yield bucket
    bucket.remove()


def s3_env(bucket: S3Bucket) -> dict[str, str]:
    """The environment that points a manage.py child at a test's bucket (with child_env)."""
    return {**S3_CREDENTIALS, "BACKUP_STORAGE_URL": f"s3://{bucket.name}/{bucket.prefix}",
            "AWS_S3_ENDPOINT_URL": bucket.endpoint}


def backup_check() -> tuple[int, str]:
    """Run backup_check; return (exit status, stdout) as a monitoring system sees them."""
    out = StringIO()
    try:
        call_command("backup_check", stdout=out, stderr=StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()
