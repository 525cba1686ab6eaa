"""PostgreSQL connections for the on-demand and baseline tasks: one per pool process or
pool thread, kept open between tasks (an analysis is ~10 ms; a new connection would
double it) and replaced when it breaks.
"""

from __future__ import annotations

import os
import threading

import psycopg

from workers.config import PostgresConfig, get_config

_connections: dict[tuple[int, int], psycopg.Connection] = {}


def pg_connection(config: PostgresConfig | None = None) -> psycopg.Connection:
    """This process's (thread's) autocommit connection, (re)opened when missing or broken."""
    config = config or get_config().postgres
    pid = (os.getpid(), threading.get_ident())
    conn = _connections.get(pid)
    if conn is not None and (conn.closed or conn.broken):
        _connections.pop(pid, None)
        conn = None
    if conn is None:
        conn = psycopg.connect(config.conninfo(), autocommit=True)
        _connections[pid] = conn
    return conn


def discard_connection() -> None:
    """Close and forget this process's (thread's) connection (after an error that may have left it
    in an unknown state)."""
    conn = _connections.pop((os.getpid(), threading.get_ident()), None)
    if conn is not None:
        try:
            conn.close()
        except psycopg.Error:
            pass
