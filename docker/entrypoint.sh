#!/bin/sh
# Start the backup console's web server ("web", the default), its backup worker ("worker") or its cron
# daemon ("cron"); anything else runs as given (e.g. `python manage.py backup_list`).
set -eu

case "${1:-web}" in
web)
    python manage.py migrate --noinput
    # More gunicorn options through GUNICORN_CMD_ARGS (e.g. "--workers=4 --timeout=120").
    exec gunicorn --pythonpath /app/docker static_wsgi:application --bind "0.0.0.0:${PORT:-8000}" --access-logfile -
    ;;
worker)
    # Runs the backups and restores asked for from the admin, --background and the schedule.
    exec python manage.py backup_worker
    ;;
cron)
    if [ "$(id -u)" != 0 ]; then
        echo "The cron service must start as root (user: root in docker-compose.yml); its jobs run as app." >&2
        exit 1
    fi
    # Cron gives its jobs an empty environment: write this container's settings to the file the jobs
    # read (DJANGO_ENV_FILE, in CRONTAB_COMMAND_PREFIX), readable by the app user only.
    env_file=${DJANGO_ENV_FILE:-/run/django-backups/cron.env}
    install -d -o app -g app -m 0700 "$(dirname "$env_file")"
    python docker/write_env_file.py "$env_file"
    chown app:app "$env_file"
    # The jobs run as app, as the web server does, so both can read the 0600 archives; their
    # output goes to this container's log (cron's stdout).
    export DJANGO_ENV_FILE="$env_file"
    export CRONTAB_COMMAND_PREFIX="${CRONTAB_COMMAND_PREFIX:-DJANGO_ENV_FILE=$env_file setpriv --reuid=app --regid=app --init-groups}"
    export CRONTAB_COMMAND_SUFFIX="${CRONTAB_COMMAND_SUFFIX:->> /proc/1/fd/1 2>&1}"
    python manage.py crontab add
    crontab -l
    exec cron -f
    ;;
*)
    exec "$@"
    ;;
esac
