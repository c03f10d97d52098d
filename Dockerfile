# The backup console: gunicorn serves config.wsgi (command "web"), or cron runs the schedule
# (command "cron"); docker-compose.yml runs both from this image. See README "Production".
FROM python:3.11-slim-bookworm

# pg_dump must be at least as new as the server it dumps: postgresql-client-15 (Debian bookworm)
# matches the postgres:15 image of docker-compose.yml (tests/test_deployment.py checks they agree).
# cron's PAM session fails where a container may not set the login uid, and then no job runs:
# pam_loginuid is made optional. mariadb-client brings mariadb-dump and mariadb (MariaDB/MySQL databases),
# libmariadb3 the library the mysqlclient driver links to.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15 mariadb-client libmariadb3 cron \
    && rm -rf /var/lib/apt/lists/* \
    && sed -i 's/^session\s\+required\s\+pam_loginuid\.so/session optional pam_loginuid.so/' /etc/pam.d/cron

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    BACKUP_DIRECTORY=/var/backups/django

# The web server, the worker and the backup jobs run as "app"; only the cron daemon runs as root.
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin app \
    && install -d -o app -g app -m 0700 /var/backups/django

WORKDIR /app
COPY requirements.txt .
# mysqlclient is compiled against the MariaDB client headers; the compiler and headers are removed after.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libmariadb-dev pkg-config \
    && pip install --no-cache-dir -r requirements.txt \
    && apt-get purge -y --auto-remove gcc libc6-dev libmariadb-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# collectstatic reads settings but no database; the key only lets the settings load for this step.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0 \
    && chmod 0755 docker/entrypoint.sh

USER app
EXPOSE 8000
VOLUME ["/var/backups/django"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
