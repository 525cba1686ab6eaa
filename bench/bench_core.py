"""Core library benchmark: digest build rate beside fastdigest, and envelope analysis time.

Prints what it measured, side by side in one run, and ends with one JSON line.
Run: ``make bench-core`` (or ``.venv/bin/python bench/bench_core.py``).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stat_guard.envelope_verdict import analyze_envelope
from stat_guard.tdigest import DEFAULT_COMPRESSION, TDigest
from stat_guard.wire import ColumnDigests, Envelope, decode_envelope, encode_envelope

REPEATS = 5


def _best_and_median(func, repeats: int = REPEATS) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def bench_build(results: dict) -> None:
    try:
        from fastdigest import TDigest as FastDigest
    except ImportError:  # pragma: no cover - dev extra not installed
        FastDigest = None
    rng = np.random.default_rng(1)
    values = rng.lognormal(0.0, 1.0, 10_000_000)
    print(f"{'values':>12} {'ours (s)':>10} {'ours Mvals/s':>13} {'fastdigest (s)':>15} "
          f"{'fastdigest Mvals/s':>19} {'ratio':>6}")
    for n in (1_000_000, 10_000_000):
        chunk = values[:n]
        repeats = REPEATS if n <= 1_000_000 else 3
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(repeats):  # interleaved, so machine noise hits both alike
            started = time.perf_counter()
            TDigest.from_values(chunk)
            ours.append(time.perf_counter() - started)
            if FastDigest is not None:
                started = time.perf_counter()
                FastDigest.from_values(chunk)
                theirs.append(time.perf_counter() - started)
        ours_s = statistics.median(ours)
        theirs_s = statistics.median(theirs) if theirs else float("nan")
        print(f"{n:>12,} {ours_s:>10.3f} {n / ours_s / 1e6:>13.1f} {theirs_s:>15.3f} "
              f"{n / theirs_s / 1e6:>19.1f} {ours_s / theirs_s:>6.2f}")
        results[f"build_{n}"] = {"ours_s": ours_s, "ours_mvalues_per_s": n / ours_s / 1e6,
                                 "fastdigest_s": theirs_s,
                                 "fastdigest_mvalues_per_s": n / theirs_s / 1e6,
                                 "ours_over_fastdigest": ours_s / theirs_s}
    digest = TDigest.from_values(values)
    results["digest_centroids_1e7"] = int(digest.means.size)
    if FastDigest is not None:
        results["fastdigest_centroids_1e7"] = FastDigest.from_values(values).n_centroids


def bench_envelope(results: dict) -> None:
    rng = np.random.default_rng(2)
    columns = {}
    for i in range(50):
        baseline = TDigest.from_values(rng.normal(0, 1, 100_000))
        current = TDigest.from_values(rng.normal(0.02 * (i % 10), 1, 10_000))
        columns[f"feature_{i:02d}"] = ColumnDigests(current=current, baseline=baseline)
    body = encode_envelope(Envelope({"request_id": "bench"}, columns))
    decode_best, decode_median = _best_and_median(lambda: decode_envelope(body), 10)
    full_best, full_median = _best_and_median(lambda: analyze_envelope(body), 10)
    verdict = analyze_envelope(body)["verdict"]
    print(f"\n50-column envelope ({len(body):,} bytes, compression {DEFAULT_COMPRESSION}):")
    print(f"  decode only            median {decode_median * 1e3:7.2f} ms (best "
          f"{decode_best * 1e3:.2f})")
    print(f"  decode + statistics    median {full_median * 1e3:7.2f} ms (best "
          f"{full_best * 1e3:.2f}); verdict {verdict}")
    results["envelope_50"] = {"bytes": len(body), "decode_ms": decode_median * 1e3,
                              "analyze_ms": full_median * 1e3,
                              "per_column_ms": full_median * 1e3 / 50}


def main() -> None:
    results: dict = {"compression": DEFAULT_COMPRESSION}
    print("t-digest build, lognormal values (median of interleaved runs)")
    bench_build(results)
    bench_envelope(results)
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
