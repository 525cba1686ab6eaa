#!/bin/sh
# Runs once, when the official image initialises an empty data directory: creates the
# extension in $POSTGRES_DB and stores the function key with ALTER SYSTEM
# (postgresql.auto.conf, readable by the superuser only), so it never shows on a command
# line. The function URL and the other settings come from docker-compose.yml's -c flags.
set -eu

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -c "CREATE EXTENSION IF NOT EXISTS pg_stat_guard"

if [ -n "${PG_STAT_GUARD_FUNCTION_KEY:-}" ]; then
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -v key="$PG_STAT_GUARD_FUNCTION_KEY" <<'SQL'
ALTER SYSTEM SET pg_stat_guard.function_key = :'key';
SELECT pg_reload_conf();
SQL
fi
