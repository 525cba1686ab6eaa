"""``stat-guard report RESULT -o FILE``: one result from Redis as a self-contained HTML
file, by run id or by model name (its newest result); one-line errors and exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import redis

from tests.cli.conftest import CONFIG, stat_guard
from tests.local import free_port
from tests.pages.support import churn_features, numeric, publish


def _features(text: str) -> list[str]:
    return re.findall(r'<section class="feature[^"]*" id="feature-\d+" data-feature="([^"]*)"',
                      text)


def test_report_by_run_id_and_by_model_name(redis_db: redis.Redis, tmp_path: Path) -> None:
    older = publish(redis_db, CONFIG, "churn", [numeric("tenure", "ok", 0.01)], hour=-1)
    newest = publish(redis_db, CONFIG, "churn", churn_features())
    output = tmp_path / "older.html"
    done = stat_guard("report", older.run_id, "-o", str(output))
    assert done.code == 0, done.err
    assert done.out.strip() == f"report of {older.run_id} (churn) written to {output}"
    assert _features(output.read_text()) == ["tenure"]

    to_stdout = stat_guard("report", "churn", "-o", "-")
    assert to_stdout.code == 0, to_stdout.err
    text = to_stdout.out
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    assert newest.run_id in text
    assert _features(text) == ["plan", "monthly_charges", "support_calls", "tenure", "age"]
    assert "&lt;script&gt;" in text and "<script" not in text
    # self-contained: nothing fetched from anywhere, no link out
    assert not re.search(r'\b(src|href)\s*=', text)
    assert "Content-Security-Policy" in text


def test_expired_distributions_are_said_in_the_file(redis_db: redis.Redis,
                                                    tmp_path: Path) -> None:
    record = publish(redis_db, CONFIG, "churn", churn_features(), store=False)
    output = tmp_path / "report.html"
    done = stat_guard("report", record.run_id, "-o", str(output))
    assert done.code == 0, done.err
    assert "distributions of this result have expired" in done.out
    assert "distributions of this result have expired" in output.read_text()


def test_unknown_result_and_unreachable_redis(redis_db: redis.Redis, tmp_path: Path) -> None:
    missing = stat_guard("report", "no-such-model", "-o", str(tmp_path / "x.html"))
    assert missing.code == 2
    assert missing.err.count("\n") == 1
    assert "no result 'no-such-model' in Redis" in missing.err
    assert not (tmp_path / "x.html").exists()
    down = stat_guard("report", "churn", env={"STAT_GUARD_REDIS_PORT": str(free_port())})
    assert down.code == 3
    assert down.err.startswith("stat-guard: Redis at 127.0.0.1:") and "unreachable" in down.err
    publish(redis_db, CONFIG, "churn", churn_features())
    unwritable = stat_guard("report", "churn", "-o", str(tmp_path / "none" / "x.html"))
    assert unwritable.code == 2 and "cannot write" in unwritable.err
