#!/usr/bin/env bash
# Prepare a fresh Debian machine for pg_stat_guard: Debian build packages, the local
# PostgreSQL and Redis running, and the project's virtual environment. Safe to re-run.
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

if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}"; then
    say "starting PostgreSQL ${PG_MAJOR}"
    pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main start || true
    for _ in $(seq 50); do pg_isready -q -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" && break; sleep 0.2; done
fi
if command -v redis-server >/dev/null && ! redis-cli -h 127.0.0.1 -p "${REDIS_PORT:-6379}" ping >/dev/null 2>&1; then
    say "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "${REDIS_PORT:-6379}" --save "" --appendonly no >/dev/null
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating the virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
    say "installing Python packages"
    # pip warns about unused local index folders on some machines; keep the output readable.
    "$VENV/bin/pip" install -q --upgrade pip 2> >(grep -v "^WARNING: Location" >&2)
    "$VENV/bin/pip" install -q -e '.[dev]' 2> >(grep -v "^WARNING: Location" >&2)
    rm -f "$VENV"/.installed-*
    touch "$stamp"
fi
