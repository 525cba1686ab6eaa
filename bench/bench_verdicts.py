"""False alarms and detection of the verdict rule on both paths, against Evidently's
defaults and the former rule, on the same windows.

Window pairs of three families (tests/calibration.py: normal, Poisson(2) counts, ten
categories with unequal shares; what a shift of s σ means for each is stated there), at
current windows of 30 to 1,000,000 values with historical windows 4 times as long, shifts
0 (every flag a false alarm), 0.1σ, 0.5σ and 1σ. Every pair is judged by

- ours, digest n:n: the verdict service's path (t-digests built as the extension builds
  them, ``compare_digests`` and ``evaluate``; categories as counted category tables), the
  current window against the last n values of the historical one;
- ours, digest 4n:n: the same on the whole historical window;
- ours, scheduled 4n:n: ``run_model_drift`` over a DuckDB file whose model holds the pairs
  as features (fine and PSI bins counted in SQL, categories from ``histogram()``);
- the former rule, 4n:n: PSI >= 0.1, or KS p < 0.05 with a statistic above 0.1, with no
  significance test of PSI (figures of the digest path);
- Evidently 0.7's defaults, 4n:n: its own choice of test per column and its own decision
  (``get_stattest`` and the test's ``drifted``, what ``DataDriftPreset``'s ``ValueDrift``
  calls; checked against a full ``Report`` first): K-S p < 0.05 for a numeric column
  with a reference of at most 1,000 values, normalised Wasserstein distance >= 0.1 above;
  chi-square p < 0.05 for categories up to 1,000 reference values, Jensen–Shannon
  distance >= 0.1 above (and chi-square / Jensen–Shannon for numeric columns of at most 5
  distinct values).

A pair is flagged when the verdict is warning or drift (Evidently: drift detected).
Rates carry 95% Clopper–Pearson intervals. Needs the bench extra (``make setup-bench``).
Usage:

    .venv/bin/python bench/bench_verdicts.py [--sizes 30 50 ...] [--scale 0.1] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.calibration import (  # noqa: E402  (needs ROOT on sys.path)
    CATEGORY_NAMES,
    FAMILIES,
    FLAGGED,
    HISTORICAL_RATIO,
    clopper_pearson,
    draw,
    score_digest_pair,
    score_scheduled_pairs,
    write_calibration_model,
)

SIZES = (30, 50, 300, 1_000, 10_000, 100_000, 1_000_000)
SHIFTS = (0.0, 0.1, 0.5, 1.0)
# Pairs per family: (same distribution, each shift). Fewer where a pair is dear: at
# 1,000,000 values one pair of each family takes about 15 s on all five judges.
PAIRS = {30: (2000, 500), 50: (2000, 500), 300: (2000, 500), 1_000: (1000, 300),
         10_000: (1000, 200), 100_000: (200, 50), 1_000_000: (40, 10)}
METHODS = ("digest_equal", "digest", "scheduled", "former", "evidently")
LABELS = {"digest_equal": "ours, digest n:n", "digest": "ours, digest 4n:n",
          "scheduled": "ours, scheduled 4n:n", "former": "former rule 4n:n",
          "evidently": "Evidently 4n:n"}
# Values generated at once by a task (about 120 MB), and pairs per scheduled run.
TASK_VALUES = 15_000_000
TASK_PAIRS = 250
SEED = 20251206


# ---- the two rules we compare against -------------------------------------------------


def former_rule(psi: float, ks_statistic: float, ks_pvalue: float) -> bool:
    """The rule before significance tests: PSI >= 0.1 is at least a warning, and so is KS
    p < 0.05 with a statistic above 0.1 (categories: PSI alone)."""
    return psi >= 0.1 or (ks_pvalue < 0.05 and ks_statistic > 0.1)


def _evidently_series(family: str, values: np.ndarray, as_text: bool = False):
    """A column as Evidently takes it: categories as a pandas categorical (fast at a
    million values) or, ``as_text``, as Python strings; both give the same decisions."""
    import pandas as pd

    if family == "categorical":
        if as_text:
            return pd.Series(np.array(CATEGORY_NAMES, dtype=object)[values])
        return pd.Series(pd.Categorical.from_codes(values, CATEGORY_NAMES))
    return pd.Series(values)


def evidently_decision(family: str, reference: np.ndarray, current: np.ndarray
                       ) -> tuple[bool, str]:
    """Evidently's default test for the column and its drift decision, as its
    ``ValueDrift`` metric takes them (``get_one_column_drift``)."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    kind = ColumnType.Categorical if family == "categorical" else ColumnType.Numerical
    ref, cur = _evidently_series(family, reference), _evidently_series(family, current)
    test = get_stattest(ref, cur, kind, None)
    with warnings.catch_warnings():
        # Its chi-square divides by the reference's count of a category the reference
        # lacks (scipy warns; the p-value is 0: drift).
        warnings.simplefilter("ignore", RuntimeWarning)
        return bool(test(ref, cur, kind, None).drifted), test.name


