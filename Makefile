# GreenGate: `make run` serves it, `make test` tests it. Both set up everything they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: run test bench lint format browser clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

# Serve on http://127.0.0.1:8000 (or $$HOST:$$PORT); the first run prints the admin and demo credentials.
run: $(STAMP)
	@set -a; [ ! -f .env ] || . ./.env; set +a; \
	$(PY) manage.py migrate --noinput -v 0 && \
	$(PY) manage.py bootstrap && \
	exec $(PY) -m greengate_site.server

# Debian's Chromium for the admin browser tests (pip's playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the admin browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) browser
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) scripts/bench.py

# mypy imports the settings: a DATABASE_URL keeps it from starting the embedded PostgreSQL.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DATABASE_URL=postgresql://lint@127.0.0.1:1/lint $(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
