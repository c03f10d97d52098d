"""Settings for the backup console, read from the environment (and `.env`) with django-environ.

Every variable is documented in `.env.example`.
"""

import os
import shlex
import sys
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from backups_app.conf import DEFAULTS as _defaults

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def project_path(name: str, default: str) -> Path:
    """Read a directory from the environment; a relative one is taken from the project's directory, not
    the current one, so that cron, the web server and a shell all use the same folder."""
    return BASE_DIR / (env.str(name, default="") or default)


# Cron starts jobs with an almost empty environment: DJANGO_ENV_FILE names a file to read settings
# from (before .env, so it wins over it; the process environment wins over both). See README "Schedules".
if os.environ.get("DJANGO_ENV_FILE"):
    env.read_env(os.environ["DJANGO_ENV_FILE"])
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: set it in the environment or .env "
            "(or set DJANGO_DEBUG=true for local development)."
        )
    SECRET_KEY = "django-insecure-local-development-only"

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_crontab",
    # Django's task framework (the django-tasks backport of Django 6's django.tasks) and its two backends.
    "django_tasks",
    "django_tasks_db",
    "django_rq",
    "django_tasks_rq",
    # The HTTP API under /api/ (backups_app.api): token authentication, and its OpenAPI schema with a
    # Swagger page whose files are served from here, not from a CDN.
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "backups_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

# The embedded default is a SQLite file; a postgres:// URL switches to PostgreSQL.
# Every DATABASE_URL_<NAME> variable adds the alias <name> (lower case), which can be backed up too.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
for _name, _value in sorted(os.environ.items()):
    if _name.startswith("DATABASE_URL_") and _value:
        DATABASES[_name.removeprefix("DATABASE_URL_").lower()] = env.db_url_config(_value)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")

# Backups ---------------------------------------------------------------------------------

# The app's settings and their defaults are described in backups_app/conf.py and .env.example.
BACKUP_RETENTION_DAYS = env.int("BACKUP_RETENTION_DAYS", default=_defaults["BACKUP_RETENTION_DAYS"])
BACKUP_KEEP_DAILY = env.int("BACKUP_KEEP_DAILY", default=_defaults["BACKUP_KEEP_DAILY"])
BACKUP_KEEP_WEEKLY = env.int("BACKUP_KEEP_WEEKLY", default=_defaults["BACKUP_KEEP_WEEKLY"])
BACKUP_KEEP_MONTHLY = env.int("BACKUP_KEEP_MONTHLY", default=_defaults["BACKUP_KEEP_MONTHLY"])
BACKUP_COMPRESSION = env("BACKUP_COMPRESSION", default=_defaults["BACKUP_COMPRESSION"])
BACKUP_LOCK_TIMEOUT = env.int("BACKUP_LOCK_TIMEOUT", default=_defaults["BACKUP_LOCK_TIMEOUT"])
BACKUP_RESTORE_STRATEGY = env("BACKUP_RESTORE_STRATEGY", default=_defaults["BACKUP_RESTORE_STRATEGY"])
if BACKUP_RESTORE_STRATEGY not in ("auto", "swap", "in-place"):
    raise ImproperlyConfigured(f"BACKUP_RESTORE_STRATEGY is {BACKUP_RESTORE_STRATEGY!r}; use auto, swap or in-place.")
BACKUP_KEEP_REPLACED_HOURS = env.float("BACKUP_KEEP_REPLACED_HOURS", default=_defaults["BACKUP_KEEP_REPLACED_HOURS"])
# Keep it out of the backup storage: it tells a manifest this app wrote from a forged one.
BACKUP_SIGNING_KEY = env("BACKUP_SIGNING_KEY", default=_defaults["BACKUP_SIGNING_KEY"])

# Encryption (age): new archives are encrypted to these public keys (comma- or space-separated; empty: off).
BACKUP_AGE_RECIPIENTS = env("BACKUP_AGE_RECIPIENTS", default=_defaults["BACKUP_AGE_RECIPIENTS"])
# The private keys that decrypt them, needed only where backups are restored; keep it off the backup storage.
BACKUP_AGE_IDENTITY_FILE = env("BACKUP_AGE_IDENTITY_FILE", default=_defaults["BACKUP_AGE_IDENTITY_FILE"])

