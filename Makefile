# Quick start: `make run` (the app on SQLite, with an admin login; HOST= and PORT= to change where it listens)
# and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run worker admin-password test install system-deps bench clean screenshots

$(VENV)/.installed: requirements.txt requirements-dev.txt
	scripts/build-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# A local .env for development: DEBUG on and a random secret key, written once.
.env:
	printf 'DJANGO_DEBUG=true\nDJANGO_SECRET_KEY=%s\n' "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > .env
	chmod 600 .env

run: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py create_local_admin --url http://$(HOST):$(PORT)/admin/
	scripts/run-dev.sh $(PY) $(HOST):$(PORT)

# A backup worker for the configured task backend (BACKUP_TASK_BACKEND: db or rq), e.g. one per host.
worker: install .env
	$(PY) manage.py backup_worker

# A new password for the local admin (kept in .admin-login); logs its open sessions out.
admin-password: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py create_local_admin --reset --url http://$(HOST):$(PORT)/admin/

# Installs what the tests need (system packages, PostgreSQL and MariaDB running) and runs the whole suite.
system-deps:
	scripts/test-services.sh

test: system-deps install
	$(PY) -m pytest $(PYTEST_ARGS)

# Refresh docs/screenshots from the browser tests (an ordinary run writes them to test-results/).
screenshots: install system-deps
	UPDATE_SCREENSHOTS=1 DJANGO_ALLOW_ASYNC_UNSAFE=true $(PY) -m pytest -m browser $(PYTEST_ARGS)

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
