"""The docker-compose deployment, checked offline: no Docker engine runs on these machines.

The compose file is validated against the Compose specification's schema, and the parts that
must agree across files (pg_dump's major version, the shared backups volume, the image's
entrypoint) are read from the files themselves.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from .conftest import ROOT


@pytest.fixture(scope="module")
def compose():
    return YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile():
    return (ROOT / "Dockerfile").read_text()


def test_compose_file_validates_against_the_compose_specification():
    check_jsonschema = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(check_jsonschema), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_pg_dump_major_version_equals_the_server_image_major_version(compose, dockerfile):
    clients = set(re.findall(r"\bpostgresql-client-(\d+)\b", dockerfile))
    servers = {
        re.match(r"postgres:(\d+)", service["image"]).group(1)
        for service in compose["services"].values()
        if service.get("image", "").startswith("postgres:")
    }
    assert len(clients) == 1 and len(servers) == 1, (clients, servers)
    assert clients == servers
    # Debian's own postgresql-client-N exists only for its release's N: bookworm has 15.
    if "postgresql-client-15" in dockerfile:
        assert re.search(r"^FROM python:3\.11-slim-bookworm$", dockerfile, re.M)


def test_web_and_cron_run_the_same_image_on_one_backups_volume(compose, dockerfile):
    services = compose["services"]
    web, cron, db = services["web"], services["cron"], services["db"]
    assert web["image"] == cron["image"] and web["build"] == cron["build"] == "."
    assert web["command"] == ["web"] and cron["command"] == ["cron"]
    assert cron["user"] == "root"  # the daemon; its jobs run as the image's user

    backup_directory = re.search(r"BACKUP_DIRECTORY=(\S+)", dockerfile).group(1)
    for service in (web, cron):
        assert f"backups:{backup_directory}" in service["volumes"]
        assert service["env_file"] == ".env.production"
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
    assert any(volume.startswith("pgdata:/var/lib/postgresql/data") for volume in db["volumes"])
    assert set(compose["volumes"]) == {"pgdata", "backups"}  # named volumes, kept across `down`


def test_image_serves_wsgi_with_gunicorn_and_collects_static_files(dockerfile):
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "manage.py collectstatic --noinput" in dockerfile
    assert re.search(r"exec gunicorn .*static_wsgi:application", entrypoint)
    assert "python manage.py crontab add" in entrypoint and "exec cron -f" in entrypoint
    assert subprocess.run(["sh", "-n", str(ROOT / "docker" / "entrypoint.sh")]).returncode == 0
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".env.*", ".venv", "backups/", ".git"} <= set(dockerignore)


def test_cron_jobs_environment_file_reads_back_every_value_verbatim(tmp_path):
    """The cron container writes its environment for the jobs; settings.py must read back exactly that."""
    values = {
        "DATABASE_URL": "postgres://app:p@ss'w$rd#1@db:5432/app",
        "DJANGO_SECRET_KEY": "a b\"c'd$e`f\\g#h ",
        "BACKUP_SCHEDULE": "*/5 * * * *",
        "EMPTY": "",
    }
    env_file = tmp_path / "cron.env"
    result = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "write_env_file.py"), str(env_file)],
        env={**values, "PATH": os.environ["PATH"], "MULTILINE": "a\nb"}, capture_output=True, text=True,
    )
    assert result.returncode == 0
    assert "MULTILINE holds a line break" in result.stderr
    assert env_file.stat().st_mode & 0o777 == 0o600

    # Read it the way config/settings.py does (DJANGO_ENV_FILE), in a process with a clean environment.
    reader = "import environ, json, os; environ.Env.read_env(os.environ.pop('FILE')); print(json.dumps(dict(os.environ)))"
    read = subprocess.run([sys.executable, "-c", reader], env={"FILE": str(env_file)}, capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    read_back = json.loads(read.stdout)
    read_back.pop("LC_CTYPE", None)  # set by Python itself on some systems
    assert read_back == values


def test_database_service_creates_an_application_role_without_superuser_rights(compose):
    """docker/postgres-init/, which the postgres image runs on an empty volume, here against the local
    server (the image's own psql, its socket and its superuser replaced by PGHOST and POSTGRES_USER)."""
    import base64
    import hashlib
    import hmac

    from django.db import connections

    from .conftest import psql

    db = compose["services"]["db"]
    assert "./docker/postgres-init:/docker-entrypoint-initdb.d:ro" in db["volumes"]
    # The superuser's password reaches the db service only; web and cron get .env.production alone.
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in (ROOT / ".env.example").read_text().replace("POSTGRES_PASSWORD_FILE", "")

    role, database, password = "restore_objects_docker", "restore_objects_docker_app", "p@ss'w\"rd:/ é"
    url = f"postgres://{role}:p%40ss'w%22rd%3A%2F%20%C3%A9@db:5432/{database}"
    params = connections["default"].settings_dict
    env = {**os.environ, "DATABASE_URL": url, "POSTGRES_USER": params["USER"], "PGHOST": params["HOST"],
           "PGPORT": str(params["PORT"] or 5432)}
    try:
        result = subprocess.run(["sh", str(ROOT / "docker" / "postgres-init" / "10-application-role.sh")],
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        attributes = psql("postgres", f"SELECT rolsuper, rolcreatedb, rolcanlogin, rolpassword FROM pg_authid "
                                      f"WHERE rolname = '{role}'").strip().split("|")
        owner = psql("postgres", f"SELECT datdba::regrole FROM pg_database WHERE datname = '{database}'").strip()
        may_end_sessions = psql("postgres", f"SELECT pg_has_role('{role}', 'pg_signal_backend', 'MEMBER')").strip()
    finally:
        psql("postgres", f"DROP DATABASE IF EXISTS {database}")
        psql("postgres", f"DROP ROLE IF EXISTS {role}")
    assert attributes[:3] == ["f", "t", "t"] and owner == role
    assert may_end_sessions == "t"  # what a restore by swap needs besides CREATEDB and owning the database
    # The stored SCRAM verifier is the one of the decoded password (RFC 5802).
    iterations, salt, stored_key = re.match(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):", attributes[3]).groups()
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key