# Where archives are written: the `backups` storage below, never a setting of its own in the app.
# BACKUP_STORAGE_URL: file:///path (a directory) or s3://BUCKET/PREFIX (boto3 reads AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY itself: no secret is kept in the settings). Unset: the directory BACKUP_DIRECTORY
# (default: backups/ in the project).
BACKUP_STORAGE_URL = env("BACKUP_STORAGE_URL", default="")
if BACKUP_STORAGE_URL.startswith("s3://"):
    from botocore.config import Config as BotoConfig  # only here: boto3 costs start-up time and memory

    _bucket, _, _prefix = BACKUP_STORAGE_URL.removeprefix("s3://").partition("/")
    # when_supported: boto3's default, CRC32 checksums on every request; when_required: only where the API
    # demands one, for S3-compatible servers that reject the newer checksum headers.
    BACKUP_S3_CHECKSUMS = env("BACKUP_S3_CHECKSUMS", default="when_supported")
    if not _bucket or BACKUP_S3_CHECKSUMS not in ("when_supported", "when_required"):
        raise ImproperlyConfigured(
            f"BACKUP_STORAGE_URL {BACKUP_STORAGE_URL!r} needs a bucket (s3://BUCKET/PREFIX) and BACKUP_S3_CHECKSUMS "
            "must be when_supported or when_required."
        )
    _backups_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _bucket,
            "location": _prefix.strip("/"),
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
            "region_name": env("AWS_DEFAULT_REGION", default=None),
            "default_acl": None,
            "file_overwrite": True,
            "client_config": BotoConfig(
                request_checksum_calculation=BACKUP_S3_CHECKSUMS,
                response_checksum_validation=BACKUP_S3_CHECKSUMS,
                retries={"mode": "standard"},
            ),
        },
    }
elif BACKUP_STORAGE_URL.startswith("file://") or not BACKUP_STORAGE_URL:
    _backups_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {
            "location": BACKUP_STORAGE_URL.removeprefix("file://") or str(project_path("BACKUP_DIRECTORY", "backups")),
            "base_url": None,
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    }
else:
    raise ImproperlyConfigured(
        f"BACKUP_STORAGE_URL is {BACKUP_STORAGE_URL!r}; use file:///PATH or s3://BUCKET/PREFIX."
    )
# Whether the admin's download sends the browser to a presigned S3 URL (valid 5 minutes) instead of
# passing the archive through the application.
BACKUP_S3_PRESIGNED_DOWNLOADS = env.bool("BACKUP_S3_PRESIGNED_DOWNLOADS", default=_defaults["BACKUP_S3_PRESIGNED_DOWNLOADS"])

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "backups": _backups_storage,
}

# The HTTP API (backups_app.api) ---------------------------------------------------------------

REST_FRAMEWORK = {
    # A token (Authorization: Token ...) for scripts, first so that a request without one gets 401;
    # the admin's session for the Swagger page.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["backups_app.api.permissions.StaffWithModelPermission"],
    # JSON only: a form post would turn a missing safety_backup into false.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "backups_app.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Django backups API",
    "DESCRIPTION": "Back up, restore, download and clean up databases with the admin's permissions.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "BackupStatusEnum": "backups_app.models.BackupStatus",
        "RestoreStatusEnum": "backups_app.models.RestoreStatus",
        "BackupPhaseEnum": "backups_app.models.BackupPhase",
        "RestorePhaseEnum": "backups_app.models.RestorePhase",
    },
}

# Schedules (django-crontab) and monitoring --------------------------------------------------

# The databases that the schedule backs up and backup_check watches (aliases; empty: all of DATABASES).
BACKUP_DATABASES = env.list("BACKUP_DATABASES", default=_defaults["BACKUP_DATABASES"])
# Cron expressions (five fields, in the server's time zone); an empty value leaves that job out.
BACKUP_SCHEDULE = env("BACKUP_SCHEDULE", default=_defaults["BACKUP_SCHEDULE"])
BACKUP_CLEANUP_SCHEDULE = env("BACKUP_CLEANUP_SCHEDULE", default=_defaults["BACKUP_CLEANUP_SCHEDULE"])
# backup_check turns CRITICAL when a database's newest successful backup is older than this.
BACKUP_MAX_AGE_HOURS = env.float("BACKUP_MAX_AGE_HOURS", default=_defaults["BACKUP_MAX_AGE_HOURS"])

# Alerts (backups_app.notifications) and metrics ------------------------------------------------

# The monitoring run that alerts while backup_check is CRITICAL (cron expression; empty: none).
BACKUP_CHECK_SCHEDULE = env("BACKUP_CHECK_SCHEDULE", default=_defaults["BACKUP_CHECK_SCHEDULE"])
# Who gets the alerts by e-mail (empty: ADMINS), and a Slack-compatible webhook (a secret: never logged).
BACKUP_NOTIFY_EMAILS = env.list("BACKUP_NOTIFY_EMAILS", default=_defaults["BACKUP_NOTIFY_EMAILS"])
BACKUP_NOTIFY_WEBHOOK_URL = env("BACKUP_NOTIFY_WEBHOOK_URL", default=_defaults["BACKUP_NOTIFY_WEBHOOK_URL"])
BACKUP_NOTIFY_ON_SUCCESS = env.bool("BACKUP_NOTIFY_ON_SUCCESS", default=_defaults["BACKUP_NOTIFY_ON_SUCCESS"])
BACKUP_SITE_URL = env("BACKUP_SITE_URL", default=_defaults["BACKUP_SITE_URL"])
BACKUP_METRICS_TOKEN = env("BACKUP_METRICS_TOKEN", default=_defaults["BACKUP_METRICS_TOKEN"])
# DJANGO_ADMINS=ops@example.com,dba@example.com: Django's ADMINS, the alerts' default recipients.
ADMINS = [("", address) for address in env.list("DJANGO_ADMINS", default=[])]
# Django's mail settings from one URL, e.g. smtp+tls://user:password@smtp.example.com:587 (default: localhost:25).
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="smtp://localhost:25")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = SERVER_EMAIL = env("DJANGO_DEFAULT_FROM_EMAIL", default="backups@localhost")

