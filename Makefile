# Warrantor: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DATA_DIR ?= .warrantor
PORT ?= 8080

.PHONY: run test install install-test lint typecheck bench fuzz clean browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[server,postgres]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PIP) install --quiet -e '.[server,postgres,mcp,openai-agents,langgraph,pydantic-ai,otel,test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

## Start the server on 127.0.0.1:$(PORT) (default 8080: `make run PORT=9000`) with SQLite, generated keys
## and the demo payments policy.
run: install
	$(VENV)/bin/warrantor serve --host 127.0.0.1 --port $(PORT) --data-dir $(DATA_DIR) --demo

## Install test dependencies and run every test (PostgreSQL tests need 127.0.0.1:5432).
test: install-test browser
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy src/warrantor
	$(PY) -m pytest -q -p no:cacheprovider

## Debian's chromium for the console's browser tests (never a downloaded browser).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = "0" ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: browser tests will skip (install Debian's chromium)"; fi; \
	fi

lint: install-test
	$(VENV)/bin/ruff check src tests

typecheck: install-test
	$(VENV)/bin/mypy src/warrantor

## Every performance figure against its ceiling in one run (about 10 minutes; docs/performance.md).
## Needs wrk (Debian package, installed here when run as root) and PostgreSQL on 127.0.0.1:5432.
## `make bench BENCH_FLAGS=--quick` runs every scenario for seconds only (a smoke test, not a result).
bench: install-test
	@if ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" = "0" ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null; \
	  else echo "wrk missing: install Debian's wrk (apt-get install wrk)"; exit 1; fi; \
	fi
	$(PY) bench/run.py $(BENCH_FLAGS)

## Fuzz the whole HTTP API from its OpenAPI document with schemathesis's conformance checks (statuses,
## content types, response schemas and headers, Allow, auth, no 5xx): docs/api.md, scripts/schemathesis.toml.
fuzz: install-test
	$(PIP) install --quiet -e '.[server,postgres,test,fuzz]'
	scripts/fuzz_api.sh

clean:
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache
