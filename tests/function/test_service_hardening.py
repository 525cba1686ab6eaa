"""The verdict service under hostile or heavy input, served by a real uvicorn process:
malformed metadata, slow clients, and a large analysis beside health checks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stat_guard.tdigest import TDigest
from stat_guard.wire import ColumnDigests, Envelope, encode_envelope
from tests.http_server import ROOT, verdict_service
from tests.local import free_port, wait_for

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("hardening") / "service.log"
    env = {"STAT_GUARD_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
           "STAT_GUARD_BODY_TIMEOUT": str(BODY_TIMEOUT),
           "STAT_GUARD_ANALYSIS_PROCESSES": "1"}
    with verdict_service(env, log_path) as url:
        yield url


@pytest.fixture(scope="module")
def digests() -> tuple[TDigest, TDigest]:
    rng = np.random.default_rng(7)
    return (TDigest.from_values(rng.normal(0, 1, 5_000)),
            TDigest.from_values(rng.normal(0, 1, 20_000)))


def _body(metadata_json: bytes, digests: tuple[TDigest, TDigest], columns: int = 1) -> bytes:
    """A valid envelope whose metadata bytes are replaced by ``metadata_json``."""
    current, baseline = digests
    valid = encode_envelope(Envelope({}, {f"c{i}": ColumnDigests(current, baseline)
                                          for i in range(columns)}))
    header, rest = valid[:12], valid[12 + 2:]  # the valid metadata is "{}"
    assert valid[12:14] == b"{}"
    return header[:8] + len(metadata_json).to_bytes(4, "little") + metadata_json + rest


def _post(url: str, body: bytes, timeout: float = 30) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"{url}/api/drift", data=body, method="POST",
                                     headers={"content-type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read()


def _assert_client_error_json(status: int, content_type: str, raw: bytes) -> dict:
    assert status < 500, (status, raw[:300])
    assert content_type == "application/json", (status, content_type, raw[:300])
    return json.loads(raw)


@pytest.mark.parametrize("metadata", [
    b'{"request_id": 1e999}',
    b'{"request_id": -1e999}',
    b'{"x": [1e400]}',
    b'{"x": ' + b"7" * 5000 + b"}",
    b'{"request_id": ' + b"1" * 4301 + b"}",
    b'{"x": ' + b"[" * 30000 + b"]" * 30000 + b"}",
    b'{"request_id": NaN}',
    b'{"request_id": {"a": 1}}',
    b'{"request_id": 5}',
])
def test_malformed_metadata_is_a_400_with_a_json_body(service, digests, metadata):
    status, content_type, raw = _post(service, _body(metadata, digests))
    result = _assert_client_error_json(status, content_type, raw)
    assert status == 400 and "malformed envelope" in result["error"], result


def test_a_string_request_id_is_still_echoed(service, digests):
    status, _, raw = _post(service, _body(b'{"request_id":"r-1","n":1e300}',
                                                     digests))
    assert status == 200 and json.loads(raw)["request_id"] == "r-1"


class _Raw(str):
    """JSON text written as it is: numbers no Python value round-trips."""


_huge_numbers = st.builds(
    lambda sign, digits, exponent: _Raw(sign + "9" * digits + exponent),
    st.sampled_from(["", "-"]), st.integers(min_value=1, max_value=6000),
    st.sampled_from(["", ".5", "e308", "e999", "E-999", "e+400"]))
_scalars = (st.none() | st.booleans() | st.integers() | _huge_numbers
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
_json_values = st.recursive(_scalars, lambda children: st.lists(children, max_size=4)
                            | st.dictionaries(st.text(max_size=8), children, max_size=4),
                            max_leaves=20)
_known_keys = st.sampled_from(["request_id", "source", "time_column", "window_start",
                               "window_end", "baseline", "baselines", "compression",
                               "max_categories", "client"])


def _encode_json(value) -> str:
    """JSON text that may hold what strict JSON cannot: NaN, Infinity, 1e999."""
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "1e999" if value > 0 else "-1e999"
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(_encode_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + _encode_json(v)
                              for k, v in value.items()) + "}"
    return json.dumps(value)


@st.composite
def _metadata(draw) -> bytes:
    shape = draw(st.sampled_from(["object", "known", "any", "deep"]))
    if shape == "any":
        return _encode_json(draw(_json_values)).encode()
    if shape == "deep":
        depth = draw(st.integers(min_value=1, max_value=20_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return ('{"d":' + opener * depth + "0" + closer * depth + "}").encode()
    value = draw(st.dictionaries(st.text(max_size=8), _json_values, max_size=5))
    if shape == "known":
        value.update(draw(st.dictionaries(_known_keys, _json_values, min_size=1,
                                          max_size=3)))
    return _encode_json(value).encode()[:60_000]


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(metadata=_metadata())
def test_any_metadata_is_answered_below_500_with_json(service, digests, metadata):
    status, content_type, raw = _post(service, _body(metadata, digests))
    result = _assert_client_error_json(status, content_type, raw)
    if status == 200:
        assert result["request_id"] is None or isinstance(result["request_id"], str)


# ---- slow clients ------------------------------------------------------------------


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received, time.monotonic() - started


def _health_is_answered(url: str) -> None:
    with urllib.request.urlopen(f"{url}/api/health", timeout=5) as response:
        assert response.status == 200 and json.loads(response.read())["status"] == "ok"


def test_a_short_body_is_answered_408_and_closed(service):
    sock = _connect(service)
    with sock:
        sock.sendall(b"POST /api/drift HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n"
                     b"content-type: application/octet-stream\r\n\r\n" + b"PSGE\x01\x00" * 2)
        _health_is_answered(service)  # another connection is served meanwhile
        received, elapsed = _read_until_closed(sock, 10)
    assert elapsed < BODY_TIMEOUT + 2, elapsed
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"application/json" in head and json.loads(body)["status"] == "error"


def test_a_dripping_header_is_closed(service):
    sock = _connect(service)
    stop = threading.Event()

    def drip() -> None:
        for byte in b"POST /api/drift HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 100:
            if stop.wait(0.2):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    dripper = threading.Thread(target=drip, daemon=True)
    with sock:
        started = time.monotonic()
        dripper.start()
        _health_is_answered(service)
        received, _ = _read_until_closed(sock, 10)
        elapsed = time.monotonic() - started
        stop.set()
    dripper.join(5)
    assert elapsed < HEADER_TIMEOUT + 2, elapsed
    assert b"200" not in received


def test_a_dripping_body_is_closed(service):
    sock = _connect(service)
    stop = threading.Event()

    def drip() -> None:
        for _ in range(100):
            if stop.wait(0.2):
                return
            try:
                sock.send(b"x")
            except OSError:
                return

    with sock:
        sock.sendall(b"POST /api/drift HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n")
        dripper = threading.Thread(target=drip, daemon=True)
        started = time.monotonic()
        dripper.start()
        received, _ = _read_until_closed(sock, 10)
        elapsed = time.monotonic() - started
        stop.set()
    dripper.join(5)
    assert elapsed < BODY_TIMEOUT + 2, elapsed
    assert received.startswith(b"HTTP/1.1 408"), received[:200]


def test_an_idle_connection_is_closed(service):
    with _connect(service) as sock:
        _health_is_answered(service)
        received, elapsed = _read_until_closed(sock, 10)
    assert received == b"" and elapsed < HEADER_TIMEOUT + 2, elapsed


def test_connections_over_the_cap_are_refused_with_503(tmp_path):
    env = {"STAT_GUARD_MAX_CONNECTIONS": "4", "STAT_GUARD_HEADER_TIMEOUT": "30"}
    with verdict_service(env, tmp_path / "service.log") as url:
        idle = [_connect(url) for _ in range(4)]
        try:
            time.sleep(0.3)
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(f"{url}/api/health", timeout=5)
            assert caught.value.code == 503
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.3)
        _health_is_answered(url)


# ---- a large analysis beside health checks ------------------------------------------


def test_health_answers_while_a_large_envelope_is_analysed(service, digests):
    current, baseline = digests
    columns = {f"feature_{i}": ColumnDigests(current, baseline) for i in range(1024)}
    body = encode_envelope(Envelope({"request_id": "large"}, columns))
    outcome: dict = {}

    def analyse() -> None:
        outcome["answer"] = _post(service, body, timeout=120)

    worker = threading.Thread(target=analyse)
    worker.start()
    time.sleep(0.3)  # the analysis is under way
    latencies = []
    while worker.is_alive() and len(latencies) < 20:
        started = time.monotonic()
        _health_is_answered(service)
        latencies.append(time.monotonic() - started)
        time.sleep(0.05)
    worker.join(120)
    status, _, raw = outcome["answer"]
    assert status == 200 and len(json.loads(raw)["columns"]) == 1024
    assert len(latencies) >= 3, "the analysis ended before health was probed"
    assert max(latencies) < 0.5, latencies


# ---- the analysis processes end with the service ---------------------------------------


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_analysis_processes_end_with_the_service(stop):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "stat_guard.service", "--port", str(port)], cwd=ROOT,
        env={**os.environ, "STAT_GUARD_ANALYSIS_PROCESSES": "2"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(port), 30, "the service")  # after the pool's start
        _health_is_answered(f"http://127.0.0.1:{port}")
        children = _children(process.pid)
        assert len(children) >= 2  # the analysis processes (and spawn's resource tracker)
        process.send_signal(stop)
        process.wait(15)
        wait_for(lambda: not any(_alive(c) for c in children), 10,
                 "the analysis processes to end")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
