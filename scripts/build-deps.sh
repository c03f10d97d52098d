#!/usr/bin/env bash
# Install what `pip install -r requirements.txt` compiles against on a Debian machine: the MariaDB client
# headers for the mysqlclient driver (it has no binary wheel for Linux).
set -euo pipefail

missing=()
[ -f /usr/include/mariadb/mysql.h ] || [ -f /usr/include/mysql/mysql.h ] || missing+=(libmariadb-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
"$(dirname "$0")/apt-install.sh" "to build mysqlclient" ${missing[@]+"${missing[@]}"}
