# pg_stat_guard: the two entry points are `make demo` (the main job) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PGHOST ?= 127.0.0.1
export PGPORT ?= 5432
export PGUSER ?= postgres
export PGDATABASE ?= test

.PHONY: setup extension extension-check demo test test-python lint bench bench-core bench-extension \
	azure-local azure-bundle test-db clean

setup:
	@scripts/bootstrap.sh

# Build the C extension and install it into the local PostgreSQL.
extension: setup
	@echo "==> building and installing the pg_stat_guard extension"
	$(MAKE) -C pg_extension -s
	$(MAKE) -C pg_extension -s install

extension-check: extension
	$(MAKE) -C pg_extension installcheck || { cat pg_extension/regression.diffs 2>/dev/null | head -100; exit 1; }

demo: setup
	$(PY) -m stat_guard.demo

# The Azure Function's ASGI app under uvicorn on 127.0.0.1:7071 (override with PORT=...).
azure-local: setup
	$(PY) -m stat_guard.service --port $${PORT:-7071}

azure-bundle: setup
	$(PY) scripts/build_azure_bundle.py

lint: setup
	$(VENV)/bin/ruff check .

test-python: setup
	$(PY) -m pytest -q

# The test database gets the freshly built SQL objects (same version number, new script).
test-db: extension
	psql -X -q -v ON_ERROR_STOP=1 -c "DROP EXTENSION IF EXISTS pg_stat_guard CASCADE" \
		-c "CREATE EXTENSION pg_stat_guard" >/dev/null

test: extension-check lint test-db test-python

bench: bench-core bench-extension

bench-core: setup
	$(PY) bench/bench_core.py

bench-extension: extension
	$(PY) bench/bench_extension.py

clean:
	-$(MAKE) -C pg_extension clean
	rm -rf .pytest_cache .ruff_cache
