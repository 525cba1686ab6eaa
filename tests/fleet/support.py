"""Test-side helpers: a webhook receiver, stream and DuckDB readers, demo databases."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import redis

from demo.duckdb_data import DemoSummary, generate_demo_data
from tests.fleet.conftest import CONFIG, CONFIG_DIR

_DEMO_CACHE: dict[int, tuple[Path, DemoSummary]] = {}


def demo_database(path: Path, rows_per_model: int = 20_000) -> DemoSummary:
    """A demo DuckDB at ``path`` (generated once per size per session, then copied)."""
    cached = _DEMO_CACHE.get(rows_per_model)
    if cached is None or not cached[0].exists():
        source = CONFIG_DIR / f"demo-{rows_per_model}.duckdb"
        summary = generate_demo_data(str(source), rows_per_model=rows_per_model, seed=7)
        cached = (source, summary)
        _DEMO_CACHE[rows_per_model] = cached
    path.write_bytes(cached[0].read_bytes())
    return cached[1]


class WebhookReceiver:
    """A loopback HTTP server that records every POST body (JSON)."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/v2/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def alerted_run_ids(self) -> list[str]:
        return [alert["annotations"]["run_id"] for body in self.bodies for alert in body]


def stream_records(client: redis.Redis, stream: str | None = None) -> list[dict[str, str]]:
    return [fields for _id, fields in client.xrange(stream or CONFIG.stream.name)]


def records_by_run(client: redis.Redis) -> dict[str, list[dict[str, str]]]:
    grouped: dict[str, list[dict[str, str]]] = {}
    for record in stream_records(client):
        grouped.setdefault(record["run_id"], []).append(record)
    return grouped


@contextmanager
def duckdb_reader(path: Path, timeout: float = 30) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, waiting while a worker holds the file."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = duckdb.connect(str(path), read_only=True)
            break
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield connection
    finally:
        connection.close()


def query(path: Path, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with duckdb_reader(path) as connection:
        return connection.execute(sql, params).fetchall()


@contextmanager
def file_held_by_another_process(path: Path, seconds: float) -> Iterator[float]:
    """Another process opens ``path`` read-write and keeps it for ``seconds``; yields the
    monotonic time at which it will let go."""
    import subprocess
    import sys

    code = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "print('held', flush=True); time.sleep(float(sys.argv[2])); c.close()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield time.monotonic() + seconds
        holder.wait(timeout=seconds + 30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def pending_count(client: redis.Redis) -> int:
    """Entries delivered to the reaction group and not yet acknowledged (0 before the
    group exists)."""
    try:
        return int(client.xpending(CONFIG.stream.name, CONFIG.stream.group)["pending"])
    except redis.ResponseError:
        return 0
