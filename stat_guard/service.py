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

The threshold defaults are ``stat_guard.verdict.DEFAULT_THRESHOLDS``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
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

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSettings:
    function_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    thresholds: Thresholds = DEFAULT_THRESHOLDS

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
        return cls(function_key=environ.get("STAT_GUARD_FUNCTION_KEY") or None,
                   max_body_bytes=max_body, thresholds=thresholds)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(settings: ServiceSettings | None = None) -> Callable[..., Awaitable[None]]:
    """Build the ASGI application; settings default to the environment."""
    settings = settings or ServiceSettings.from_environ()
    expected_key = settings.function_key.encode() if settings.function_key else None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, payload = await _route(scope, receive)
        except _HTTPError as exc:
            status, payload = exc.status, {"status": "error", "error": exc.message}
        except Exception:  # never leak internals (or the key) to the caller
            log.exception("unexpected error while analysing a request")
            status, payload = 500, {"status": "error", "error": "internal error"}
        await _respond(send, status, payload)

    async def _route(scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        path, method = scope["path"].rstrip("/"), scope["method"]
        if path == "/api/health":
            return 200, {"status": "ok", "function_version": __version__}
        if path != "/api/drift":
            raise _HTTPError(404, f"no route {path or '/'}")
        if method != "POST":
            raise _HTTPError(405, "use POST with a binary envelope body")
        if expected_key is not None:
            given = dict(scope.get("headers") or []).get(KEY_HEADER, b"")
            if not hmac.compare_digest(given, expected_key):
                raise _HTTPError(401, "missing or wrong x-functions-key")
        body = await _read_body(scope, receive, settings.max_body_bytes)
        try:
            return 200, analyze_envelope(body, settings.thresholds)
        except WireFormatError as exc:
            raise _HTTPError(400, f"malformed envelope: {exc}") from None

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
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


async def _respond(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the drift function locally.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    uvicorn.run("stat_guard.service:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="info", access_log=False)


if __name__ == "__main__":
    main()
