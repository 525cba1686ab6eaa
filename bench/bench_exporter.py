"""Scrape time and size of the metrics exporter at 100 and 1,000 models × 50 features.

A private ``redis-server`` is filled the way the fleet writes it (each model's scheduled
run published to the stream and stored in the reaction task's latest hash:
tests/observability/fleet_fill.py), then ``python -m workers.exporter`` is scraped over
HTTP:

- cold: the first scrape (every record parsed and formatted);
- warm: a later scrape with no new record (the formatted blocks are reused);
- moved: a scrape after every model published a new run (everything formatted again);
- 3 concurrent: three simultaneous scrapes after every model moved again (their wall
  times and the builds they cost);
- gzip: the size Prometheus receives (it asks for gzip).

Sizes are of the uncompressed text unless marked gzip; RSS is the exporter's peak
(VmHWM). With ``--all-series`` the opt-in per-feature series are exported too
(exporter.feature_series: [all]). Prints its figures, then one JSON line. Usage:

    python bench/bench_exporter.py [--models 100 1000] [--features 50] [--all-series]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REDIS_DB = 13


def _get(url: str, gzip: bool = False) -> tuple[float, bytes]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip else {})
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as answer:
        body = answer.read()
    return time.perf_counter() - began, body


def _gauge(body: bytes, name: str) -> float | None:
    """The unlabelled sample ``name`` (None when absent: an exporter without it)."""
    match = re.search(rf"^{name} (\S+)$".encode(), body, flags=re.M)
    return float(match.group(1)) if match else None


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _start_exporter(config_path: Path, port: int, all_series: bool) -> subprocess.Popen:
    argv = [sys.executable, "-m", "workers.exporter", "--port", str(port)]
    if all_series:
        argv += ["--feature-series", "all"]
    env = {**os.environ, "STAT_GUARD_CONFIG": str(config_path),
           "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                return process  # (an empty Redis: this first build is nearly free)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the exporter did not start") from None
            time.sleep(0.1)


def measure(redis_client: Any, config: Any, config_path: Path, models: int, features: int,
            all_series: bool) -> dict[str, Any]:
    from tests.local import free_port
    from tests.observability.fleet_fill import fill_fleet

    redis_client.flushdb()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    process = _start_exporter(config_path, port, all_series)
    try:
        began = time.perf_counter()
        fill_fleet(redis_client, config, models, features)
        fill_s = time.perf_counter() - began
        time.sleep(0.2)
        cold_s, body = _get(url)
        samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        time.sleep(0.2)
        warm_s, warm = _get(url)
        time.sleep(0.2)
        gzip_s, zipped = _get(url, gzip=True)
        fill_fleet(redis_client, config, models, features, run=1)
        time.sleep(0.2)
        moved_s, moved = _get(url)
        time.sleep(0.2)
        results: list[tuple[float, bytes]] = [(0.0, b"")] * 3
        builds_before = _gauge(_get(url)[1], "stat_guard_exporter_builds_total")
        fill_fleet(redis_client, config, models, features, run=2)  # a full build to share
        time.sleep(0.2)

        def scrape(i: int) -> None:
            results[i] = _get(url)

        threads = [threading.Thread(target=scrape, args=(i,)) for i in range(3)]
        concurrent_began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        concurrent_wall = time.perf_counter() - concurrent_began
        counts = [_gauge(b, "stat_guard_exporter_builds_total") for _t, b in results]
        builds_after = None if None in counts else max(c for c in counts if c is not None)
        figures = {
            "models": models, "features": features, "all_series": all_series,
            "fill_s": round(fill_s, 2), "samples": samples,
            "cold_s": round(cold_s, 3), "warm_s": round(warm_s, 3),
            "moved_s": round(moved_s, 3), "gzip_warm_s": round(gzip_s, 3),
            "bytes": len(body), "gzip_bytes": len(zipped),
            "redis_s_cold": _gauge(body, "stat_guard_exporter_scrape_duration_seconds"),
            "build_s_cold": _gauge(body, "stat_guard_exporter_build_duration_seconds"),
            "build_s_warm": _gauge(warm, "stat_guard_exporter_build_duration_seconds"),
            "build_s_moved": _gauge(moved, "stat_guard_exporter_build_duration_seconds"),
            "concurrent_s": [round(t, 3) for t, _b in results],
            "concurrent_wall_s": round(concurrent_wall, 3),
            "concurrent_builds": (None if builds_after is None or builds_before is None
                                  else int(builds_after - builds_before)),
            "peak_rss_mb": round(_peak_rss_mb(process.pid), 1),
        }
    finally:
        process.terminate()
        process.wait(timeout=10)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--all-series", action="store_true",
                        help="also export every opt-in per-feature series")
    args = parser.parse_args()

    from tests.servers import RedisServer
    from workers.config import load_config

    server = RedisServer.start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-exporter-"))
    config_path = workdir / "App.yaml"
    config_path.write_text(f"redis: {{port: {server.port}, db: {REDIS_DB}}}\n")
    config = load_config(config_path, environ={})
    client = server.client(REDIS_DB)
    rows = []
    try:
        print(f"exporter benchmark: {os.cpu_count()} cores, load "
              f"{os.getloadavg()[0]:.2f}, feature series: "
              f"{'all' if args.all_series else 'default'}")
        for models in args.models:
            row = measure(client, config, config_path, models, args.features,
                          args.all_series)
            rows.append(row)
            print(f"{models:>5} models × {args.features} features: {row['samples']:,} "
                  f"samples, {row['bytes'] / 1e6:.2f} MB (gzip {row['gzip_bytes'] / 1e6:.2f} "
                  f"MB); scrape cold {row['cold_s']:.2f} s, warm {row['warm_s']:.2f} s, "
                  f"after every model moved {row['moved_s']:.2f} s; 3 concurrent: "
                  f"{', '.join(f'{t:.2f}' for t in row['concurrent_s'])} s, "
                  f"{row['concurrent_builds']} build(s); peak RSS {row['peak_rss_mb']:.0f} MB")
            print(f"      cold build as the exporter reports it: Redis "
                  f"{_seconds(row['redis_s_cold'])}, build {_seconds(row['build_s_cold'])}")
    finally:
        client.close()
        server.stop()
    print(json.dumps({"bench": "exporter", "cores": os.cpu_count(), "results": rows}))


if __name__ == "__main__":
    main()
