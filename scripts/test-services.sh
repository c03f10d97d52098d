#!/usr/bin/env bash
# Install and start what the test suite needs on a Debian machine: the PostgreSQL server and client
# tools, Chromium (browser tests through Playwright), cron (the schedule test) and zstd (the benchmark's
# raw baseline).
set -euo pipefail

missing=()
command -v pg_dump >/dev/null || missing+=(postgresql postgresql-client)
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
[ -x /usr/sbin/cron ] || missing+=(cron)
command -v zstd >/dev/null || missing+=(zstd)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "Missing system packages: ${missing[*]}; install them (apt-get install ${missing[*]})." >&2
    exit 1
  fi
  echo "Installing ${missing[*]} ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

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
