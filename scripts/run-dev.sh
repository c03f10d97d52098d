#!/usr/bin/env bash
# `make run`: the development server and one backup worker (manage.py backup_worker), started together;
# Ctrl-C stops both. Usage: scripts/run-dev.sh PYTHON HOST:PORT
set -euo pipefail
python=$1
address=$2
"$python" manage.py backup_worker &
worker=$!
# Ctrl-C reaches both; if the server stops on its own (port taken, say), the worker is stopped too.
trap 'kill -TERM "$worker" 2>/dev/null || true; wait "$worker" 2>/dev/null || true' EXIT
"$python" manage.py runserver "$address"
