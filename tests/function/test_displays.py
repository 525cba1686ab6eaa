"""The verdict service's ``display`` objects (docs/wire-format.md §4): one per column,
valid FeatureDisplay JSON drawn from the digests and count tables, within a byte budget."""

from __future__ import annotations

import json

import numpy as np

from stat_guard.categories import CategoryCounts
from stat_guard.display import MAX_FEATURE_BYTES, FeatureDisplay
from stat_guard.envelope_verdict import analyze_envelope
from stat_guard.service import analyze_to_json
from stat_guard.tdigest import TDigest
from stat_guard.verdict import DEFAULT_THRESHOLDS
from stat_guard.wire import ColumnCategories, ColumnDigests, Envelope, encode_envelope


def _envelope(columns: int = 3, metadata: dict | None = None) -> bytes:
    rng = np.random.default_rng(5)
    baseline = TDigest.from_values(rng.normal(10, 2, 20_000))
    calm = TDigest.from_values(rng.normal(10, 2, 4_000))
    moved = TDigest.from_values(rng.normal(13, 2, 4_000))
    pairs = {"moved": ColumnDigests(current=moved, baseline=baseline),
             "plan": ColumnCategories(
                 baseline=CategoryCounts.of({"basic": 700, "pro": 250, "team": 50},
                                            missing=10),
                 current=CategoryCounts.of({"basic": 300, "pro": 300, "team": 50,
                                            "enterprise": 350}))}
    for i in range(columns - 2):
        pairs[f"calm_{i}"] = ColumnDigests(current=calm, baseline=baseline)
    return encode_envelope(Envelope({"request_id": "r1", **(metadata or {})}, pairs))


def test_every_column_gets_a_valid_display_that_shows_the_shift() -> None:
    status, body = analyze_to_json(_envelope(), DEFAULT_THRESHOLDS)
    assert status == 200
    answer = json.loads(body)
    assert answer["display_omitted"] is False
    shown = {name: FeatureDisplay.from_json(column["display"])
             for name, column in answer["columns"].items()}
    moved = shown["moved"]
    assert moved.verdict == answer["columns"]["moved"]["verdict"] == "drift"
    assert list(moved.reasons) == answer["columns"]["moved"]["reasons"]
    assert len(moved.edges) == 41 and abs(sum(moved.current) - 1) < 1e-5
    centre = {side: sum(i * p for i, p in enumerate(getattr(moved, side)))
              for side in ("baseline", "current")}
    assert centre["current"] > centre["baseline"] + 5  # 1.5 sigma to the right
    assert abs(moved.quantiles["baseline"][3] - 10) < 0.1
    assert abs(moved.quantiles["current"][3] - 13) < 0.1
    assert moved.statistics["psi"] == float(f"{answer['columns']['moved']['psi']:.6g}")
    assert (moved.n_baseline, moved.n_current) == (20_000, 4_000)
    plan = shown["plan"]
    assert plan.kind == "categorical" and abs(plan.missing_baseline - 10 / 1010) < 1e-7
    shares = {c.name: (c.baseline, c.current, c.unseen) for c in plan.categories}
    assert shares["enterprise"] == (0.0, 0.35, True)
    assert shares["basic"] == (0.7, 0.3, False)
    assert shown["calm_0"].verdict == "ok"
    assert all(len(json.dumps(c["display"], separators=(",", ":")).encode())
               <= MAX_FEATURE_BYTES for c in answer["columns"].values())


def test_displays_beyond_the_budget_are_omitted_the_most_severe_kept() -> None:
    body = _envelope(columns=40)
    answer = analyze_envelope(body, DEFAULT_THRESHOLDS, display_budget_bytes=8_000)
    with_display = [name for name, c in answer["columns"].items() if "display" in c]
    assert answer["display_omitted"] is True
    assert "moved" in with_display and "plan" in with_display  # drift first
    assert 2 <= len(with_display) < 40
    assert sum(len(json.dumps(answer["columns"][n]["display"])) for n in with_display) \
        <= 8_000 * 1.1
    assert all(c["verdict"] for c in answer["columns"].values())  # every verdict is there
    # The extension's max_response_bytes in the metadata: displays get what the limit leaves
    # after the verdicts and 2 KiB for the answer's head.
    bare = analyze_envelope(_envelope(columns=40), display_budget_bytes=0)["columns"]
    verdicts = len(json.dumps(bare, separators=(",", ":")))
    small = analyze_envelope(_envelope(columns=40, metadata={
        "max_response_bytes": verdicts + 2048 + 8_000}))
    assert small["display_omitted"] is True
    assert sum("display" in c for c in small["columns"].values()) == len(with_display)
    tight = analyze_envelope(_envelope(columns=40, metadata={"max_response_bytes": verdicts}))
    assert not any("display" in c for c in tight["columns"].values())
    # A hostile value is ignored.
    odd = analyze_envelope(_envelope(columns=4, metadata={"max_response_bytes": "x"}))
    assert odd["display_omitted"] is False
