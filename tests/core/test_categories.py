"""Category count tables: how a window is bounded, how two bounded tables are aligned into
bins exact on both sides, and the verdicts the service gives categorical columns."""

from __future__ import annotations

import hashlib
import math
import random

import pytest

from stat_guard import categories
from stat_guard.categories import (
    BASELINE_REST,
    UNNAMED_UNSEEN,
    CategoryCounts,
    align_tables,
    category_key,
    pool_categories,
)
from stat_guard.envelope_verdict import analyze_envelope, compare_categories
from stat_guard.scheduled import scoring
from stat_guard.wire import ColumnCategories, ColumnDigests, Envelope, encode_envelope

BASE_SHARES = {"paris": 0.5, "lyon": 0.3, "nice": 0.15, "lille": 0.05}


def _draw(shares: dict[str, float], n: int, null_share: float = 0.0, seed: int = 0
          ) -> list[str | None]:
    rng = random.Random(seed)
    names, weights = list(shares), list(shares.values())
    return [None if rng.random() < null_share else rng.choices(names, weights)[0]
            for _ in range(n)]


def _verdict(baseline_values, current_values, max_categories: int = 200) -> dict:
    baseline = CategoryCounts.from_values(baseline_values, max_categories)
    current = CategoryCounts.from_values(current_values, max_categories,
                                         listed=baseline.counts)
    body = encode_envelope(Envelope({"request_id": "t"},
                                    {"city": ColumnCategories(current, baseline)}))
    return analyze_envelope(body)["columns"]["city"]


# ---- tables -----------------------------------------------------------------------


def test_long_values_are_named_by_a_prefix_and_their_md5():
    assert category_key("x" * 256) == "x" * 256
    long = "é" * 200  # 400 bytes
    key = category_key(long)
    assert key == "é" * 48 + "..." + hashlib.md5(long.encode()).hexdigest()
    assert len(key.encode()) <= categories.SHORTEN_ABOVE_BYTES
    assert category_key(long + "a") != key


def test_a_window_is_bounded_to_the_most_frequent_categories_ties_by_bytes():
    counts = {"b": 5, "a": 5, "c": 3, "d": 1, "e": 1}
    table = CategoryCounts.bounded(counts, 3, missing=7)
    assert table.categories == (("a", 5), ("b", 5), ("c", 3))
    assert (table.other_count, table.other_distinct, table.missing) == (2, 2, 7)
    assert table.total == 15 and table.distinct == 5 and table.pooled


def test_listed_categories_are_counted_however_rare():
    table = CategoryCounts.bounded({"a": 50, "b": 40, "rare": 1, "c": 30}, 1,
                                   listed=["rare", "gone"])
    assert table.counts == {"a": 50, "rare": 1}  # "gone" is absent: 0
    assert (table.other_count, table.other_distinct) == (70, 2)


def test_tables_refuse_what_the_wire_format_refuses():
    with pytest.raises(ValueError):
        CategoryCounts((("b", 1), ("a", 2)))  # out of order
    with pytest.raises(ValueError):
        CategoryCounts((("a", 0),))
    with pytest.raises(ValueError):
        CategoryCounts((("a\x00", 1),))
    with pytest.raises(ValueError):
        CategoryCounts(other_count=3)  # pooled values in no category


# ---- alignment ----------------------------------------------------------------------


def test_a_complete_baseline_makes_every_other_category_new():
    baseline = CategoryCounts.of({"a": 10, "b": 5})
    current = CategoryCounts.of({"a": 4, "x": 3}, other_count=2, other_distinct=2)
    historical, recent = align_tables(baseline, current)
    assert historical == {"a": 10, "b": 5}
    assert recent == {"a": 4, "b": 0, "x": 3, UNNAMED_UNSEEN: 2}


def test_a_pooled_baseline_puts_every_unnamed_category_in_one_bin():
    baseline = CategoryCounts.of({"a": 10, "b": 5}, other_count=8, other_distinct=4)
    current = CategoryCounts.of({"a": 4, "x": 3}, other_count=2, other_distinct=2)
    historical, recent = align_tables(baseline, current)
    assert historical == {"a": 10, "b": 5, BASELINE_REST: 8}
    assert recent == {"a": 4, "b": 0, BASELINE_REST: 5}


def test_pooling_never_merges_a_real_category_named_like_a_pooled_bin():
    historical = {"(other)": 50, **{f"c{i}": 10 for i in range(5)}}
    current = {"(other)": 40, "(unseen)": 7, **{f"c{i}": 10 for i in range(5)}}
    expected, actual = pool_categories(historical, current, 4)
    assert expected["(other)"] == 50 and actual["(other)"] == 40
    assert sum(expected.values()) == sum(historical.values())
    assert sum(actual.values()) == sum(current.values())
    assert actual["(unseen)'"] == 7


def test_the_scheduled_engine_pools_with_the_same_functions():
    assert scoring.pool_categories is categories.pool_categories
    assert scoring.unseen_categories is categories.unseen_categories


