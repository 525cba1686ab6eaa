"""Fixtures for the pg_stat_guard extension tests: a live PostgreSQL with the extension.

The extension must be installed first (``make -C pg_extension install``); the tests
connect to ``PSG_TEST_DSN``, which tests/conftest.py points at the test run's private
cluster (tests/servers.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.adapt import Dumper
from psycopg.pq import Format

from tests.conftest import GOLDEN_DIR

DSN = os.environ.get("PSG_TEST_DSN") or (
    f"host={os.environ.get('PGHOST', '127.0.0.1')} port={os.environ.get('PGPORT', '5432')} "
    f"user={os.environ.get('PGUSER', 'postgres')} dbname={os.environ.get('PGDATABASE', 'test')}")


class DigestBytes(bytes):
    """Bytes sent as a binary parameter of type tdigest, so the server runs tdigest_recv."""


def _connect() -> psycopg.Connection:
    try:
        conn = psycopg.connect(DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {DSN!r}: {exc}")
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_guard")
    except psycopg.Error as exc:
        conn.close()
        pytest.skip(f"extension pg_stat_guard is not installed "
                    f"(run: make -C pg_extension install): {exc}")
    oid = conn.execute(
        "SELECT t.oid FROM pg_type t JOIN pg_extension e ON e.extnamespace = t.typnamespace "
        "WHERE e.extname = 'pg_stat_guard' AND t.typname = 'tdigest'").fetchone()[0]

    class DigestDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: bytes) -> bytes:
            return bytes(obj)

    DigestDumper.oid = oid
    conn.adapters.register_dumper(DigestBytes, DigestDumper)
    return conn


@pytest.fixture(scope="session")
def pg() -> Iterator[psycopg.Connection]:
    """Autocommit connection with pg_stat_guard created and a tdigest binary dumper."""
    conn = _connect()
    yield conn
    conn.close()


@pytest.fixture()
def fresh_pg() -> Iterator[psycopg.Connection]:
    """A connection of its own, for tests that change settings."""
    conn = _connect()
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def golden() -> dict:
    path = GOLDEN_DIR / "golden.json"
    if not path.exists():
        pytest.skip(f"golden vectors are missing ({path})")
    return json.loads(path.read_text())
