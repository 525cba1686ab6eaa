# pg_stat_guard: the two entry points are `make demo` (the main job) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The fleet's command line (workers/cli, docs/fleet.md "Command line").
STAT_GUARD := $(VENV)/bin/stat-guard
export PGHOST ?= 127.0.0.1
export PGPORT ?= 5432
export PGUSER ?= postgres
export PGDATABASE ?= test

.PHONY: setup setup-bench lock extension extension-check unittest demo test test-python fuzz-native lint bench \
	bench-core bench-extension bench-analysis bench-scheduled bench-verdicts bench-service \
	azure-local azure-bundle bench-db demo-core clean

setup:
	@scripts/bootstrap.sh

# The bench extra (Evidently, pandas) on top of the dev packages, from the same lock.
setup-bench:
	@EXTRAS="dev bench" scripts/bootstrap.sh

# Refresh uv.lock to today's releases within pyproject.toml's bounds (commit the result;
# tests/test_lock.py fails while pyproject.toml and uv.lock disagree).
lock: setup
	$(VENV)/bin/uv lock --upgrade

# Build the C extension and install it into the local PostgreSQL.
extension: setup
	@echo "==> building and installing the pg_stat_guard extension"
	$(MAKE) -C pg_extension -s
	$(MAKE) -C pg_extension -s install

# pg_regress on a throwaway cluster of its own (tests/servers.py), like every test.
extension-check: extension
	$(PY) -m pytest -q tests/extension/test_regress.py

# The C unit tests of the pure digest code (no PostgreSQL needed).
unittest:
	$(MAKE) -C pg_extension -s unittest

# The whole story (demo/story.py); ARGS=--keep-running leaves the fleet up until Ctrl-C.
# It uses the local PostgreSQL and Redis (started if installed but stopped) and restores
# the one server setting it changes. `make demo-core` is the small digest-vs-exact
# comparison alone.
demo: extension
	@START_LOCAL_SERVERS=1 scripts/bootstrap.sh
	$(PY) -m demo.story $(ARGS)

demo-core: setup
	$(PY) -m demo.digests

# The Azure Function's ASGI app under uvicorn on 127.0.0.1:7071 (override with PORT=...).
azure-local: setup
	$(STAT_GUARD) function --port $${PORT:-7071}

azure-bundle: setup
	$(PY) scripts/build_azure_bundle.py

lint: setup
	$(VENV)/bin/ruff check .

# The pytest suite (pg_regress included) on a PostgreSQL cluster and a Redis of its own,
# started on free ports and removed afterwards (tests/servers.py): the servers at
# PGHOST:PGPORT and on port 6379 are left as they were.
test-python: extension
	$(PY) -m pytest -q

test: lint unittest test-python

# The native DuckDB library's fuzz tests again, built with AddressSanitizer and
# UndefinedBehaviorSanitizer (scripts/fuzz_native_cells.py; about a minute).
fuzz-native: setup
	$(PY) scripts/fuzz_native_cells.py

# The benchmarks of perform_drift_analysis run on the local server (PGHOST:PGPORT): its
# test database gets the freshly built SQL objects, and new connections load the library
# first (session_preload_libraries), as production must when a function key is set.
bench-db: extension
	psql -X -q -v ON_ERROR_STOP=1 -c "DROP EXTENSION IF EXISTS pg_stat_guard CASCADE" \
		-c "CREATE EXTENSION pg_stat_guard" \
		-c "ALTER SYSTEM SET session_preload_libraries = 'pg_stat_guard'" \
		-c "SELECT pg_reload_conf()" >/dev/null

bench: bench-core bench-extension bench-analysis bench-scheduled bench-verdicts bench-fleet \
	bench-exporter bench-service

bench-core: setup
	$(PY) bench/bench_core.py

bench-extension: extension
	$(PY) bench/bench_extension.py

bench-analysis: bench-db
	$(PY) bench/bench_analysis.py

