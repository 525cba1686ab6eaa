"""A small drift comparison on generated data: baseline vs current window per feature.

``make demo-core`` runs it (``python -m demo.digests``). Each feature is summarised into
t-digests, shipped through the wire format as one envelope (as the PostgreSQL extension
does), analysed, and compared with the exact raw-sample statistics.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from stat_guard.envelope_verdict import analyze_envelope, compare_samples, evaluate
from stat_guard.tdigest import TDigest
from stat_guard.wire import ColumnDigests, Envelope, encode_envelope

_FEATURES = {
    # name: (baseline generator, current generator, injected drift)
    "age": (lambda r, n: r.normal(40, 12, n), lambda r, n: r.normal(40, 12, n), "none"),
    "income": (lambda r, n: r.lognormal(10, 0.6, n), lambda r, n: r.lognormal(10.35, 0.6, n),
               "income × 1.42"),
    "session_seconds": (lambda r, n: r.exponential(90, n), lambda r, n: r.exponential(92, n),
                        "none (mean +2%)"),
    "basket_items": (lambda r, n: r.poisson(3, n).astype(float),
                     lambda r, n: r.poisson(4.2, n).astype(float), "mean 3 → 4.2"),
    "score": (lambda r, n: r.beta(2, 5, n), lambda r, n: r.beta(2, 5, n), "none"),
    "latency_ms": (lambda r, n: r.gamma(2, 20, n),
                   lambda r, n: np.where(r.random(n) < 0.25, r.gamma(2, 80, n), r.gamma(2, 20, n)),
                   "25% slow tail"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000, help="rows per window")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    print(f"generating {len(_FEATURES)} features, {args.rows:,} baseline and current rows each")
    started = time.perf_counter()
    baseline = {name: spec[0](rng, args.rows) for name, spec in _FEATURES.items()}
    current = {name: spec[1](rng, args.rows) for name, spec in _FEATURES.items()}

    columns = {name: ColumnDigests(current=TDigest.from_values(current[name]),
                                   baseline=TDigest.from_values(baseline[name]))
               for name in _FEATURES}
    body = encode_envelope(Envelope({"source": "demo.features", "request_id": "demo"}, columns))
    built = time.perf_counter()
    verdict = analyze_envelope(body)
    exact = evaluate({name: compare_samples(baseline[name], current[name]) for name in _FEATURES})
    print(f"digests built in {built - started:.2f} s; envelope {len(body):,} bytes for "
          f"{2 * args.rows * len(_FEATURES):,} values; analysis "
          f"{sum(verdict['timings_ms'].values()):.1f} ms\n")

    header = (f"{'feature':<16} {'injected drift':<16} {'PSI':>7} {'KS':>7} {'KS p':>9} "
              f"{'KL':>7} {'JS':>6} {'W/σ':>6} {'verdict':<10} {'exact PSI':>9} {'exact':<8}")
    print(header)
    print("-" * len(header))
    for name, spec in _FEATURES.items():
        col = verdict["columns"][name]
        ref = exact.features[name]
        print(f"{name:<16} {spec[2]:<16} {col['psi']:7.4f} {col['ks_statistic']:7.4f} "
              f"{col['ks_pvalue']:9.2e} {col['kl_divergence']:7.4f} {col['js_distance']:6.3f} "
              f"{col['wasserstein_normalized']:6.3f} {col['verdict']:<10} "
              f"{ref.comparison.psi.statistic:9.4f} {ref.decision.verdict.value:<8}")
    print(f"\nmodel verdict (from digests): {verdict['verdict']}; "
          f"from exact raw samples: {exact.verdict.value}")
    agree = all(verdict["columns"][n]["verdict"] == exact.features[n].decision.verdict.value
                for n in _FEATURES)
    print("digest and exact verdicts agree on every feature" if agree
          else "digest and exact verdicts differ on some feature")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