# ---- verdicts ------------------------------------------------------------------------


def test_same_distribution_is_ok():
    column = _verdict(_draw(BASE_SHARES, 20_000, 0.01), _draw(BASE_SHARES, 3_000, 0.01, 1))
    assert column["kind"] == "categorical"
    assert column["verdict"] == "ok", column
    assert column["psi"] < 0.01 and column["chi2_pvalue"] > 0.01
    assert column["unseen_categories"] == [] and column["unseen_share"] == 0.0
    assert column["pooled"] is False
    assert column["current"]["distinct"] == column["baseline"]["distinct"] == 4


def test_a_share_shift_is_drift():
    shifted = {"paris": 0.2, "lyon": 0.3, "nice": 0.15, "lille": 0.35}
    column = _verdict(_draw(BASE_SHARES, 20_000), _draw(shifted, 3_000, seed=1))
    assert column["verdict"] == "drift" and column["psi"] > 0.25, column
    assert column["chi2_pvalue"] < 1e-10
    top = {c["category"]: c for c in column["top_categories"]}
    assert abs(top["lille"]["current_share"] - 0.35) < 0.03
    assert abs(top["lille"]["baseline_share"] - 0.05) < 0.01


def test_a_wholesale_change_is_drift_with_the_unseen_share():
    column = _verdict(_draw(BASE_SHARES, 20_000), _draw({"tokyo": 0.7, "osaka": 0.3}, 3_000))
    assert column["verdict"] == "drift", column
    assert column["unseen_share"] == 1.0
    assert column["unseen_categories"] == ["tokyo", "osaka"]


def test_a_null_burst_is_drift_by_the_missing_share():
    column = _verdict(_draw(BASE_SHARES, 20_000, 0.01), _draw(BASE_SHARES, 3_000, 0.40, 1))
    assert column["verdict"] == "drift", column
    assert any(r.startswith("missing share") for r in column["reasons"])
    assert abs(column["missing_rate_current"] - 0.40) < 0.03
    assert column["psi"] < 0.05  # the categories themselves did not move


def test_high_cardinality_is_bounded_and_said_so():
    rng = random.Random(3)
    baseline = [f"user-{rng.randrange(50_000)}" for _ in range(100_000)]
    current = [f"user-{rng.randrange(50_000)}" for _ in range(20_000)]
    column = _verdict(baseline, current)
    assert column["pooled"] is True and column["verdict"] == "ok", column
    assert column["baseline"]["named"] == 200 and column["baseline"]["distinct"] > 40_000
    assert column["current"]["named"] <= 400
    assert column["unseen_share"] is None  # a pooled baseline cannot tell new from rare
    assert len(column["top_categories"]) == 20
    assert any("counted together" in note for note in column["notes"])


def test_a_wholesale_change_shows_even_when_both_windows_are_pooled():
    """1,000 categories with Zipf shares, then 1,000 new ones: the baseline's 200 named
    categories (about 80% of its values) empty out into the bin of everything else."""
    zipf = {f"old-{i}": 1.0 / (i + 1) for i in range(1000)}
    renamed = {f"new-{i}": 1.0 / (i + 1) for i in range(1000)}
    column = _verdict(_draw(zipf, 20_000), _draw(renamed, 5_000, seed=1))
    assert column["pooled"] is True and column["unseen_share"] is None
    assert column["verdict"] == "drift" and column["psi"] > 1.0, column


def test_too_few_values_is_insufficient_data():
    column = _verdict(_draw(BASE_SHARES, 1000), _draw(BASE_SHARES, 10))
    assert column["verdict"] == "insufficient_data", column


def test_an_empty_current_window_has_null_statistics():
    baseline = CategoryCounts.from_values(_draw(BASE_SHARES, 1000), 200)
    comparison = compare_categories(baseline, CategoryCounts())
    assert math.isnan(comparison.result.psi)
    body = encode_envelope(Envelope({}, {"c": ColumnCategories(CategoryCounts(), baseline)}))
    column = analyze_envelope(body)["columns"]["c"]
    assert column["verdict"] == "insufficient_data" and column["psi"] is None


def test_numeric_columns_answer_as_before_beside_categorical_ones(golden):
    from stat_guard.tdigest import TDigest

    rng = random.Random(5)
    digest = TDigest.from_values([rng.gauss(0, 1) for _ in range(2000)])
    table = CategoryCounts.from_values(_draw(BASE_SHARES, 2000), 200)
    alone = analyze_envelope(encode_envelope(Envelope({}, {"x": ColumnDigests(digest, digest)})))
    mixed = analyze_envelope(encode_envelope(Envelope({}, {
        "x": ColumnDigests(digest, digest), "c": ColumnCategories(table, table)})))
    assert mixed["columns"]["x"] == alone["columns"]["x"]
    assert "kind" not in alone["columns"]["x"]
    assert mixed["verdict"] == "ok"