# Restore drills (manage.py backup_drill) ---------------------------------------------------------

BACKUP_DRILL_DATABASE_URL = env("BACKUP_DRILL_DATABASE_URL", default=_defaults["BACKUP_DRILL_DATABASE_URL"])
BACKUP_DRILL_CHECKS = env("BACKUP_DRILL_CHECKS", default=_defaults["BACKUP_DRILL_CHECKS"])
BACKUP_DRILL_SCHEDULE = env("BACKUP_DRILL_SCHEDULE", default=_defaults["BACKUP_DRILL_SCHEDULE"])
BACKUP_DRILL_AFTER_BACKUP = env.bool("BACKUP_DRILL_AFTER_BACKUP", default=_defaults["BACKUP_DRILL_AFTER_BACKUP"])
BACKUP_DRILL_MAX_AGE_DAYS = env.float("BACKUP_DRILL_MAX_AGE_DAYS", default=_defaults["BACKUP_DRILL_MAX_AGE_DAYS"])

# Background jobs (backups and restores asked for from the admin, `--background` or the schedule) ----

# db: the queue is a table of the application's database and `manage.py backup_worker` runs it (one host,
# or several hosts sharing that database); rq: a Redis queue (BACKUP_REDIS_URL) for workers on several hosts.
BACKUP_TASK_BACKEND = env("BACKUP_TASK_BACKEND", default=_defaults["BACKUP_TASK_BACKEND"])
BACKUP_REDIS_URL = env("BACKUP_REDIS_URL", default=_defaults["BACKUP_REDIS_URL"])
if BACKUP_TASK_BACKEND not in ("db", "rq"):
    raise ImproperlyConfigured(f"BACKUP_TASK_BACKEND is {BACKUP_TASK_BACKEND!r}; use db or rq.")
TASKS = {
    "default": {
        "BACKEND": "django_tasks_rq.RQBackend" if BACKUP_TASK_BACKEND == "rq" else "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default"],
    }
}
# A backup may run for hours: no job timeout (RQ's default would kill it after 180 s).
RQ_QUEUES = {"default": {"URL": BACKUP_REDIS_URL, "DEFAULT_TIMEOUT": -1}}
RQ = {"JOB_CLASS": "django_tasks_rq.Job"}

CRONJOBS = [
    (schedule, job)
    for schedule, job in (
        (BACKUP_SCHEDULE, "backups_app.schedule.scheduled_backup"),
        (BACKUP_CLEANUP_SCHEDULE, "backups_app.schedule.scheduled_cleanup"),
        (BACKUP_CHECK_SCHEDULE, "backups_app.schedule.scheduled_check"),
        (BACKUP_DRILL_SCHEDULE, "backups_app.schedule.scheduled_drill"),
    )
    if schedule
]
# Each crontab line names an absolute interpreter, manage.py and the settings module, so that it
# runs the same way from cron's minimal environment as from a shell.
CRONTAB_PYTHON_EXECUTABLE = os.path.abspath(sys.executable)
CRONTAB_DJANGO_MANAGE_PATH = str(BASE_DIR / "manage.py")
CRONTAB_DJANGO_SETTINGS_MODULE = os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings")
# Marks this project's lines in the crontab: `crontab add` and `remove` touch only those.
CRONTAB_COMMENT = env("CRONTAB_COMMENT", default="django-backups")
# Put before and after each job's command, e.g. a prefix `DJANGO_ENV_FILE=/etc/django-backups.env`,
# a suffix `>> /var/log/django-backups.log 2>&1`.
CRONTAB_COMMAND_PREFIX = env(
    "CRONTAB_COMMAND_PREFIX",
    default=f"DJANGO_ENV_FILE={shlex.quote(os.environ['DJANGO_ENV_FILE'])}" if os.environ.get("DJANGO_ENV_FILE") else "",
)
CRONTAB_COMMAND_SUFFIX = env("CRONTAB_COMMAND_SUFFIX", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # To stderr, which gunicorn, `docker logs` and the cron job's log collect.
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        # Replaces Django's default handlers, which print only with DEBUG on and otherwise mail ADMINS
        # (not set here): a request that fails with HTTP 500 in production is logged with its traceback.
        "django": {"handlers": ["console"], "level": "INFO"},
        "backups_app": {"handlers": ["console"], "level": env("BACKUP_LOG_LEVEL", default="INFO")},
    },
}
