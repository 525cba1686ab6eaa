"""A real HTTP/1.1 server on loopback that plays the drift function and misbehaves on demand.

The URL path chooses the behaviour of each request, so one server serves every fault and
PostgreSQL's ``pg_stat_guard.function_url`` alone selects it. A path is a chain of
directives ending in ``/api/drift``; the last directive that answers wins:

| directive | behaviour |
| --- | --- |
| ``ok`` (or nothing) | decode the envelope, answer the real verdict JSON; 400 if malformed |
| ``ok-fast`` | answer a valid "ok" verdict at once, reading only the envelope framing |
| ``slow/<seconds>`` | wait that long first (stops at once when the server shuts down) |
| ``key/<expected>`` | 401 unless ``x-functions-key`` equals ``<expected>`` |
| ``status/<code>`` | answer that status with a small JSON error body |
| ``malformed`` | 200 ``application/json`` whose body is not JSON |
| ``notobject`` | 200 with valid JSON that is an array |
| ``noverdict`` | 200 with a JSON object lacking ``status`` and ``verdict`` |
| ``huge/<bytes>`` | 200 with a body of that many bytes and a ``Content-Length`` |
| ``huge-chunked/<bytes>`` | the same, chunked, with no length announced |
| ``close`` | read the request, then close the socket without answering |
| ``redirect`` | 307 to ``/ok/api/drift`` on this server (a client must not follow it) |
| ``drip/<seconds>`` | a valid verdict sent one byte at a time over that many seconds |
| ``truncated`` | announce 1000 bytes, send a few, close |
| ``nested/<depth>`` | a verdict holding an array nested ``depth`` deep |
| ``nul-escape``, ``nan-literal``, ``invalid-utf8``, | 200 with that kind of broken  |
| ``empty-body``, ``trailing-garbage``, ``verdict-not-string`` | JSON (see _ODD_BODIES) |

Every request is recorded (path, headers, body length, the bodies of the last few
requests, the connection it came on, how it ended), and so is every accepted connection,
so tests can check the request bytes and connection reuse.
"""

from __future__ import annotations

import itertools
import json
import select
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from stat_guard.envelope_verdict import analyze_envelope
from stat_guard.wire import WireFormatError
from tests.http_server import verdict_service  # the real service, re-exported for tests

__all__ = ["FaultServer", "Request", "fault_server", "refused_port", "self_signed_tls",
           "unanswered_port", "verdict_service"]

API_SUFFIX = ("api", "drift")
KEY_HEADER = "x-functions-key"
CANNED_VERDICT = {
    "status": "ok",
    "verdict": "ok",
    "request_id": None,
    "function_version": "fault-server",
    "thresholds": {"psi_warning": 0.1, "psi_drift": 0.25, "ks_pvalue": 0.05,
                   "ks_statistic": 0.1},
    "columns": {},
    "timings_ms": {"decode": 0.0, "statistics": 0.0},
}
# 200 answers whose JSON is broken in ways a parser may trip over.
_ODD_BODIES = {
    "nul-escape": b'{"status":"ok","verdict":"ok","x":"a\\u0000b"}',
    "nan-literal": b'{"status":"ok","verdict":"ok","x":NaN}',
    "invalid-utf8": b'{"status":"ok","verdict":"ok","x":"\xff\xfe"}',
    "empty-body": b"",
    "trailing-garbage": b'{"status":"ok","verdict":"ok"} trailing',
    "verdict-not-string": b'{"status":"ok","verdict":42}',
}
_COUNT_FIELDS = ("count", "null_count", "nan_count", "pos_inf_count", "neg_inf_count")
_STREAM_CHUNK = 64 * 1024


@dataclass
class Connection:
    """One accepted TCP connection."""

    id: int
    client: tuple[str, int]
    accepted_at: float
    closed_at: float | None = None
    requests: int = 0


@dataclass
class Request:
    """One HTTP request as the server saw it, and how it ended."""

    seq: int
    connection_id: int
    client: tuple[str, int]
    method: str
    path: str
    headers: dict[str, str]
    body_length: int
    body: bytes | None
    received_at: float
    outcome: str = "pending"  # answered, client_closed, server_stopped, closed_by_server
    status: int | None = None
    bytes_sent: int = 0
    finished_at: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class _Stop(Exception):
    """The server is shutting down or the client went away: end this request."""


