"""The drift pages in a real headless Chromium (tests/browser.py, the DevTools protocol):
drifted features on top with a chart each, the overview worst first, a 200-feature page
loading within a second, the report file showing the same figures offline.

``make pages-screenshots`` runs these with PAGES_SCREENSHOTS=docs/img to refresh the
pictures in the documentation (overview, model page, report).
"""

from __future__ import annotations

import base64
import dataclasses
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from demo.duckdb_data import DemoSummary
from stat_guard.scheduled.engine import run_model_drift
from tests.browser import Browser, require_chromium
from tests.fleet.support import demo_database
from tests.local import free_port, wait_for
from tests.pages.conftest import CONFIG
from tests.pages.support import categorical, churn_features, numeric, publish
from workers.config import ROOT
from workers.displays import with_display
from workers.pages import data, render
from workers.pages.app import create_app
from workers.stream import publish_once

USER, PASSWORD = "ops", "browser-test-password"
SETTINGS = dataclasses.replace(CONFIG, pages=dataclasses.replace(
    CONFIG.pages, basic_auth=f"{USER}:{PASSWORD}"))
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
# The DOM read back for comparisons: each feature's name, verdict, PSI and the number of
# baseline and current bars in its chart.
FEATURES_JS = """[...document.querySelectorAll('section.feature')].map(s => ({
  name: s.dataset.feature, verdict: s.dataset.verdict,
  psi: (s.querySelector('[data-stat="psi"]') || {}).textContent || null,
  ks: (s.querySelector('[data-stat="ks_statistic"]') || {}).textContent || null,
  missing: (s.querySelector('[data-stat="missing"]') || {}).textContent || null,
  charts: s.querySelectorAll('svg.chart[role="img"][aria-label]').length,
  baseline: s.querySelectorAll('svg.chart rect.bar.baseline').length,
  current: s.querySelectorAll('svg.chart rect.bar.current').length}))"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    require_chromium()
    with Browser(tmp_path_factory.mktemp("chromium")) as opened:
        opened.set_headers(AUTH)
        yield opened


@pytest.fixture
def server(redis_db: redis.Redis) -> Iterator[str]:
    """The pages under uvicorn in a thread of this process, on a free port."""
    import uvicorn

    port = free_port()
    app = create_app(SETTINGS, redis_db)
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                             log_level="warning", lifespan="off"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    wait_for(lambda: instance.started, timeout=20, what="uvicorn")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


def _keep(shot: Path) -> None:
    """Copy a screenshot to $PAGES_SCREENSHOTS (make pages-screenshots: docs/img)."""
    folder = os.environ.get("PAGES_SCREENSHOTS")
    if folder:
        shutil.copyfile(shot, ROOT / folder / shot.name)


def _with_history(client: redis.Redis) -> None:
    """Eight earlier results of churn (scores rising), then its drifted one."""
    for hour, psi in enumerate((0.02, 0.03, 0.02, 0.05, 0.08, 0.12, 0.2, 0.33)):
        verdict = "drift" if psi >= 0.25 else "warning" if psi >= 0.1 else "ok"
        publish(client, CONFIG, "churn", [numeric("monthly_charges", verdict, psi)],
                hour=hour - 9)
    publish(client, CONFIG, "churn", [numeric("monthly_charges", "ok", 0.04)],
            hour=-0.5, source="ondemand", run_id="request-41")
    publish(client, CONFIG, "churn", churn_features())


def test_drifted_features_come_first_each_with_both_windows_drawn(
        browser: Browser, server: str, redis_db: redis.Redis, tmp_path: Path) -> None:
    _with_history(redis_db)
    browser.navigate(f"{server}/models/churn")
    features = browser.evaluate(FEATURES_JS)
    assert [(f["name"], f["verdict"]) for f in features] == [
        ("plan", "drift"), ("monthly_charges", "drift"), ("support_calls", "warning"),
        ("tenure", "ok"), ("age", "ok")]
    for feature in features:
        assert feature["charts"] == 1, feature
        assert feature["baseline"] == feature["current"] > 0, feature
    assert features[0]["baseline"] == 4  # basic, pro, team and the new one
    assert browser.evaluate("document.querySelectorAll('script').length") == 0
    unseen = browser.evaluate("[...document.querySelectorAll('g.category.unseen title')]"
                              ".map(t => t.textContent)")
    assert unseen == ["<script>alert(1)</script> (not in the baseline): baseline 0.0 %, "
                      "current 40.0 %"]
    history = browser.evaluate("document.querySelectorAll('svg.history g.point').length")
    assert history == 10



def test_overview_lists_every_model_worst_first(
        browser: Browser, server: str, redis_db: redis.Redis, tmp_path: Path) -> None:
    _with_history(redis_db)
    publish(redis_db, CONFIG, "pricing", [numeric("demand_index", "warning", 0.17, shift=3)])
    publish(redis_db, CONFIG, "fraud_scoring", [numeric("amount", "drift", 1.9, shift=25),
                                                categorical("country", "ok", 0.01,
                                                            {"DE": 5, "FR": 5},
                                                            {"DE": 5, "FR": 5})])
    publish(redis_db, CONFIG, "recommendations", [numeric("clicks", "ok", 0.01)])
    publish(redis_db, CONFIG, "payments", [numeric("amount", "insufficient_data", None)],
            source="ondemand", run_id="request-42")
    browser.navigate(server + "/")
    rows = browser.evaluate("[...document.querySelectorAll('tr.model-row')].map(r => "
                            "[r.dataset.model, r.dataset.source, r.dataset.verdict])")
    assert rows == [["fraud_scoring", "scheduled", "drift"], ["churn", "scheduled", "drift"],
                    ["pricing", "scheduled", "warning"],
                    ["payments", "ondemand", "insufficient_data"],
                    ["churn", "ondemand", "ok"], ["recommendations", "scheduled", "ok"]]
    links = browser.evaluate("[...document.querySelectorAll('tr.model-row td:first-child a')]"
                             ".map(a => a.getAttribute('href'))")
    assert links[0] == "/models/fraud_scoring"



def test_a_model_with_200_features_loads_within_a_second(
        browser: Browser, server: str, redis_db: redis.Redis) -> None:
    features = []
    for i in range(200):
        if i % 10 == 9:
            features.append(categorical(f"category_{i:03d}", "ok", 0.01,
                                        {f"c{j}": 10 + j for j in range(25)},
                                        {f"c{j}": 12 + j for j in range(27)}))
        else:
            drifted = i % 37 == 0
            features.append(numeric(f"feature_{i:03d}", "drift" if drifted else "ok",
                                    0.5 + i / 1000 if drifted else 0.01,
                                    shift=10 if drifted else 0.2))
    publish(redis_db, CONFIG, "wide", features)
    browser.navigate(f"{server}/models/wide")  # once to warm the server's imports
    timings = []
    for _ in range(3):
        browser.navigate(f"{server}/models/wide")
        timings.append(browser.load_time_ms())
    seen = browser.evaluate(FEATURES_JS)
    assert len(seen) == 200
    assert [f["verdict"] for f in seen[:6]] == ["drift"] * 6
    assert all(f["charts"] == 1 and f["baseline"] == f["current"] > 0 for f in seen)
    size = browser.evaluate("document.documentElement.outerHTML.length")
    print(f"200-feature page: load {', '.join(f'{t:.0f}' for t in timings)} ms, "
          f"{size / 1e6:.2f} MB of HTML")
    assert min(timings) < 1000, timings


def test_the_report_file_shows_the_same_figures_offline(
        browser: Browser, server: str, redis_db: redis.Redis, tmp_path: Path) -> None:
    _with_history(redis_db)
    browser.navigate(f"{server}/models/churn")
    on_page = browser.evaluate(FEATURES_JS)
    result, results = data.newest_result(redis_db, CONFIG, "churn")
    report = tmp_path / "pages-report.png"
    path = tmp_path / "churn-report.html"
    path.write_text(render.report(result, results.history, CONFIG.thresholds))
    browser.call("Network.emulateNetworkConditions", offline=True, latency=0,
                 downloadThroughput=-1, uploadThroughput=-1)
    try:
        browser.navigate(path.as_uri())
        requested = [e["params"]["request"]["url"] for e in browser.events
                     if e["method"] == "Network.requestWillBeSent"]
        in_report = browser.evaluate(FEATURES_JS)
        browser.screenshot(report, height=1500)
    finally:
        browser.call("Network.emulateNetworkConditions", offline=False, latency=0,
                     downloadThroughput=-1, uploadThroughput=-1)
    assert in_report == on_page
    assert set(requested) <= {path.as_uri()}, requested
    assert browser.evaluate("document.querySelectorAll('a[href]').length") == 0


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoSummary, list[Any]]:
    """The demo's DuckDB data, every production model run through the real engine once."""
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    summary = demo_database(path)
    return summary, [run_model_drift(str(path), model, f"{model}@20261206T080000Z")
                     for model in summary.production_models]


