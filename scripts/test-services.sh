#!/usr/bin/env bash
# Install and start what the test suite needs on a Debian machine: the PostgreSQL and MariaDB servers
# and client tools (and the headers mysqlclient builds against), Chromium (browser tests through Playwright), cron (the schedule test), zstd (the benchmark's
# raw baseline) and age (the encryption tests decrypt with the real age command).
set -euo pipefail

missing=()
command -v pg_dump >/dev/null || missing+=(postgresql postgresql-client)
command -v mariadb-dump >/dev/null || missing+=(mariadb-server mariadb-client)
[ -f /usr/include/mariadb/mysql.h ] || missing+=(libmariadb-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
[ -x /usr/sbin/cron ] || missing+=(cron)
command -v zstd >/dev/null || missing+=(zstd)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v age >/dev/null || missing+=(age)
# curl and jq: the README's CI example, which tests/test_api.py runs as printed.
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
"$(dirname "$0")/apt-install.sh" "for the tests" ${missing[@]+"${missing[@]}"}

# PostgreSQL at the address the tests use (TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432).
host=${TEST_PGHOST:-127.0.0.1}
port=${TEST_PGPORT:-5432}
if ! pg_isready -q -h "$host" -p "$port"; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -n | tail -n 1)
    echo "Starting the local PostgreSQL $version cluster ..."
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 40); do pg_isready -q -h "$host" -p "$port" && break; sleep 0.25; done
  pg_isready -q -h "$host" -p "$port" || { echo "PostgreSQL is not reachable at $host:$port." >&2; exit 1; }
fi

# MariaDB at the address the tests use (TEST_MARIADB_URL, default mysql://root@127.0.0.1:3306).
mhost=${TEST_MYSQL_HOST:-127.0.0.1}
mport=${TEST_MYSQL_PORT:-3306}
if ! mariadb-admin --protocol=tcp -h "$mhost" -P "$mport" -uroot ping >/dev/null 2>&1; then
  echo "Starting the local MariaDB server ..."
  if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  (setsid mariadbd-safe --user=mysql >/dev/null 2>&1 &)
  for _ in $(seq 1 80); do
    mariadb-admin --protocol=tcp -h "$mhost" -P "$mport" -uroot ping >/dev/null 2>&1 && break
    sleep 0.25
  done
  mariadb-admin --protocol=tcp -h "$mhost" -P "$mport" -uroot ping >/dev/null 2>&1 \
    || { echo "MariaDB is not reachable at $mhost:$mport." >&2; exit 1; }
fi
# Debian's root@localhost logs in through the socket only; the tests connect over TCP as root without a password.
if [ "$mhost" = 127.0.0.1 ] && ! mariadb --protocol=tcp -h "$mhost" -P "$mport" -uroot -e 'SELECT 1' >/dev/null 2>&1; then
  mariadb -uroot -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION"
fi

# Redis for the RQ task backend's tests (TEST_REDIS_URL, default redis://127.0.0.1:6379/13; nothing kept on disk).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "Starting Redis ..."
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 1 40); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.25; done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || { echo "Redis is not reachable at 127.0.0.1:6379." >&2; exit 1; }
fi
