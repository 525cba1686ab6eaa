"""The drift pages as a plain ASGI application under uvicorn (the style of
stat_guard/service.py): ``python -m workers.pages`` or ``stat-guard pages``.

| route | page |
| --- | --- |
| ``/`` | every model's newest result per path, worst first |
| ``/models/{model}`` | the model's newest result, features most severe first, its recent scores |
| ``/runs/{run_id}`` | one result |
| ``/runs/{run_id}/report.html`` | the same result as a self-contained report file (download) |
| ``/healthz`` | ``ok`` (no credentials needed; says nothing about the results) |

Credentials as for Flower: ``pages.basic_auth`` (``user:password``) and/or ``pages.token``
(``?token=…``, then kept in a cookie, or ``Authorization: Bearer …``), compared in
constant time. Without either the process starts only on a loopback address.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import ipaddress
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote

import redis

from workers.config import ConfigError, FleetConfig, PagesConfig
from workers.pages import data, render
from workers.report import file_name

log = logging.getLogger("workers.pages")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

TOKEN_COOKIE = "stat_guard_pages"
HTML = b"text/html; charset=utf-8"
# No script, no frame, nothing from elsewhere: the pages need inline CSS and SVG only.
POLICY = (b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
          b"form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
_SECURITY_HEADERS = [(b"content-security-policy", POLICY),
                     (b"x-content-type-options", b"nosniff"),
                     (b"referrer-policy", b"no-referrer"),
                     (b"x-frame-options", b"DENY"),
                     (b"cache-control", b"no-store")]


class Credentials:
    """What a request must carry; compared in constant time."""

    def __init__(self, settings: PagesConfig) -> None:
        self.pairs = [pair.strip().encode() for pair in settings.basic_auth.split(",")
                      if pair.strip()]
        self.token = settings.token.encode() if settings.token else None

    @property
    def required(self) -> bool:
        return bool(self.pairs or self.token)

    def accepts(self, headers: dict[bytes, bytes], query: dict[str, list[str]]) -> bool:
        if not self.required:
            return True
        given = headers.get(b"authorization", b"")
        scheme, _, value = given.partition(b" ")
        ok = False
        if scheme.lower() == b"basic" and self.pairs:
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except ValueError:
                decoded = b""
            for pair in self.pairs:  # every pair compared: the time says nothing
                ok |= hmac.compare_digest(decoded, pair)
        if self.token is not None:
            candidates = [value.strip()] if scheme.lower() == b"bearer" else []
            candidates += [t.encode() for t in query.get("token", [])[:1]]
            candidates += [_cookie(headers, TOKEN_COOKIE)]
            for candidate in candidates:
                ok |= bool(candidate) and hmac.compare_digest(candidate, self.token)
        return ok


def _cookie(headers: dict[bytes, bytes], name: str) -> bytes:
    for part in headers.get(b"cookie", b"").split(b";"):
        key, _, value = part.strip().partition(b"=")
        if key == name.encode():
            return value
    return b""


class _Answer(Exception):
    def __init__(self, status: int, body: str, headers: list[tuple[bytes, bytes]] | None = None
                 ) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or []


def create_app(config: FleetConfig, client: redis.Redis | None = None
               ) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI application over ``config``'s Redis (a fail-fast client, like the
    exporter's, unless ``client`` is given)."""
    from workers.exporter import scrape_client

    client = client or scrape_client(config)
    credentials = Credentials(config.pages)
    links = render.Links()
    thresholds = config.thresholds

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, content_type, body = await _route(scope, headers, query, extra)
        except _Answer as answer:
            status, content_type = answer.status, HTML
            body = render.page(f"{answer.status}", answer.body).encode()
            extra += answer.headers
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("Redis unavailable: %s", exc)
            status, content_type = 503, HTML
            body = render.page("Redis unavailable", "<h1>Redis is unavailable</h1><p>The "
                               "results cannot be read right now; try again.</p>").encode()
        except Exception:  # never a traceback to the browser
            log.exception("error while rendering %s", scope.get("path"))
            status, content_type = 500, HTML
            body = render.page("error", "<h1>Something went wrong</h1>").encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", content_type), (b"content-length", str(len(body)).encode()),
            *_SECURITY_HEADERS, *extra]})
        if scope.get("method") != "HEAD":
            await send({"type": "http.response.body", "body": body})
        else:
            await send({"type": "http.response.body", "body": b""})

    async def _route(scope: Scope, headers: dict[bytes, bytes], query: dict[str, list[str]],
                     extra: list[tuple[bytes, bytes]]) -> tuple[int, bytes, bytes]:
        raw = scope.get("raw_path") or scope["path"].encode()
        path = raw.split(b"?", 1)[0].decode("latin-1")
        if path == "/healthz":
            return 200, b"text/plain; charset=utf-8", b"ok\n"
        if scope.get("method") not in ("GET", "HEAD"):
            raise _Answer(405, "<h1>Only GET</h1>", [(b"allow", b"GET, HEAD")])
        if not credentials.accepts(headers, query):
            challenge = [(b"www-authenticate", b'Basic realm="pg_stat_guard pages"')] \
                if credentials.pairs else []
            raise _Answer(401, "<h1>Credentials needed</h1><p>Use the pages' user and "
                               "password, or their token.</p>", challenge)
        if credentials.token is not None and query.get("token") and hmac.compare_digest(
                query["token"][0].encode(), credentials.token):
            extra.append((b"set-cookie", f"{TOKEN_COOKIE}={query['token'][0]}; HttpOnly; "
                          f"SameSite=Strict; Path=/".encode("latin-1")))
        parts = [unquote(p) for p in path.strip("/").split("/")] if path != "/" else []
        if not parts:
            records = await asyncio.to_thread(data.latest_results, client, config)
            return 200, HTML, render.overview(records, links).encode()
        if len(parts) == 2 and parts[0] == "models":
            return 200, HTML, (await asyncio.to_thread(_model, parts[1])).encode()
        if len(parts) in (2, 3) and parts[0] == "runs":
            if len(parts) == 3 and parts[2] != "report.html":
                raise _Answer(404, "<h1>No such page</h1>")
            result, history = await asyncio.to_thread(_run, parts[1])
            if result is None:
                raise _Answer(404, f"<h1>No result {render.esc(parts[1])}</h1><p>It is "
                                   f"not among the newest results in Redis.</p>")
            if len(parts) == 3:
                extra.append((b"content-disposition", b'attachment; filename="'
                               + file_name(result.run_id).encode() + b'"'))
                return 200, HTML, render.report(result, history, thresholds).encode()
            return 200, HTML, render.run_page(result, history, thresholds, links).encode()
        raise _Answer(404, "<h1>No such page</h1>")

    def _model(model: str) -> str:
        result, results = data.newest_result(client, config, model)
        if result is None:
            raise _Answer(404, f"<h1>No results for {render.esc(model)}</h1><p>No result of "
                               f"this model is in Redis.</p>")
        others = [r for r in results.latest.values() if r.run_id != result.run_id]
        return render.model_page(model, result, results.history, others, thresholds, links)

    def _run(run_id: str) -> tuple[data.Result | None, list[Any]]:
        entries = data.recent_entries(client, config)  # read once for both
        result = data.find_result(client, config, run_id, entries)
        if result is None:
            return None, []
        return result, data.model_results(client, config, result.model, entries).history

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_credentials(settings: PagesConfig, host: str) -> str | None:
    """Why the pages must not start on ``host`` (no credentials on a non-loopback
    address), or None."""
    if settings.basic_auth or settings.token or is_loopback(host):
        return None
    return (f"pages.basic_auth (user:password) and pages.token are both unset; refusing to "
            f"serve the pages on {host} without authentication. Set one in the configuration "
            f"file (pages: basic_auth: \"ops:<password>\") or the environment "
            f"(STAT_GUARD_PAGES_BASIC_AUTH=ops:<password> or STAT_GUARD_PAGES_TOKEN=...), or "
            f"bind to 127.0.0.1")


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from workers.config import get_config

    parser = argparse.ArgumentParser(description="Serve the drift pages.")
    parser.add_argument("--host", default=None, help="address (default pages.host)")
    parser.add_argument("--port", type=int, default=None, help="port (default pages.port)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = get_config()
    except ConfigError as exc:
        sys.exit(f"configuration: {exc}")
    host = args.host or config.pages.host
    port = args.port if args.port is not None else config.pages.port
    refusal = check_credentials(config.pages, host)
    if refusal:
        sys.exit(refusal)
    if not (config.pages.basic_auth or config.pages.token):
        log.warning("the pages need no credentials: pages.basic_auth and pages.token are "
                    "unset, which is allowed on the loopback address %s only (every user of "
                    "this machine can read them)", host)
    log.info("drift pages on http://%s:%d/ (Redis %s:%d/%d, stream %s)", host, port,
             config.redis.host, config.redis.port, config.redis.db, config.stream.name)
    uvicorn.run(create_app(config), host=host, port=port, log_level="info",
                access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
