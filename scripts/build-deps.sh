#!/usr/bin/env bash
# Install what `pip install -r requirements.txt` compiles against on a Debian machine: the MariaDB client
# headers for the mysqlclient driver (it has no binary wheel for Linux).
set -euo pipefail

missing=()
[ -f /usr/include/mariadb/mysql.h ] || [ -f /usr/include/mysql/mysql.h ] || missing+=(libmariadb-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "Missing system packages to build mysqlclient: ${missing[*]}; install them (apt-get install ${missing[*]})." >&2
  exit 1
fi
echo "Installing ${missing[*]} ..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
