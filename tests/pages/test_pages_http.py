"""The drift pages over HTTP semantics, in this process (the ASGI app, real Redis): who
gets in, what each route answers, names escaped, an expired display still shows the
record's figures. The browser's view: tests/pages/test_pages_browser.py."""

from __future__ import annotations

import base64
import dataclasses
import re
import subprocess
import sys

import pytest
import redis

from tests.local import free_port
from tests.pages.asgi import get
from tests.pages.conftest import CONFIG, CONFIG_PATH
from tests.pages.support import categorical, churn_features, numeric, publish
from workers.config import ROOT
from workers.pages.app import create_app

USER, PASSWORD, TOKEN = "ops", "pages-test-password", "pages-test-token"


def _config(**pages: str):
    return dataclasses.replace(CONFIG, pages=dataclasses.replace(CONFIG.pages, **pages))


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _features(body: str) -> list[tuple[str, str]]:
    return re.findall(r'<section class="feature[^"]*" id="feature-\d+" data-feature="([^"]*)" '
                      r'data-verdict="([^"]*)"', body)


def test_credentials_are_required_and_checked(redis_db: redis.Redis) -> None:
    record = publish(redis_db, CONFIG, "churn", churn_features())
    app = create_app(_config(basic_auth=f"{USER}:{PASSWORD}", token=TOKEN), redis_db)
    for path in ("/", "/models/churn", f"/runs/{record.run_id}",
                 f"/runs/{record.run_id}/report.html"):
        refused = get(app, path)
        assert refused.status == 401, path
        assert refused.headers["www-authenticate"].startswith("Basic ")
        assert "monthly_charges" not in refused.body
    assert get(app, "/", _basic(USER, "wrong")).status == 401
    assert get(app, "/", _basic("someone", PASSWORD)).status == 401
    assert get(app, "/", {"Authorization": "Bearer wrong"}).status == 401
    assert get(app, "/?token=wrong").status == 401
    assert get(app, "/healthz").status == 200  # for health checks; says nothing else
    assert get(app, "/", _basic(USER, PASSWORD)).status == 200
    assert get(app, "/models/churn", {"Authorization": f"Bearer {TOKEN}"}).status == 200
    by_query = get(app, f"/?token={TOKEN}")
    assert by_query.status == 200
    cookie = by_query.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert get(app, "/models/churn", {"Cookie": cookie.split(";")[0]}).status == 200
    # no script may run on the pages at all
    assert "script-src" not in by_query.headers["content-security-policy"]
    assert by_query.headers["content-security-policy"].startswith("default-src 'none'")


def test_model_page_puts_drift_first_and_escapes_every_name(redis_db: redis.Redis) -> None:
    publish(redis_db, CONFIG, "churn", [numeric("tenure", "ok", 0.01)], hour=-2)
    record = publish(redis_db, CONFIG, "churn", churn_features())
    page = get(create_app(CONFIG, redis_db), "/models/churn")
    assert page.status == 200
    assert _features(page.body) == [("plan", "drift"), ("monthly_charges", "drift"),
                                    ("support_calls", "warning"), ("tenure", "ok"),
                                    ("age", "ok")]
    assert "<script" not in page.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.body
    assert page.body.count('class="bar baseline"') == page.body.count('class="bar current"')
    assert page.body.count('<svg class="chart histogram"') == 4
    assert page.body.count('<svg class="chart categories"') == 1
    assert '<svg class="chart history"' in page.body  # the score over the two results
    assert re.search(r'data-stat="psi">0\.61<', page.body)
    assert "1.0 % → 7.0 %" in page.body  # missing shares of support_calls
    assert f'href="/runs/{record.run_id.replace("@", "%40")}/report.html"' in page.body
    assert get(create_app(CONFIG, redis_db), "/models/nobody").status == 404


