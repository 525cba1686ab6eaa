"""Display summaries (stat_guard.display): numeric bins and quantiles, categories, the
per-feature byte bound, and decoding that refuses anything malformed with DisplayError."""

from __future__ import annotations

import bisect
import gzip
import itertools
import json
import math
import random

import pytest

from stat_guard.display import (
    MAX_BINS,
    MAX_FEATURE_BYTES,
    MAX_RUN_BYTES,
    MAX_UNSEEN,
    QUANTILE_LEVELS,
    TOP_CATEGORIES,
    DisplayError,
    FeatureDisplay,
    RunDisplay,
    binned_cdf,
    categorical_display,
    decode_run,
    display_edges,
    encode_run,
    missing_share,
    numeric_display,
    numeric_display_at,
)


def _sample(seed: int, n: int, shift: float = 0.0) -> list[float]:
    rng = random.Random(seed)
    return sorted(rng.gauss(shift, 1.0) for _ in range(n))


def _fine_bins(values: list[float], bins: int) -> tuple[list[float], list[float]]:
    """Points [min, quantile edges…, max] and the counts between them, as the scheduled
    engine's fine bins give them ((e_i, e_i+1], the first bin closed)."""
    inner = sorted({values[len(values) * i // bins] for i in range(1, bins)})
    points = [values[0], *inner, values[-1]]
    counts = []
    for low, high in itertools.pairwise(points):
        counts.append(bisect.bisect_right(values, high) - bisect.bisect_right(values, low))
    counts[0] += bisect.bisect_right(values, points[0])  # the values equal to the minimum
    return points, [float(c) for c in counts]


def _exact_quantile(values: list[float], level: float) -> float:
    return values[min(len(values) - 1, max(0, math.ceil(level * len(values)) - 1))]


def _numeric(baseline: list[float], current: list[float], name: str = "x",
             **common) -> FeatureDisplay:
    b_cdf, b_quantile = binned_cdf(*_fine_bins(baseline, 1000))
    c_cdf, c_quantile = binned_cdf(*_fine_bins(current, 1000))
    return numeric_display(name, b_cdf, c_cdf, b_quantile, c_quantile,
                           **({"verdict": "ok"} | common))


def test_numeric_shares_sum_to_one_on_at_most_40_even_bins() -> None:
    shown = _numeric(_sample(1, 20_000), _sample(2, 5_000, shift=1.0))
    assert len(shown.edges) == MAX_BINS + 1
    assert len(shown.baseline) == len(shown.current) == MAX_BINS
    widths = [b - a for a, b in itertools.pairwise(shown.edges)]
    assert max(widths) == pytest.approx(min(widths), rel=1e-9)
    assert sum(shown.baseline) == pytest.approx(1.0, abs=1e-12)
    assert sum(shown.current) == pytest.approx(1.0, abs=1e-12)
    assert all(p >= 0 for p in shown.baseline + shown.current)
    document = shown.to_json()  # rounded to 6 digits: still sums to 1 within 1e-5
    assert sum(document["baseline"]) == pytest.approx(1.0, abs=1e-5)
    # The current window moved right by one sigma: its mass sits in later bins.
    def centre(shares):
        return sum(i * p for i, p in enumerate(shares))
    assert centre(shown.current) > centre(shown.baseline) + 5


def test_binned_cdf_quantiles_are_close_to_the_exact_sample_quantiles() -> None:
    values = _sample(3, 50_000, shift=10.0)
    _, quantile = binned_cdf(*_fine_bins(values, 1000))
    spread = values[-1] - values[0]
    for level in QUANTILE_LEVELS:
        assert abs(quantile(level) - _exact_quantile(values, level)) < 0.005 * spread, level
    shown = _numeric(values, values)
    for level, value in zip(QUANTILE_LEVELS, shown.quantiles["baseline"], strict=True):
        assert value == pytest.approx(_exact_quantile(values, level), abs=0.005 * spread)


def test_vectorised_builder_gives_what_the_callables_give() -> None:
    baseline, current = _sample(4, 4_000), _sample(5, 4_000, shift=-0.5)
    (b_cdf, b_q), (c_cdf, c_q) = (binned_cdf(*_fine_bins(v, 200)) for v in (baseline, current))
    shown = numeric_display("x", b_cdf, c_cdf, b_q, c_q, verdict="warning")
    edges = display_edges([b_q(0.001), b_q(0.999)], [c_q(0.001), c_q(0.999)])
    again = numeric_display_at("x", edges, [b_cdf(e) for e in edges[1:-1]],
                               [c_cdf(e) for e in edges[1:-1]],
                               [b_q(q) for q in QUANTILE_LEVELS],
                               [c_q(q) for q in QUANTILE_LEVELS], verdict="warning")
    assert again.to_json() == shown.to_json()
    empty = numeric_display_at("x", edges, None, [c_cdf(e) for e in edges[1:-1]], [],
                               [c_q(q) for q in QUANTILE_LEVELS], verdict="ok")
    assert sum(empty.baseline) == 0 and "baseline" not in empty.quantiles
    assert display_edges([5.0, 5.0], [5.0, 5.0]) == [5.0, 5.0]
    assert display_edges([math.nan], [math.inf]) == []
    huge = display_edges([-1e308, 1e308], [])
    assert len(huge) == MAX_BINS + 1 and all(math.isfinite(e) for e in huge)


def test_categorical_top_unseen_and_other() -> None:
    baseline = {f"c{i:02d}": 1000 - 10 * i for i in range(40)}
    current = {f"c{i:02d}": 900 - 10 * i for i in range(40)}
    current |= {f"new{i:02d}": 5 for i in range(15)}  # 15 unseen, small
    shown = categorical_display("city", baseline, current, verdict="drift")
    named = [c.name for c in shown.categories]
    assert named[:TOP_CATEGORIES] == [f"c{i:02d}" for i in range(TOP_CATEGORIES)]
    unseen = [c for c in shown.categories if c.unseen]
    assert len(unseen) == MAX_UNSEEN and all(c.name.startswith("new") for c in unseen)
    assert all(c.baseline == 0 for c in unseen)
    assert shown.other_count == 40 - TOP_CATEGORIES + 15 - MAX_UNSEEN
    total_b = sum(c.baseline for c in shown.categories) + shown.other_baseline
    total_c = sum(c.current for c in shown.categories) + shown.other_current
    assert total_b == pytest.approx(1.0) and total_c == pytest.approx(1.0)
    again = FeatureDisplay.from_json(json.loads(json.dumps(shown.to_json())))
    assert [c.name for c in again.categories] == named
    assert missing_share(5, 95) == 0.05 and missing_share(0, 0) is None


def test_the_8192_byte_bound_holds_for_adversarial_summaries() -> None:
    long = "é" * 100  # two UTF-8 bytes a character
    baseline = {f"{long[:96]}{i:04d}": 100 + i for i in range(30)}
    current = {f"{long[:96]}{i:04d}": 200 - i for i in range(30)}
    current |= {f"{long[:95]}n{i:04d}": 3 for i in range(20)}
    reasons = tuple("ŕ" * 400 for _ in range(12))
    shown = categorical_display(long * 3, baseline, current, verdict="drift",
                                reasons=reasons, error="x" * 5000)
    document, size = shown.to_json_sized()
    encoded = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(encoded) == size <= MAX_FEATURE_BYTES
    assert document["categories"], "the bound keeps the largest categories"
    numeric = _numeric(_sample(6, 1000), _sample(7, 1000), reasons=reasons,
                       error="e" * 5000, name=long)
    assert len(json.dumps(numeric.to_json(), separators=(",", ":"),
                          ensure_ascii=False).encode()) <= MAX_FEATURE_BYTES
    run = RunDisplay(run_id="r", model="m", source="scheduled", verdict="drift",
                     drift_score=1.0, finished_at="2026-01-01T00:00:00+00:00",
                     features=(shown, numeric))
    assert decode_run(encode_run(run)).features[0].verdict == "drift"


def _valid_run() -> RunDisplay:
    features = (_numeric(_sample(8, 2000), _sample(9, 2000, shift=0.3),
                         verdict="warning", reasons=("psi 0.12 > 0.1",),
                         statistics={"psi": 0.12}, n_baseline=2000, n_current=2000,
                         missing_baseline=0.0, missing_current=0.01),
                categorical_display("plan", {"a": 10, "b": 5}, {"a": 3, "c": 9},
                                    verdict="drift"))
    return RunDisplay(run_id="m@20260101T000000Z", model="m", source="scheduled",
                      verdict="drift", drift_score=0.5,
                      finished_at="2026-01-01T00:00:00+00:00", features=features)


@pytest.mark.parametrize("data", [
    b"", b"not gzip", gzip.compress(b"not json"), gzip.compress(b"[1, 2]"),
    gzip.compress(b'{"version": 99}'), gzip.compress(b"[" * 100_000),
    gzip.compress(json.dumps({"version": 1, "run_id": "r", "model": "m",
                              "source": "scheduled", "verdict": "ok",
                              "features": [{"kind": "numeric", "name": "x", "verdict": "ok",
                                            "edges": [2, 1], "baseline": [1],
                                            "current": [1]}]}).encode()),
    gzip.compress(b" " * (MAX_RUN_BYTES + 10)),  # a gzip bomb: 16 MB of spaces
    gzip.compress(b'{"version": 1}')[:-4],  # truncated
], ids=["empty", "not-gzip", "not-json", "not-object", "version", "deep-nesting",
        "decreasing-edges", "bomb", "truncated"])
def test_decode_refuses_malformed_input_with_display_error(data: bytes) -> None:
    with pytest.raises(DisplayError):
        decode_run(data)


def test_decode_run_fuzz_raises_only_display_error() -> None:
    """Random mutations of a valid run, compressed and raw: a summary or DisplayError."""
    rng = random.Random(20261206)
    run = _valid_run()
    raw = json.dumps(run.to_json(), separators=(",", ":")).encode()
    assert decode_run(gzip.compress(raw)).to_json() == run.to_json()
    document = run.to_json()
    bad_values = [None, True, -1, 1e400, "x" * 2000, [], {}, [[]], float("nan"), 2**70]
    outcomes = {"ok": 0, "refused": 0}
    compressed = gzip.compress(raw)

    def mutate(blob: bytes) -> bytes:  # flip, insert or drop bytes
        mutated = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(mutated))
            choice = rng.random()
            if choice < 0.4:
                mutated[at] = rng.randrange(256)
            elif choice < 0.7:
                del mutated[at:at + rng.randint(1, 20)]
            else:
                mutated[at:at] = bytes(rng.randrange(256) for _ in range(3))
        return bytes(mutated)

    for i in range(300):
        if i % 3 == 0:  # the compressed bytes damaged
            data = mutate(compressed)
        elif i % 3 == 1:  # the JSON damaged, then compressed
            data = gzip.compress(mutate(raw))
        else:  # a structurally valid document with one field replaced
            doc = json.loads(json.dumps(document))
            target = doc if rng.random() < 0.3 else rng.choice(doc["features"])
            if rng.random() < 0.5 and target.get("categories"):
                target = rng.choice(target["categories"])
            target[rng.choice(sorted(target))] = rng.choice(bad_values)
            data = gzip.compress(json.dumps(doc, allow_nan=True).encode())
        try:
            decode_run(data)
            outcomes["ok"] += 1
        except DisplayError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100, outcomes


def test_a_narrow_range_far_from_zero_keeps_distinct_edges() -> None:
    """Epoch seconds over a quarter of an hour: the edges survive the JSON round trip as
    40 distinct, increasing values (6 significant digits would make them all equal)."""
    baseline = [1.7e9 + x * 100 for x in _sample(1, 5_000)]
    current = [1.7e9 + 300 + x * 100 for x in _sample(2, 5_000)]
    read = FeatureDisplay.from_json(json.loads(json.dumps(_numeric(baseline, current).to_json())))
    assert len(read.edges) == MAX_BINS + 1
    assert all(b > a for a, b in itertools.pairwise(read.edges))
    medians = read.quantiles["current"][3] - read.quantiles["baseline"][3]
    assert medians == pytest.approx(300, abs=20)