def test_demo_results_show_their_drifted_features_first_with_both_windows_drawn(
        browser: Browser, server: str, redis_db: redis.Redis, tmp_path: Path,
        demo_runs: tuple[DemoSummary, list[Any]]) -> None:
    """The demo's results, as the drift task publishes them (record + stored summaries):
    the overview lists every production model with its verdict, and each model page puts
    the features the demo drifted first, each drawn for both windows. The screenshots of
    the documentation come from here."""
    summary, runs = demo_runs
    records = {}
    for result in runs:
        record = with_display(redis_db, CONFIG.redis, result.stream_record(),
                              result.run_display, CONFIG.display.ttl_s)
        assert record.display_key, "the summaries were not stored"
        publish_once(redis_db, CONFIG.redis, CONFIG.stream, record)
        records[record.model] = record
    browser.navigate(server + "/")
    rows = browser.evaluate("[...document.querySelectorAll('tr.model-row')].map(r => "
                            "[r.dataset.model, r.dataset.verdict])")
    assert sorted(rows) == sorted([m, r.verdict] for m, r in records.items())
    browser.screenshot(tmp_path / "pages-overview.png", height=420)
    _keep(tmp_path / "pages-overview.png")
    for model in summary.production_models:
        browser.navigate(f"{server}/models/{model}")
        seen = browser.evaluate(FEATURES_JS)
        drifted = set(summary.drifted_features[model])
        assert {f["name"] for f in seen[:len(drifted)]} == drifted, (model, seen)
        assert all(f["verdict"] in ("drift", "warning") for f in seen[:len(drifted)])
        assert all(f["charts"] == 1 and f["baseline"] == f["current"] > 0 for f in seen
                   if f["verdict"] != "insufficient_data"), (model, seen)
        if model == "fraud_scoring":
            fraud_seen = seen
            browser.screenshot(tmp_path / "pages-model.png", height=1500)
            _keep(tmp_path / "pages-model.png")
    result, results = data.newest_result(redis_db, CONFIG, "fraud_scoring")
    path = tmp_path / "fraud_scoring-report.html"
    path.write_text(render.report(result, results.history, CONFIG.thresholds))
    browser.navigate(path.as_uri())
    assert browser.evaluate(FEATURES_JS) == fraud_seen  # the same figures, offline
    browser.screenshot(tmp_path / "pages-report.png", height=1500)
    _keep(tmp_path / "pages-report.png")
