"""A PostgreSQL cluster of its own with the extension's function URL set, for the fleet's
on-demand tests and benchmark: the URL is a server-wide setting, so each user of it gets a
cluster (tests/servers.py) instead of sharing one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from tests.servers import SUPERUSER, PostgresCluster


@dataclass(frozen=True)
class PrivatePostgres:
    port: int
    user: str = SUPERUSER
    database: str = "postgres"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={self.database}"


@contextmanager
def private_postgres(function_url: str) -> Iterator[PrivatePostgres]:
    """Start a throw-away cluster with the extension created and its function URL set."""
    quoted_url = "'" + function_url.replace("'", "''") + "'"
    cluster = PostgresCluster.start(settings={"max_connections": "40",
                                              "shared_buffers": "64MB",
                                              "pg_stat_guard.function_url": quoted_url},
                                    databases=(), preload=False, prefix="psg-fleet-pg-")
    try:
        server = PrivatePostgres(cluster.port)
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_guard")
        yield server
    finally:
        cluster.stop()
