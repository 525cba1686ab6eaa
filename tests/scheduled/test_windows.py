"""Window selection: most recent 5% vs 50–70% by time, caps with reproducible sampling."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from stat_guard.scheduled.engine import DriftRunConfig, WindowConfig, run_model_drift

START = dt.datetime(2025, 1, 1)
SIZE = 10_000


@pytest.fixture
def shuffled_model(make_model):
    """Rows inserted in random time order, so windows cannot lean on physical order."""
    rng = np.random.default_rng(5)
    order = rng.permutation(SIZE)
    values = rng.normal(size=SIZE)
    return make_model({"x": values, "kind": [f"k{i % 4}" for i in range(SIZE)]},
                      ["x", "kind"], ["kind"], timestamps=order)


def _at(position: int) -> dt.datetime:
    return START + dt.timedelta(seconds=position)


def test_current_is_the_most_recent_5_percent_and_historical_50_to_70(shuffled_model):
    result = run_model_drift(shuffled_model, "m", "w-default")
    historical, current = result.historical_window, result.current_window
    assert (historical.rows, current.rows) == (2_000, 500)
    assert (historical.start, historical.end) == (_at(5_000), _at(6_999))
    assert (current.start, current.end) == (_at(9_500), _at(9_999))
    assert historical.sample_method == current.sample_method == "all rows"
    assert result.features["x"].n_historical == 2_000
    assert result.features["kind"].n_current == 500


def test_fractions_are_configurable(shuffled_model):
    config = DriftRunConfig(windows=WindowConfig(current_fraction=0.1, historical_start=0.0,
                                                 historical_end=0.3))
    result = run_model_drift(shuffled_model, "m", "w-config", config)
    assert result.historical_window.rows == 3_000 and result.current_window.rows == 1_000
    assert result.historical_window.start == _at(0)
    assert result.current_window.start == _at(9_000)


def test_windows_that_overlap_are_rejected():
    with pytest.raises(ValueError):
        WindowConfig(current_fraction=0.4, historical_end=0.7)


def test_caps_hold_exactly_and_sampling_is_reproducible(shuffled_model):
    capped = DriftRunConfig(windows=WindowConfig(max_rows_per_window=300, seed=1))
    first = run_model_drift(shuffled_model, "m", "cap-1", capped)
    again = run_model_drift(shuffled_model, "m", "cap-2", capped)
    other_seed = run_model_drift(
        shuffled_model, "m", "cap-3",
        DriftRunConfig(windows=WindowConfig(max_rows_per_window=300, seed=2)))
    for result in (first, again, other_seed):
        assert result.historical_window.rows == 2_000
        assert result.historical_window.sampled_rows == 300
        assert result.current_window.sampled_rows == 300
        assert result.features["x"].n_historical == 300
        assert "hash(key" in result.historical_window.sample_method
    assert first.features["x"].psi_bin_edges == again.features["x"].psi_bin_edges
    assert first.features["x"].ks_statistic == again.features["x"].ks_statistic
    assert first.features["x"].psi_bin_edges != other_seed.features["x"].psi_bin_edges


def test_prediction_windows_follow_the_same_rules(make_model):
    path = make_model({"x": np.arange(2_000, dtype=float)}, ["x"], events=True)
    result = run_model_drift(path, "m", "events")
    drift = result.model_drift
    assert drift.error is None
    assert (drift.historical_window.rows, drift.current_window.rows) == (400, 100)
    assert drift.performance.metric == "mae" and drift.performance.labeled_current == 100


@pytest.mark.parametrize("pushdown", [False, True], ids=["filters", "ranges"])
@pytest.mark.parametrize("rowid", [False, True], ids=["bernoulli", "rowid-hash"])
@pytest.mark.parametrize("layout", ["shuffled", "ordered", "ties"])
def test_ranked_values_are_exact_order_statistics_through_the_sampling_rounds(
        tmp_path, monkeypatch, layout, rowid, pushdown):
    """With tiny sample and exact-selection sizes every rank goes through several guess
    rounds (shared first round, two-sided narrowing, ties at a guess) before its top-N;
    each answer must equal numpy's order statistic, whichever way the rounds sample and
    count."""
    import duckdb

    from stat_guard.scheduled import windows as duckdb_windows
    from stat_guard.scheduled.connection import Session

    monkeypatch.setattr(duckdb_windows, "GUESS_SAMPLE_ROWS", 200)
    monkeypatch.setattr(duckdb_windows, "EXACT_SELECTION_ROWS", 300)
    rng = np.random.default_rng(11)
    size = 60_000
    values = {"shuffled": rng.permutation(size).astype(float),
              "ordered": np.arange(size, dtype=float),
              "ties": rng.integers(0, 40, size).astype(float)}[layout]
    connection = duckdb.connect(str(tmp_path / "ranks.duckdb"))
    try:
        connection.execute("CREATE TABLE t AS SELECT unnest(?::DOUBLE[]) AS v, "
                           "unnest(?::BOOLEAN[]) AS keep", [values.tolist(),
                                                             (np.arange(size) % 3 != 0).tolist()])
        kept = np.sort(values[np.arange(size) % 3 != 0])
        ranks = [1, 2, 137, len(kept) // 2, int(len(kept) * 0.7), int(len(kept) * 0.95),
                 len(kept) - 1, len(kept)]
        session = Session(connection)
        queries = []
        fetch = session.fetchall

        def counting(sql, params=None):
            queries.append(sql)
            return fetch(sql, params)

        session.fetchall = counting
        got = duckdb_windows.ranked_values(session, "t", "keep", {}, "v", len(kept), ranks,
                                           seed=3, rowid=rowid, pushdown=pushdown)
    finally:
        connection.close()
    assert got == [kept[r - 1] for r in ranks]
    sampled = "hash(rowid, $sample_seed)" if rowid else "USING SAMPLE"
    assert sum(sampled in q for q in queries) >= 2  # the rounds really ran


def test_inverted_cdf_rank_matches_duckdb_quantile_disc():
    import duckdb

    from stat_guard.scheduled.windows import inverted_cdf_rank

    connection = duckdb.connect()
    for rows in (1, 2, 7, 10, 99, 1000, 12_345):
        for q in (0.0, 0.05, 1 / 3, 0.5, 0.7, 0.95, 0.999, 1.0):
            [(value,)] = connection.execute(
                f"SELECT quantile_disc(i, {q!r}) FROM range({rows}) t(i)").fetchall()
            assert value == inverted_cdf_rank(q, rows) - 1, (rows, q)


def test_a_view_gets_the_same_windows_as_its_table(shuffled_model, monkeypatch):
    """A table's guess rounds sample by hash(rowid); a view has no rowid and samples with
    USING SAMPLE. The windows are exact order statistics either way: the same rows, the
    same statistics."""
    import duckdb

    from stat_guard.scheduled import windows as duckdb_windows

    monkeypatch.setattr(duckdb_windows, "GUESS_SAMPLE_ROWS", 500)
    monkeypatch.setattr(duckdb_windows, "EXACT_SELECTION_ROWS", 800)
    seen = _statements(monkeypatch)
    capped = DriftRunConfig(windows=WindowConfig(max_rows_per_window=300, seed=1))
    table = run_model_drift(shuffled_model, "m", "from-table", capped)
    assert any("hash(rowid, $sample_seed)" in sql for sql in seen)
    assert not any("USING SAMPLE" in sql for sql in seen)
    connection = duckdb.connect(shuffled_model)
    try:
        connection.execute("CREATE VIEW features_view AS SELECT * FROM features_m")
        connection.execute("UPDATE model_metadata SET feature_table = 'features_view'")
    finally:
        connection.close()
    seen.clear()
    view = run_model_drift(shuffled_model, "m", "from-view", capped)
    assert any("USING SAMPLE" in sql for sql in seen)
    assert not any("rowid" in sql for sql in seen)
    for attribute in ("start", "end", "rows", "sampled_rows"):
        for window in ("historical_window", "current_window"):
            assert (getattr(getattr(view, window), attribute)
                    == getattr(getattr(table, window), attribute))
    assert view.features["x"].ks_statistic == table.features["x"].ks_statistic
    assert view.features["x"].psi == table.features["x"].psi
    assert view.features["kind"].chi2 == table.features["kind"].chi2


@pytest.mark.parametrize("cap", [7, 1_000, 1_993])
def test_hash_caps_guessed_without_a_sample_are_exact(shuffled_model, monkeypatch, cap):
    """With a small exact-selection size the row cap's threshold goes through its
    sample-free first round (guesses near 0 and near 2^64 included): still exactly ``cap``
    rows, the same as found by the sampled rounds alone."""
    from stat_guard.scheduled import windows as duckdb_windows

    monkeypatch.setattr(duckdb_windows, "EXACT_SELECTION_ROWS", 5)
    monkeypatch.setattr(duckdb_windows, "GUESS_SAMPLE_ROWS", 400)
    seen = _statements(monkeypatch)
    config = DriftRunConfig(windows=WindowConfig(max_rows_per_window=cap, seed=4))
    guessed = run_model_drift(shuffled_model, "m", f"prior-{cap}", config)
    hashed = [sql for sql in seen if "hash(\"entity_id\"" in sql]
    assert "count_if(v < $g0)" in hashed[0]  # the first round counted without a sample
    ranked_values = duckdb_windows.ranked_values

    def sampled_rounds_only(*args, **kwargs):
        return ranked_values(*args, **{**kwargs, "uniform": None})

    monkeypatch.setattr(duckdb_windows, "ranked_values", sampled_rounds_only)
    sampled = run_model_drift(shuffled_model, "m", f"sampled-{cap}", config)
    for result in (guessed, sampled):
        assert result.historical_window.sampled_rows == cap
        assert result.features["x"].n_historical == cap
    assert guessed.features["x"].ks_statistic == sampled.features["x"].ks_statistic
    assert guessed.features["x"].psi_bin_edges == sampled.features["x"].psi_bin_edges


def _statements(monkeypatch) -> list[str]:
    """Every statement the engine's sessions fetch from, in order (each still runs)."""
    from stat_guard.scheduled import connection as connection_module

    seen: list[str] = []
    fetchall = connection_module.Session.fetchall

    def recording(self, sql, params=None, width=None):
        seen.append(sql)
        return fetchall(self, sql, params, width)

    monkeypatch.setattr(connection_module.Session, "fetchall", recording)
    return seen
