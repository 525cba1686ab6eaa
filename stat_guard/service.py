"""The drift verdict service as a plain ASGI application.

``POST /api/drift`` takes a request envelope (docs/wire-format.md) and answers the verdict
JSON. The Azure Function (azure/function_app.py) wraps this app; locally it runs under
uvicorn: ``python -m stat_guard.service --port 7071``.

Settings come from the environment once, when the app is built (Azure app settings):

| variable | default | meaning |
| --- | --- | --- |
| ``STAT_GUARD_FUNCTION_KEY`` | unset | if set, requests must carry it in ``x-functions-key`` |
| ``STAT_GUARD_MAX_BODY_BYTES`` | 16777216 | larger bodies get 413 |
| ``STAT_GUARD_PSI_WARNING`` / ``_PSI_DRIFT`` | 0.1 / 0.25 | PSI effect sizes |
| ``STAT_GUARD_KS_STATISTIC`` | 0.1 | KS effect size |
| ``STAT_GUARD_MISSING_RATE_WARNING`` / ``_DRIFT`` | 0.05 / 0.2 | missing-share change |
| ``STAT_GUARD_SIGNIFICANCE`` | 0.05 | a feature's false-alarm budget |
| ``STAT_GUARD_FALSE_DISCOVERY_RATE`` | false | correct the features together |
| ``STAT_GUARD_MIN_COUNT`` | 30 | fewer values: insufficient_data |
| ``STAT_GUARD_BODY_TIMEOUT`` | 30 | seconds to receive a whole body, else 408 |
| ``STAT_GUARD_ANALYSIS_PROCESSES`` | cores / workers | analysis processes; 0: a thread |
| ``STAT_GUARD_INLINE_BYTES`` | 0 | bodies up to this size are analysed in place |

``python -m stat_guard.service`` also reads ``STAT_GUARD_WORKERS`` (1),
``STAT_GUARD_HEADER_TIMEOUT`` (10 s), ``STAT_GUARD_KEEP_ALIVE_TIMEOUT`` (5 s) and
``STAT_GUARD_MAX_CONNECTIONS`` (500 per worker); see ``stat_guard.http_guard``.

The threshold defaults are ``stat_guard.verdict.DEFAULT_THRESHOLDS``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hmac
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stat_guard import __version__
from stat_guard.envelope_verdict import analyze_envelope
from stat_guard.verdict import DEFAULT_THRESHOLDS, Thresholds
from stat_guard.wire import WireFormatError

log = logging.getLogger("stat_guard.service")

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
KEY_HEADER = b"x-functions-key"
DRAIN_LIMIT_BYTES = 128 * 1024 * 1024
DEFAULT_BODY_TIMEOUT = 30.0
# Bodies analysed on the event loop itself. 0: none, measured best (docs/function.md):
# a 3-column analysis in place blocks the loop for several milliseconds per request, and
# a trip to an analysis process costs less than that.
DEFAULT_INLINE_BYTES = 0
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_KEEP_ALIVE_TIMEOUT = 5
DEFAULT_MAX_CONNECTIONS = 500

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSettings:
    function_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    analysis_processes: int = 1
    inline_bytes: int = DEFAULT_INLINE_BYTES
    # Read by ``python -m stat_guard.service`` (uvicorn), not by the app itself.
    workers: int = 1
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keep_alive_timeout: int = DEFAULT_KEEP_ALIVE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> ServiceSettings:
        def number(name: str, default: float, kind: type = float) -> Any:
            raw = environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"{name} must be a {kind.__name__}, got {raw!r}") from None

        max_body = number("STAT_GUARD_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, int)
        if max_body < 1024:
            raise ValueError("STAT_GUARD_MAX_BODY_BYTES must be at least 1024")
        defaults = DEFAULT_THRESHOLDS
        thresholds = Thresholds(
            psi_warning=number("STAT_GUARD_PSI_WARNING", defaults.psi_warning),
            psi_drift=number("STAT_GUARD_PSI_DRIFT", defaults.psi_drift),
            ks_statistic=number("STAT_GUARD_KS_STATISTIC", defaults.ks_statistic),
            missing_rate_warning=number("STAT_GUARD_MISSING_RATE_WARNING",
                                        defaults.missing_rate_warning),
            missing_rate_drift=number("STAT_GUARD_MISSING_RATE_DRIFT",
                                      defaults.missing_rate_drift),
            significance=number("STAT_GUARD_SIGNIFICANCE", defaults.significance),
            false_discovery_rate=environ.get("STAT_GUARD_FALSE_DISCOVERY_RATE", "").lower()
            in ("1", "true", "yes", "on"),
            min_count=number("STAT_GUARD_MIN_COUNT", defaults.min_count, int),
        )
        def positive(name: str, default: float, kind: type = float) -> Any:
            value = number(name, default, kind)
            if not value > 0:  # NaN too
                raise ValueError(f"{name} must be positive, got {value!r}")
            return value

        workers = positive("STAT_GUARD_WORKERS", 1, int)
        cores = _usable_cores()
        processes = number("STAT_GUARD_ANALYSIS_PROCESSES", max(1, cores // workers), int)
        if processes < 0:
            raise ValueError("STAT_GUARD_ANALYSIS_PROCESSES must be 0 (a thread) or more")
        inline = number("STAT_GUARD_INLINE_BYTES", DEFAULT_INLINE_BYTES, int)
        if inline < 0:
            raise ValueError("STAT_GUARD_INLINE_BYTES must be 0 or more")
        return cls(function_key=environ.get("STAT_GUARD_FUNCTION_KEY") or None,
                   max_body_bytes=max_body, thresholds=thresholds,
                   body_timeout=positive("STAT_GUARD_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT),
                   analysis_processes=processes, inline_bytes=inline, workers=workers,
                   header_timeout=positive("STAT_GUARD_HEADER_TIMEOUT",
                                           DEFAULT_HEADER_TIMEOUT),
                   keep_alive_timeout=positive("STAT_GUARD_KEEP_ALIVE_TIMEOUT",
                                               DEFAULT_KEEP_ALIVE_TIMEOUT, int),
                   max_connections=positive("STAT_GUARD_MAX_CONNECTIONS",
                                            DEFAULT_MAX_CONNECTIONS, int))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close  # end the connection after answering


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


def analyze_to_json(body: bytes, thresholds: Thresholds) -> tuple[int, bytes]:
    """The status and JSON body answering one envelope (run in an analysis process)."""
    try:
        payload = analyze_envelope(body, thresholds)
    except WireFormatError as exc:
        return 400, _json_bytes({"status": "error", "error": f"malformed envelope: {exc}"})
    return 200, _json_bytes(payload)


def _warm_up() -> None:
    """Nothing: submitted once at the start, it makes the pool start its processes."""


def _watch_parent(parent: int) -> None:
    """The initializer of an analysis process: exit when the serving process is gone.

    uvicorn ends on SIGTERM by raising the signal again once it has shut down, so no exit
    handler of the serving process runs; and every process of the pool holds the pool's
    queue open, so none would see it close."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _Analyzer:
    """Runs the statistics off the event loop: in a pool of processes (the analysis is
    CPU-bound Python, which threads would serialise on the GIL), or in a thread when
    ``processes`` is 0. Bodies up to ``inline_bytes`` (default none) are analysed on the
    event loop itself."""

    def __init__(self, processes: int, inline_bytes: int) -> None:
        self.processes = processes
        self.inline_bytes = inline_bytes
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fork of the serving process would inherit its event loop and signal
            # handlers; the children import the library once, at their start.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_watch_parent, initargs=(os.getpid(),))
        return self._pool

    async def start(self) -> None:
        if self.processes > 0:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor(), _warm_up)

    async def stop(self) -> None:
        """Stop the processes (uvicorn has finished the requests in flight by then)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: pool.shutdown(wait=True, cancel_futures=True))

    async def analyze(self, body: bytes, thresholds: Thresholds) -> tuple[int, bytes]:
        if len(body) <= self.inline_bytes:
            return analyze_to_json(body, thresholds)
        loop = asyncio.get_running_loop()
        if self.processes == 0:
            return await loop.run_in_executor(None, analyze_to_json, body, thresholds)
        pool = self._executor()
        try:
            return await loop.run_in_executor(pool, analyze_to_json, body, thresholds)
        except concurrent.futures.process.BrokenProcessPool:
            if self._pool is pool:  # a process died (out of memory?): a fresh pool next
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise


def create_app(settings: ServiceSettings | None = None) -> Callable[..., Awaitable[None]]:
    """Build the ASGI application; settings default to the environment."""
    settings = settings or ServiceSettings.from_environ()
    expected_key = settings.function_key.encode() if settings.function_key else None
    analyzer = _Analyzer(settings.analysis_processes, settings.inline_bytes)
    health = _json_bytes({"status": "ok", "function_version": __version__})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, analyzer)
            return
        if scope["type"] != "http":
            return
        close = False
        try:
            status, body = await _route(scope, receive)
        except _HTTPError as exc:
            status, body = exc.status, _json_bytes({"status": "error", "error": exc.message})
            close = exc.close
        except Exception:  # never leak internals (or the key) to the caller
            log.exception("unexpected error while analysing a request")
            status, body = 500, _json_bytes({"status": "error", "error": "internal error"})
        await _respond(send, status, body, close)

    async def _route(scope: Scope, receive: Receive) -> tuple[int, bytes]:
        path, method = scope["path"].rstrip("/"), scope["method"]
        if path == "/api/health":
            return 200, health
        if path != "/api/drift":
            raise _HTTPError(404, f"no route {path or '/'}")
        if method != "POST":
            raise _HTTPError(405, "use POST with a binary envelope body")
        if expected_key is not None:
            given = dict(scope.get("headers") or []).get(KEY_HEADER, b"")
            if not hmac.compare_digest(given, expected_key):
                raise _HTTPError(401, "missing or wrong x-functions-key")
        try:
            body = await asyncio.wait_for(_read_body(scope, receive, settings.max_body_bytes),
                                          settings.body_timeout)
        except TimeoutError:
            raise _HTTPError(408, f"the body did not arrive within {settings.body_timeout:g} s",
                             close=True) from None
        return await analyzer.analyze(body, settings.thresholds)

    return app


async def _lifespan(receive: Receive, send: Send, analyzer: _Analyzer) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await analyzer.start()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await analyzer.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body; 413 when it passes ``limit`` bytes.

    An oversized body is drained (up to ``DRAIN_LIMIT_BYTES``) before answering, so the
    client, still sending, reads a clean 413 instead of a reset connection.
    """
    declared = dict(scope.get("headers") or []).get(b"content-length")
    if declared is not None and not declared.isdigit():
        raise _HTTPError(400, "invalid content-length")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _HTTPError(400, "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif chunks:
            chunks.clear()  # over the limit: keep draining, keep nothing
        more = message.get("more_body", False)
        if size > limit and (not more or size > DRAIN_LIMIT_BYTES):
            raise _HTTPError(413, f"body of {size}{'+' if more else ''} bytes exceeds {limit}")
        if not more:
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, close: bool = False) -> None:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from stat_guard.http_guard import GuardedH11Protocol

    parser = argparse.ArgumentParser(description="Serve the drift function locally.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--workers", type=int, default=None,
                        help="uvicorn worker processes (default: STAT_GUARD_WORKERS or 1)")
    args = parser.parse_args(argv)
    if args.workers is not None:  # the workers read their settings from the environment
        os.environ["STAT_GUARD_WORKERS"] = str(args.workers)
    settings = ServiceSettings.from_environ()  # a malformed value stops here, once
    os.environ["STAT_GUARD_HEADER_TIMEOUT"] = repr(settings.header_timeout)
    uvicorn.run("stat_guard.service:create_app", factory=True, host=args.host, port=args.port,
                workers=settings.workers, http=GuardedH11Protocol,
                timeout_keep_alive=settings.keep_alive_timeout,
                limit_concurrency=settings.max_connections,
                log_level="info", access_log=False)


if __name__ == "__main__":
    main()
