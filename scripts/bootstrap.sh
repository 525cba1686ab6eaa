#!/usr/bin/env bash
# Prepare a fresh Debian machine for pg_stat_guard: Debian build packages, the project's
# virtual environment from uv.lock, and (START_LOCAL_SERVERS=1, for the demo) the local
# PostgreSQL and Redis running. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_MAJOR="${PG_MAJOR:-15}"
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
DEBIAN_PACKAGES=(
    build-essential
    "postgresql-server-dev-${PG_MAJOR}"
    libcurl4-openssl-dev
    "postgresql-${PG_MAJOR}-tdigest"
    python3-venv
    prometheus
    docker-compose
    chromium
    "postgresql-${PG_MAJOR}"
    redis-server
)
DEBIAN_PACKAGES+=(${EXTRA_DEBIAN_PACKAGES:-})

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# python3-venv is only needed when the interpreter cannot make a venv by itself.
if [[ " ${missing[*]:-} " == *" python3-venv "* ]] && "$PYTHON" -m venv --help >/dev/null 2>&1; then
    missing=("${missing[@]/python3-venv}")
fi
missing=(${missing[@]:-})
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    # No recommends: docker-compose would pull in a Docker engine, prometheus a node exporter.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# The demo uses the local servers (START_LOCAL_SERVERS=1); the tests start their own.
if [[ "${START_LOCAL_SERVERS:-0}" == 1 ]] && command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}"; then
    say "starting PostgreSQL ${PG_MAJOR}"
    pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main start || true
    for _ in $(seq 50); do pg_isready -q -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" && break; sleep 0.2; done
fi
if [[ "${START_LOCAL_SERVERS:-0}" == 1 ]] && command -v redis-server >/dev/null && ! redis-cli -h 127.0.0.1 -p "${REDIS_PORT:-6379}" ping >/dev/null 2>&1; then
    say "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "${REDIS_PORT:-6379}" --save "" --appendonly no >/dev/null
fi

# Python packages come from uv.lock (exact versions and hashes of every package, the dev
# and bench extras included); pyproject.toml keeps the lower bounds for people who install
# the library into their own environment. `make lock` refreshes the lock.
UV_VERSION="$("$PYTHON" -c 'import sys, tomllib
print(next(p["version"] for p in tomllib.load(open("uv.lock", "rb"))["package"] if p["name"] == "uv"))')"
EXTRAS="${EXTRAS:-dev}"
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating the virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cat pyproject.toml uv.lock | sha1sum | cut -c1-12)-${EXTRAS// /+}"
if [[ ! -f "$stamp" ]]; then
    if [[ "$("$VENV/bin/uv" --version 2>/dev/null)" != "uv $UV_VERSION"* ]]; then
        say "installing uv $UV_VERSION"
        # pip warns about unused local index folders on some machines; keep the output readable.
        "$VENV/bin/python" -m pip install -q "uv==$UV_VERSION" 2> >(grep -v "^WARNING: Location" >&2)
    fi
    say "installing Python packages from uv.lock (extras: $EXTRAS)"
    extra_args=()
    for extra in $EXTRAS; do extra_args+=(--extra "$extra"); done
    # --locked: stop if pyproject.toml and uv.lock disagree instead of resolving anew.
    UV_PROJECT_ENVIRONMENT="$VENV" "$VENV/bin/uv" sync --locked --quiet --python "$VENV/bin/python" \
        "${extra_args[@]}"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi

# The scheduled engine's DuckDB aggregate (stat_guard/scheduled/native): built against the
# installed DuckDB's C API headers, rebuilt only when DuckDB or the source change. Without
# it (no network for the headers, no compiler) the engine counts with GROUP BY instead.
"$VENV/bin/python" scripts/build_duckdb_cells.py \
    || say "the native cell aggregate was not built; scheduled runs use GROUP BY (slower)"