# Throughput, p50/p99 latency and /api/health latency of the verdict service under load
# (a real uvicorn on a free port; 1 and 2 workers, 1, 8 and 32 clients; about a minute).
bench-service: setup
	$(PY) bench/bench_service.py

# Compares with Evidently and a naive numpy/scipy version (installs the bench extra).
bench-scheduled: setup-bench
	$(PY) bench/bench_scheduled_drift.py

# False alarms and detection of the verdict rule on both paths, beside Evidently's defaults
# and the former rule (about 35 minutes on 2 cores; docs/statistics.md, "Verdicts").
bench-verdicts: setup-bench
	$(PY) bench/bench_verdicts.py

clean:
	-$(MAKE) -C pg_extension clean
	rm -rf .pytest_cache .ruff_cache

# ---- worker fleet (docs/fleet.md) ------------------------------------------------------
# Each target runs one process in the foreground, as a process supervisor (systemd, a
# container) would. Configuration: Global_Configs/App.yaml or STAT_GUARD_CONFIG, then
# STAT_GUARD_* variables. NODE names the worker (default: queue@host).
NODE ?= %h
FLEET_LOGLEVEL ?= info

.PHONY: worker-drift worker-ondemand worker-reactions beat flower test-fleet bench-fleet

# Heavy DuckDB runs and baseline captures: one at a time, at the lowest OS priority.
worker-drift: setup
	$(STAT_GUARD) worker drift --node drift@$(NODE) --loglevel $(FLEET_LOGLEVEL)

worker-ondemand: setup
	$(STAT_GUARD) worker ondemand --concurrency $${CONCURRENCY:-4} --node ondemand@$(NODE) \
		--loglevel $(FLEET_LOGLEVEL)

worker-reactions: setup
	$(STAT_GUARD) worker reactions --node reactions@$(NODE) --loglevel $(FLEET_LOGLEVEL)

# Exactly one beat per deployment (see docs/fleet.md, "Operations").
beat: setup
	$(STAT_GUARD) beat --loglevel $(FLEET_LOGLEVEL) \
		--schedule-file $${BEAT_SCHEDULE_FILE:-celerybeat-schedule}

flower: setup
	$(STAT_GUARD) flower

test-fleet: setup
	$(PY) -m pytest -q tests/fleet

bench-fleet: setup
	$(PY) bench/bench_fleet.py

# ---- observability (docs/observability.md) -----------------------------------------------
.PHONY: exporter dashboard flower-screenshot test-observability compose-check bench-exporter \
	pages pages-screenshots

# The drift pages (docs/pages.md) on pages.host:pages.port (127.0.0.1:8090; PAGES_PORT=...
# overrides the port). Off the loopback address they need pages.basic_auth or pages.token.
pages: setup
	$(STAT_GUARD) pages $${PAGES_PORT:+--port $$PAGES_PORT}

# Refresh docs/img/pages-*.png: the pages' browser tests in headless Chromium.
pages-screenshots: setup
	PAGES_SCREENSHOTS=docs/img $(PY) -m pytest -q tests/pages/test_pages_browser.py

# The metrics exporter on 127.0.0.1:$(EXPORTER_PORT)/metrics (reads Redis at scrape time).
EXPORTER_PORT ?= 9808
exporter: setup
	$(STAT_GUARD) exporter --port $(EXPORTER_PORT)

# Scrape time and size at 100 and 1,000 models x 50 features, 3 concurrent scrapes (a private
# redis-server; about 20 s).
bench-exporter: setup
	$(PY) bench/bench_exporter.py

# Regenerate the Grafana dashboard JSON (commit the result).
dashboard: setup
	$(PY) deploy/grafana/build_dashboard.py

# Refresh docs/img/flower.png: a real worker and Flower, shot by headless Chromium.
flower-screenshot: setup
	FLOWER_SCREENSHOT=docs/img/flower.png $(PY) -m pytest -q \
		tests/observability/test_flower.py -k renders

test-observability: setup
	$(PY) -m pytest -q tests/observability

compose-check: setup
	docker-compose --env-file .env.example config -q