def check_evidently_agrees() -> int:
    """Our call of Evidently's tests against a full Report(DataDriftPreset) with its
    per-column ValueDrift tests, on both sides of its 1,000-value switch, categories given
    to the Report as strings."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(SEED)
    checked = 0
    for size in (50, 300):
        reference, current, expected = {}, {}, {}
        for family in FAMILIES:
            for i in range(6):
                name = f"{family}_{i}"
                h = draw(family, HISTORICAL_RATIO * size, 0.0, rng)
                c = draw(family, size, 0.3 * i, rng)
                reference[name] = _evidently_series(family, h, as_text=True)
                current[name] = _evidently_series(family, c, as_text=True)
                expected[name] = evidently_decision(family, h, c)[0]
        definition = DataDefinition(
            numerical_columns=[n for n in reference if not n.startswith("categorical")],
            categorical_columns=[n for n in reference if n.startswith("categorical")])
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            current_data=Dataset.from_pandas(pd.DataFrame(current), data_definition=definition),
            reference_data=Dataset.from_pandas(pd.DataFrame(reference),
                                               data_definition=definition))
        found = {t["name"].removeprefix("Value Drift for column "): t["status"] == "FAIL"
                 for t in snapshot.dict()["tests"] if t["name"].startswith("Value Drift")}
        if found != expected:
            raise AssertionError(f"Evidently's Report disagrees: {found} vs {expected}")
        checked += len(found)
    return checked


# ---- one task: some pairs of every family at one size and shift --------------------


def measure(size: int, shift: float, pairs: int, seed: list[int], workdir: str) -> dict:
    rng = np.random.default_rng(seed)
    hits = {f: dict.fromkeys(METHODS, 0) for f in FAMILIES}
    psi = {f: {"equal": [], "ratio": []} for f in FAMILIES}
    evidently_tests = {f: Counter() for f in FAMILIES}
    windows = {}
    for family in FAMILIES:
        for i in range(pairs):
            historical = draw(family, HISTORICAL_RATIO * size, 0.0, rng)
            current = draw(family, size, shift, rng)
            windows[f"{family}_{i:04d}"] = (family, historical, current)
            equal = score_digest_pair(family, historical[-size:], current)
            ratio = score_digest_pair(family, historical, current)
            drifted, test = evidently_decision(family, historical, current)
            hits[family]["digest_equal"] += equal.flagged
            hits[family]["digest"] += ratio.flagged
            hits[family]["former"] += former_rule(ratio.psi, ratio.ks_statistic,
                                                  ratio.ks_pvalue)
            hits[family]["evidently"] += drifted
            evidently_tests[family][test] += 1
            psi[family]["equal"].append(equal.psi)
            psi[family]["ratio"].append(ratio.psi)
    path = os.path.join(workdir, f"verdicts_{os.getpid()}.duckdb")
    write_calibration_model(path, windows)
    del windows
    features = score_scheduled_pairs(path, run_id=f"bench-{size}-{shift}")
    os.remove(path)
    for name, feature in features.items():
        if feature.error:
            raise RuntimeError(f"{name}: {feature.error}")
        hits[feature.name.rsplit("_", 1)[0]]["scheduled"] += feature.verdict in FLAGGED
    return {"size": size, "shift": shift, "pairs": pairs, "hits": hits, "psi": psi,
            "evidently_tests": {f: dict(c) for f, c in evidently_tests.items()}}


def tasks(sizes: list[int], shifts: list[float], scale: float):
    """(size, shift, pairs, seed) for every task, the dearest first."""
    out = []
    for size in sizes:
        calm, shifted = PAIRS[size]
        per_task = max(1, min(TASK_PAIRS, TASK_VALUES // (len(FAMILIES) * 5 * size)))
        for shift in shifts:
            total = max(1, round((calm if shift == 0 else shifted) * scale))
            for chunk, start in enumerate(range(0, total, per_task)):
                out.append((size, shift, min(per_task, total - start),
                            [SEED, size, round(shift * 100), chunk]))
    return sorted(out, key=lambda t: -t[0] * t[2])


# ---- report -----------------------------------------------------------------------


def _cell(hits: int, pairs: int) -> str:
    low, high = clopper_pearson(hits, pairs)
    return f"{100 * hits / pairs:5.1f} ({100 * low:.1f}–{100 * high:.1f})"


def _main_test(tests: dict[str, int]) -> str:
    return "/".join(name for name, _ in sorted(tests.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                        choices=list(SIZES), metavar="SIZE")
    parser.add_argument("--shifts", type=float, nargs="+", default=list(SHIFTS))
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every pair count (0.1 for a quick look)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    started = time.perf_counter()
    checked = check_evidently_agrees()
    print(f"Evidently {_evidently_version()}: our call of its default tests gives the same "
          f"decision as Report(DataDriftPreset) on all {checked} columns checked")

    cells: dict[tuple[str, int, float], dict] = {}
    todo = tasks(args.sizes, args.shifts, args.scale)
    with tempfile.TemporaryDirectory(prefix="bench-verdicts-") as workdir, \
            ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(measure, *task, workdir) for task in todo]
        for done, future in enumerate(as_completed(futures), 1):
            part = future.result()
            for family in FAMILIES:
                cell = cells.setdefault((family, part["size"], part["shift"]), {
                    "pairs": 0, "hits": dict.fromkeys(METHODS, 0),
                    "psi_equal": [], "psi_ratio": [], "evidently_tests": Counter()})
                cell["pairs"] += part["pairs"]
                for method in METHODS:
                    cell["hits"][method] += part["hits"][family][method]
                cell["psi_equal"] += part["psi"][family]["equal"]
                cell["psi_ratio"] += part["psi"][family]["ratio"]
                cell["evidently_tests"].update(part["evidently_tests"][family])
            print(f"  {done}/{len(todo)} tasks ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr, flush=True)

    print("\nFlagged share of window pairs, % (95% Clopper–Pearson interval). Shift 0: "
          "false alarms;\nshifts in σ of the historical distribution (tests/calibration.py). "
          "n = current window,\nhistorical 4n (n for 'digest n:n'). Evidently: the test it "
          "chose for the column.")
    header = (f"{'family':<12}{'n':>10}{'shift':>6}{'pairs':>6}  "
              + "".join(f"{LABELS[m]:>22}" for m in METHODS) + "  Evidently test")
    print(header)
    print("-" * len(header))
    rows = []
    for family in FAMILIES:
        for size in args.sizes:
            for shift in args.shifts:
                cell = cells[(family, size, shift)]
                pairs = cell["pairs"]
                print(f"{family:<12}{size:>10,}{shift:>6g}{pairs:>6}  "
                      + "".join(f"{_cell(cell['hits'][m], pairs):>22}" for m in METHODS)
                      + f"  {_main_test(cell['evidently_tests'])}")
                rows.append({"family": family, "size": size, "shift": shift, "pairs": pairs,
                             **{m: {"flagged": cell["hits"][m],
                                    "rate": cell["hits"][m] / pairs,
                                    "ci95": [round(x, 5) for x in
                                             clopper_pearson(cell["hits"][m], pairs)]}
                                for m in METHODS},
                             "evidently_tests": dict(cell["evidently_tests"])})
        print()

    print("PSI of same-distribution pairs (digest path): median and 95th percentile")
    header = f"{'family':<12}{'n':>10}  {'n:n median':>11}{'p95':>8}  {'4n:n median':>12}{'p95':>8}"
    print(header)
    print("-" * len(header))
    psi_rows = []
    for family in FAMILIES:
        for size in args.sizes:
            if (family, size, 0.0) not in cells:
                continue
            cell = cells[(family, size, 0.0)]
            equal, ratio = np.array(cell["psi_equal"]), np.array(cell["psi_ratio"])
            figures = {"median_equal": float(np.median(equal)),
                       "p95_equal": float(np.quantile(equal, 0.95)),
                       "median_ratio": float(np.median(ratio)),
                       "p95_ratio": float(np.quantile(ratio, 0.95))}
            print(f"{family:<12}{size:>10,}  {figures['median_equal']:>11.4f}"
                  f"{figures['p95_equal']:>8.4f}  {figures['median_ratio']:>12.4f}"
                  f"{figures['p95_ratio']:>8.4f}")
            psi_rows.append({"family": family, "size": size,
                             **{k: round(v, 6) for k, v in figures.items()}})
    elapsed = time.perf_counter() - started
    print(f"\n{sum(c['pairs'] for c in cells.values()):,} pairs in {elapsed:.0f} s "
          f"({args.workers} workers)")
    print(json.dumps({"benchmark": "verdicts", "evidently": _evidently_version(),
                      "historical_ratio": HISTORICAL_RATIO, "methods": LABELS,
                      "results": rows, "psi_same_distribution": psi_rows,
                      "wall_s": round(elapsed, 1)}))


def _evidently_version() -> str:
    from importlib.metadata import version

    return version("evidently")


if __name__ == "__main__":
    main()
