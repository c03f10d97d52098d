"""Test settings: the catalog on a real PostgreSQL, plus a PostgreSQL target, a SQLite file and a MariaDB database."""

import os
import tempfile

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-secret")
os.environ["DATABASE_URL"] = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/backups")

from config.settings import *  # noqa: E402,F403
from config.settings import DATABASES, env  # noqa: E402

_scratch = tempfile.mkdtemp(prefix="backups-tests-")
# Test databases are named per run, so that two suites can share one PostgreSQL server.
RUN_ID = os.environ.get("TEST_RUN_ID") or str(os.getpid())
# With a sqlite:// TEST_DATABASE_URL the catalog is a scratch file and the tests that need PostgreSQL
# are skipped (tests.conftest), so the SQLite and admin tests run on a machine without it.
POSTGRESQL = "postgresql" in DATABASES["default"]["ENGINE"]
DATABASES["default"]["TEST"] = {"NAME": f"test_backups_{RUN_ID}" if POSTGRESQL else f"{_scratch}/catalog.sqlite3"}

# A database the tests fill with pagila and restore over; Django never migrates it (tests.routers).
DATABASES["target"] = {
    **DATABASES["default"],
    "NAME": os.environ.get("TEST_TARGET_NAME", "backups_target"),
    "TEST": {"NAME": f"test_backups_target_{RUN_ID}" if POSTGRESQL else f"{_scratch}/target.sqlite3"},
}
_sqlite = os.environ.get("TEST_SQLITE_PATH", f"{_scratch}/sqlite.sqlite3")
DATABASES["sqlite"] = env.db_url_config(f"sqlite:///{_sqlite}")
DATABASES["sqlite"]["TEST"] = {"NAME": f"{_scratch}/test_sqlite.sqlite3"}
# A MariaDB (or MySQL) database the MariaDB tests fill and restore over; never migrated either.
DATABASES["mariadb"] = env.db_url_config(
    os.environ.get("TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/backups_mariadb")
)
# MIGRATE False: no migration runs there (some introspect tables the router keeps out).
DATABASES["mariadb"]["TEST"] = {"NAME": os.environ.get("TEST_MARIADB_NAME", f"test_backups_mariadb_{RUN_ID}"),
                                "MIGRATE": False}
# A second database on that server, for restores into another database than the backup's.
DATABASES["mariadb_copy"] = {**DATABASES["mariadb"], "NAME": "backups_mariadb_copy",
                             "TEST": {"NAME": f"test_backups_mariadb_copy_{RUN_ID}", "MIGRATE": False}}
DATABASE_ROUTERS = ["tests.routers.TargetIsNotMigrated"]

# Child processes started by a test (manage.py, cron) get the test's databases and storage through
# TEST_DATABASE_URL, TEST_TARGET_NAME, TEST_SQLITE_PATH and TEST_BACKUP_DIRECTORY: see tests.conftest.child_env.
# A child given BACKUP_STORAGE_URL=s3://... (tests.conftest.s3_env) keeps that bucket.
if not BACKUP_STORAGE_URL.startswith("s3://"):  # noqa: F405
    STORAGES["backups"]["OPTIONS"]["location"] = os.environ.get("TEST_BACKUP_DIRECTORY", f"{_scratch}/backups")  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {"version": 1, "disable_existing_loggers": False}