def test_overview_lists_every_model_worst_first(redis_db: redis.Redis) -> None:
    publish(redis_db, CONFIG, "pricing", [numeric("demand", "warning", 0.15)])
    publish(redis_db, CONFIG, "churn", churn_features())
    publish(redis_db, CONFIG, "fraud", [numeric("amount", "ok", 0.02)])
    publish(redis_db, CONFIG, "payments", [numeric("amount", "drift", 2.5)],
            source="ondemand", run_id="request-17")
    publish(redis_db, CONFIG, '"><img src=x>', [numeric("x", "ok", 0.01)])
    body = get(create_app(CONFIG, redis_db), "/").body
    rows = re.findall(r'data-model="([^"]*)" data-source="([^"]*)" data-verdict="([^"]*)"',
                      body)
    assert rows == [("payments", "ondemand", "drift"), ("churn", "scheduled", "drift"),
                    ("pricing", "scheduled", "warning"), ("fraud", "scheduled", "ok"),
                    ("&quot;&gt;&lt;img src=x&gt;", "scheduled", "ok")]
    assert "<img" not in body
    assert ">on-demand<" in body and ">scheduled<" in body


def test_expired_distributions_still_show_the_figures(redis_db: redis.Redis) -> None:
    record = publish(redis_db, CONFIG, "churn", churn_features(), store=False)
    app = create_app(CONFIG, redis_db)
    for path in ("/models/churn", f"/runs/{record.run_id}"):
        page = get(app, path)
        assert page.status == 200
        assert "distributions of this result have expired" in page.body
        assert [name for name, _ in _features(page.body)][:2] == ["plan", "monthly_charges"]
        assert re.search(r'data-stat="psi">0\.61<', page.body)
        assert "<svg class=\"chart histogram\"" not in page.body


def test_run_page_and_report_download(redis_db: redis.Redis) -> None:
    record = publish(redis_db, CONFIG, "churn", churn_features())
    app = create_app(CONFIG, redis_db)
    run = get(app, f"/runs/{record.run_id}")
    assert run.status == 200 and "monthly_charges" in run.body
    report = get(app, f"/runs/{record.run_id}/report.html")
    assert report.status == 200
    assert report.headers["content-disposition"] == (
        'attachment; filename="stat_guard-churn@20261206T080000Z.html"')
    assert not re.search(r'(src|href)\s*=\s*"?\s*(https?:)?//', report.body)
    assert _features(report.body) == _features(run.body)
    assert get(app, "/runs/nothing-like-it").status == 404
    assert get(app, "/runs/x/other").status == 404


def test_categories_only_feature_and_a_lone_result(redis_db: redis.Redis) -> None:
    publish(redis_db, CONFIG, "one", [categorical("c", "ok", 0.0, {"a": 1}, {"a": 1})])
    page = get(create_app(CONFIG, redis_db), "/models/one")
    assert page.status == 200 and '<svg class="chart categories"' in page.body


def _pages_process(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workers.cli.main", "pages", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def pages_env() -> dict[str, str]:
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAT_GUARD_")}
    return {**env, "STAT_GUARD_CONFIG": str(CONFIG_PATH), "PYTHONUNBUFFERED": "1"}


def test_the_process_refuses_an_open_address_without_credentials(
        pages_env: dict[str, str]) -> None:
    process = _pages_process("--host", "0.0.0.0", "--port", str(free_port()), env=pages_env)
    out, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "refusing to serve the pages on 0.0.0.0 without authentication" in out
    assert "STAT_GUARD_PAGES_BASIC_AUTH" in out


def test_the_process_says_so_when_open_on_loopback(pages_env: dict[str, str]) -> None:
    process = _pages_process("--port", str(free_port()), env=pages_env)
    try:
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Uvicorn running" in line or len(lines) > 40:
                break
        text = "".join(lines)
        assert "need no credentials" in text and "127.0.0.1" in text, text
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_trimmed_stream_still_shows_the_stored_distributions(redis_db: redis.Redis) -> None:
    record = publish(redis_db, CONFIG, "churn", churn_features())
    redis_db.delete(CONFIG.stream.name)  # trimmed away; the summaries are still kept
    page = get(create_app(CONFIG, redis_db), f"/runs/{record.run_id}")
    assert page.status == 200
    assert [name for name, _ in _features(page.body)][:2] == ["plan", "monthly_charges"]
    assert '<svg class="chart histogram"' in page.body


def test_redis_down_is_a_503_page_not_a_traceback() -> None:
    # the exporter's fail-fast client, as the process makes it: an answer within a second
    app = create_app(dataclasses.replace(CONFIG, redis=dataclasses.replace(
        CONFIG.redis, port=free_port())))
    page = get(app, "/")
    assert page.status == 503 and "Redis is unavailable" in page.body
    assert get(app, "/healthz").status == 200
