# The Python image of pg_stat_guard: Celery workers, beat, Flower, the metrics exporter and
# the verdict function under uvicorn (docker-compose.yml picks the command).
# Build context: the repository root.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The project's packages (stat_guard, workers, tasks, demo), beat's schedule module
# (celery -A beat_schedule beat) and their dependencies.
COPY pyproject.toml README.md beat_schedule.py ./
COPY stat_guard/ stat_guard/
COPY workers/ workers/
COPY tasks/ tasks/
COPY demo/ demo/
RUN pip install .

# The scheduled engine's DuckDB aggregate, built against the installed DuckDB's C API
# (scripts/build_duckdb_cells.py); when it cannot be built the engine counts with GROUP BY.
COPY scripts/build_duckdb_cells.py scripts/
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && (python scripts/build_duckdb_cells.py || true) \
    && rm -rf build \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
ENV STAT_GUARD_NATIVE_CELLS=/app/stat_guard/scheduled/native/stat_guard_cells.duckdb_extension

COPY Global_Configs/App.example.yaml Global_Configs/App.example.yaml

RUN useradd --system --uid 10001 --home-dir /app --no-create-home stat_guard \
    && mkdir -p /app/data /app/state \
    && chown stat_guard:stat_guard /app/data /app/state
USER stat_guard

# Configuration: the built-in defaults plus STAT_GUARD_<SECTION>_<KEY> variables
# (docs/fleet.md); no App.yaml is baked in. Every process starts through the stat-guard
# command (docs/fleet.md, "Command line"); by default the on-demand and reaction worker,
# as docker-compose.yml's worker-ondemand.
CMD ["stat-guard", "worker", "ondemand", "--with-reactions", "--pool", "prefork", "--concurrency", "2"]
