"""Throughput and latency of the verdict service (``python -m stat_guard.service``).

A real uvicorn process on a free loopback port; clients are threads of this process, each
with its own kept-alive HTTP/1.1 connection, posting the same 3-column envelope (numeric,
10,000 current and 50,000 baseline values per column) for ``--seconds`` at each
concurrency. Meanwhile one more connection asks ``/api/health`` every 50 ms: its latency
is what a load balancer's probe sees under that load. The clients share the machine with
the server, so the figures are a floor for a separate client. The last line is one JSON
object.

    python bench/bench_service.py [--workers 1 2] [--concurrency 1 8 32] [--seconds 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stat_guard.tdigest import TDigest  # noqa: E402
from stat_guard.wire import ColumnDigests, Envelope, encode_envelope  # noqa: E402


def _envelope(columns: int = 3) -> bytes:
    rng = np.random.default_rng(11)
    pairs = {f"feature_{i}": ColumnDigests(
        current=TDigest.from_values(rng.normal(0.1 * i, 1, 10_000)),
        baseline=TDigest.from_values(rng.normal(0, 1, 50_000))) for i in range(columns)}
    return encode_envelope(Envelope({"request_id": "bench"}, pairs))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _client(port: int, body: bytes, stop: threading.Event, latencies: list[float],
            errors: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"content-type": "application/octet-stream"}
    while not stop.is_set():
        started = time.perf_counter()
        try:
            conn.request("POST", "/api/drift", body, headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            errors.append(type(exc).__name__)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        if response.status != 200:
            errors.append(str(response.status))
        else:
            latencies.append(time.perf_counter() - started)
    conn.close()


def _prober(port: int, stop: threading.Event, latencies: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.wait(0.05):
        started = time.perf_counter()
        conn.request("GET", "/api/health")
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
    conn.close()


def _level(port: int, body: bytes, concurrency: int, seconds: float) -> dict:
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    health: list[float] = []
    threads = [threading.Thread(target=_client, args=(port, body, stop, latencies[i], errors))
               for i in range(concurrency)]
    threads.append(threading.Thread(target=_prober, args=(port, stop, health)))
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    done = [x for per_client in latencies for x in per_client]
    return {"concurrency": concurrency, "requests": len(done), "errors": len(errors),
            "requests_per_s": len(done) / seconds,
            "p50_ms": _percentile(done, 0.5) * 1e3, "p99_ms": _percentile(done, 0.99) * 1e3,
            "health_p50_ms": _percentile(health, 0.5) * 1e3,
            "health_p99_ms": _percentile(health, 0.99) * 1e3,
            "health_max_ms": max(health, default=float("nan")) * 1e3}


def main() -> None:
    from tests.http_server import verdict_service

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    body = _envelope()
    cores = len(os.sched_getaffinity(0))
    print(f"verdict service, 3-column envelope ({len(body):,} bytes), {cores} cores, "
          f"{args.seconds:g} s per level; clients on the same machine")
    results: dict = {"envelope_bytes": len(body), "cores": cores, "seconds": args.seconds,
                     "runs": []}
    for workers in args.workers:
        with verdict_service({"STAT_GUARD_WORKERS": str(workers)}) as url:
            port = int(url.rsplit(":", 1)[1])
            _level(port, body, 1, 1.0)  # warm every worker up
            print(f"\nuvicorn workers: {workers}")
            print(f"  {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
                  f"   health p50 / p99 / max ms")
            for concurrency in args.concurrency:
                row = _level(port, body, concurrency, args.seconds) | {"workers": workers}
                results["runs"].append(row)
                print(f"  {concurrency:7d} {row['requests_per_s']:8.1f} {row['p50_ms']:8.1f} "
                      f"{row['p99_ms']:8.1f} {row['errors']:6d}   {row['health_p50_ms']:.1f} / "
                      f"{row['health_p99_ms']:.1f} / {row['health_max_ms']:.1f}", flush=True)
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