class FaultServer(ThreadingHTTPServer):
    """A threaded HTTP/1.1 server with keep-alive, recording what it sees."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, host: str = "127.0.0.1", port: int = 0, keep_bodies: int = 64,
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.tls = tls
        self.tls_failures: list[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._bodies: deque[Request] = deque()
        self._keep_bodies = keep_bodies
        self._connections: list[Connection] = []
        self._open_sockets: dict[int, socket.socket] = {}
        self._conn_ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._thread: threading.Thread | None = None
        self.arrived = threading.Condition(self._lock)

    # ---- life cycle ---------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def handle_error(self, request: object, client_address: object) -> None:
        """A handler that failed (a refused TLS handshake, a reset) is expected here."""

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        sock, client = super().get_request()
        if self.tls is not None:  # the handshake runs in the handler's thread
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, client

    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fault-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: wake every sleeping handler and close every open connection."""
        self.stopping.set()
        self.shutdown()
        self.drop_connections()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what tests use -----------------------------------------------------------

    def url(self, mode: str = "ok") -> str:
        """The function URL for a mode, e.g. ``url("slow/10")`` or ``url("key/abc/ok")``."""
        mode = mode.strip("/")
        return f"{self.base_url}/{mode}/api/drift" if mode else f"{self.base_url}/api/drift"

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections)

    def clear(self) -> None:
        """Forget what was recorded so far (open connections stay open and keep their ids)."""
        with self._lock:
            self._requests.clear()
            self._bodies.clear()
            self._connections = [c for c in self._connections if c.closed_at is None]
            for conn in self._connections:
                conn.requests = 0

    def drop_connections(self) -> int:
        """Close every open connection from the server side (an idle timeout, a restart)."""
        with self._lock:
            sockets = list(self._open_sockets.values())
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(sockets)

    def connections_used(self) -> set[int]:
        """Ids of the connections the recorded requests came on."""
        return {r.connection_id for r in self.requests}

    def wait_for_requests(self, count: int = 1, timeout: float = 10.0) -> list[Request]:
        """Block until at least ``count`` requests have arrived (their bodies read)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._requests)} of {count} requests arrived "
                                       f"within {timeout} s")
                self.arrived.wait(left)
            return list(self._requests)

    def wait_for_outcome(self, request: Request, timeout: float = 10.0) -> str:
        """Block until ``request`` has ended; return its outcome."""
        deadline = time.monotonic() + timeout
        while request.outcome == "pending" and time.monotonic() < deadline:
            time.sleep(0.005)
        return request.outcome

    # ---- bookkeeping used by the handler ------------------------------------------

    def _open_connection(self, sock: socket.socket, client: tuple[str, int]) -> Connection:
        with self._lock:
            conn = Connection(next(self._conn_ids), client, time.monotonic())
            self._connections.append(conn)
            self._open_sockets[conn.id] = sock
            return conn

    def _close_connection(self, conn: Connection) -> None:
        with self._lock:
            conn.closed_at = time.monotonic()
            self._open_sockets.pop(conn.id, None)

    def _record(self, conn: Connection, method: str, path: str, headers: dict[str, str],
                body: bytes) -> Request:
        with self.arrived:
            conn.requests += 1
            request = Request(next(self._seq), conn.id, conn.client, method, path, headers,
                              len(body), body, time.monotonic())
            self._requests.append(request)
            self._bodies.append(request)
            while len(self._bodies) > self._keep_bodies:
                self._bodies.popleft().body = None
            self.arrived.notify_all()
            return request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultServer
    # An idle keep-alive connection is closed after this long; a client must cope.
    timeout = 60

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                self.server.tls_failures.append(str(exc))
                raise
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connection_record = self.server._open_connection(self.connection,
                                                              self.client_address)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server._close_connection(self.connection_record)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    # ---- one request --------------------------------------------------------------

    def _serve(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = self._read_body(headers)
        except (OSError, ValueError):
            self.close_connection = True
            request = self.server._record(self.connection_record, self.command, self.path,
                                          headers, b"")
            request.outcome = "unreadable"
            return
        request = self.server._record(self.connection_record, self.command, self.path,
                                      headers, body)
        try:
            self._run(request, body)
            if request.outcome == "pending":
                request.outcome = "answered"
        except _Stop as stop:
            request.outcome = str(stop) or "server_stopped"
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            request.outcome = "client_closed"
            self.close_connection = True
        finally:
            request.finished_at = time.monotonic()

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line:
                    raise ValueError("connection closed inside a chunked body")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(headers.get("content-length", "0") or 0)
        return self.rfile.read(length) if length else b""

    def _run(self, request: Request, body: bytes) -> None:
        parts = [p for p in request.path.split("?")[0].split("/") if p]
        if tuple(parts[-2:]) != API_SUFFIX:
            self._answer(request, 404, {"status": "error", "error": "no route"})
            return
        directives = parts[:-2]
        i = 0
        while i < len(directives):
            name = directives[i]
            arg = directives[i + 1] if i + 1 < len(directives) else None
            if name == "slow":
                self._sleep(request, float(arg))
                i += 2
                continue
            if name == "key":
                if request.headers.get(KEY_HEADER) != arg:
                    self._answer(request, 401, {"status": "error",
                                                "error": "missing or wrong x-functions-key"})
                    return
                i += 2
                continue
            if name == "status":
                code = int(arg)
                self._answer(request, code, {"status": "error", "error": f"status {code}"})
                return
            if name == "ok-fast":
                self._send_bytes(request, 200, _canned_verdict(body))
                return
            if name == "ok":
                self._answer_verdict(request, body)
                return
            if name == "malformed":
                self._send_bytes(request, 200, b'{"status": "ok", "verdict": "dri')
                return
            if name == "notobject":
                self._send_bytes(request, 200, b'["status", "ok", "verdict", "ok"]')
                return
            if name == "noverdict":
                self._send_bytes(request, 200, b'{"hello": "world"}')
                return
            if name in ("huge", "huge-chunked"):
                self._stream(request, int(arg), chunked=name == "huge-chunked")
                return
            if name == "close":
                request.outcome = "closed_by_server"
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if name == "drip":
                self._drip(request, float(arg))
                return
            if name == "truncated":
                self._send_head(request, 200, 1000)
                self.wfile.write(b'{"status":"ok","verdict":"ok","pad":"')
                self.wfile.flush()
                request.outcome = "closed_by_server"
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if name == "nested":
                depth = int(arg)
                self._send_bytes(request, 200, b'{"status":"ok","verdict":"ok","x":'
                                 + b"[" * depth + b"]" * depth + b"}")
                return
            if name in _ODD_BODIES:
                self._send_bytes(request, 200, _ODD_BODIES[name])
                return
            if name == "redirect":
                self.send_response(307)
                self.send_header("Location", self.server.url("ok"))
                self.send_header("Content-Length", "0")
                self.end_headers()
                request.status = 307
                return
            self._answer(request, 404, {"status": "error", "error": f"unknown mode {name}"})
            return
        self._answer_verdict(request, body)

    # ---- answers ------------------------------------------------------------------

    def _answer_verdict(self, request: Request, body: bytes) -> None:
        try:
            verdict = analyze_envelope(body)
        except WireFormatError as exc:
            self._answer(request, 400, {"status": "error", "error": f"malformed envelope: {exc}"})
            return
        self._answer(request, 200, verdict)

    def _answer(self, request: Request, status: int, payload: object) -> None:
        self._send_bytes(request, status,
                         json.dumps(payload, allow_nan=False, separators=(",", ":")).encode())

    def _send_bytes(self, request: Request, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        # Head and body in one write: two small writes would meet Nagle's algorithm and
        # the client's delayed ACK (40 ms per answer).
        self._headers_buffer.append(b"\r\n" + payload)
        self.flush_headers()
        request.status = status
        request.bytes_sent = len(payload)

    def _send_head(self, request: Request, status: int, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        request.status = status

    def _drip(self, request: Request, seconds: float) -> None:
        """A valid verdict sent one byte at a time over ``seconds``: never idle, never done."""
        payload = _canned_verdict(request.body or b"")
        self._send_head(request, 200, len(payload))
        pause = seconds / max(len(payload), 1)
        for i in range(len(payload)):
            if self.server.stopping.is_set():
                raise _Stop("server_stopped")
            self.wfile.write(payload[i:i + 1])
            self.wfile.flush()
            request.bytes_sent += 1
            time.sleep(pause)

    def _stream(self, request: Request, size: int, chunked: bool) -> None:
        """A 200 answer of ``size`` bytes: a JSON object padded with spaces-free filler."""
        head, tail = b'{"status":"ok","verdict":"ok","pad":"', b'"}'
        filler = max(0, size - len(head) - len(tail))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(head) + filler + len(tail)))
        self.end_headers()
        request.status = 200
        block = b"x" * _STREAM_CHUNK
        pieces = itertools.chain([head], _blocks(block, filler), [tail])
        for piece in pieces:
            if self.server.stopping.is_set():
                raise _Stop("server_stopped")
            data = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
            self.wfile.write(data)
            request.bytes_sent += len(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _sleep(self, request: Request, seconds: float) -> None:
        """Wait, but end early if the server stops or the client closes its end."""
        deadline = time.monotonic() + seconds
        sock = self.connection
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.server.stopping.is_set():
                raise _Stop("server_stopped")
            readable, _, _ = select.select([sock], [], [], min(left, 0.02))
            if readable:
                try:
                    peek = sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    peek = b""
                if not peek:
                    request.extra["client_closed_at"] = time.monotonic()
                    raise _Stop("client_closed")
                time.sleep(min(left, 0.02))  # pipelined bytes: keep waiting


def _canned_verdict(body: bytes) -> bytes:
    """A valid "ok" verdict for the envelope's columns, read without decoding any digest.

    Only the envelope framing (version 1 or 2) and the digest headers' counts are read
    (a category table's NULLs), so the answer
    takes microseconds; a body that is not an envelope gets the canned answer with no
    columns.
    """
    verdict = dict(CANNED_VERDICT, columns={})
    try:
        meta_len = struct.unpack_from("<I", body, 8)[0]
        metadata = json.loads(body[12:12 + meta_len])
        verdict["request_id"] = metadata.get("request_id")
        offset = 12 + meta_len
        (entries,) = struct.unpack_from("<I", body, offset)
        offset += 4
        version = body[4]
        for _ in range(entries):
            (name_len,) = struct.unpack_from("<H", body, offset)
            name = body[offset + 2:offset + 2 + name_len].decode()
            offset += 2 + name_len
            role, kind = body[offset], body[offset + 1] if version == 2 else 0
            offset += 2 if version == 2 else 1
            (digest_len,) = struct.unpack_from("<I", body, offset)
            offset += 4
            if kind == 0:
                counts = dict(zip(_COUNT_FIELDS, _digest_counts(body, offset), strict=True))
            else:  # a category table: its NULLs
                counts = {"null_count": struct.unpack_from("<Q", body, offset + 8)[0]}
            offset += digest_len
            column = verdict["columns"].setdefault(name, {"verdict": "ok", "reasons": []})
            column["baseline" if role else "current"] = counts
    except (struct.error, ValueError, UnicodeDecodeError):
        verdict["columns"] = {}
    return json.dumps(verdict, separators=(",", ":")).encode()


def _digest_counts(body: bytes, offset: int) -> list[int]:
    """The five counts of the digest at offset: u64s in versions 1 and 2, the varints after
    the 48 fixed bytes in version 3 (docs/wire-format.md §1)."""
    if body[offset + 4] != 3:
        return list(struct.unpack_from("<5Q", body, offset + 8))
    counts, pos = [], offset + 48
    for _ in range(5):
        value = shift = 0
        while True:
            byte = body[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        counts.append(value)
    return counts


def _blocks(block: bytes, total: int) -> Iterator[bytes]:
    while total > 0:
        piece = block if total >= len(block) else block[:total]
        total -= len(piece)
        yield piece


@contextmanager
def fault_server(keep_bodies: int = 64) -> Iterator[FaultServer]:
    """Run a :class:`FaultServer` on a free loopback port for the duration of the block."""
    server = FaultServer(keep_bodies=keep_bodies)
    with server:
        yield server


def self_signed_tls(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1 (no client
    trusts it), made with the openssl command-line tool."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: every connect is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: new connects hang (for connect timeouts).

    The listener never accepts; its backlog is filled by a few local connections, after
    which the kernel drops further SYNs and a client waits until its own connect timeout.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        time.sleep(0.05)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


if __name__ == "__main__":  # serve by hand: python -m tests.fault_server
    with fault_server() as running:
        print(f"fault server on {running.base_url}; e.g. {running.url('slow/2')}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
