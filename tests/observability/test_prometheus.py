"""Prometheus: the configuration and rules pass promtool, the rule unit tests pass, and a
real Prometheus on loopback scrapes the real exporter and answers queries over its API."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import redis
import yaml

from tests.local import free_port, wait_for
from tests.observability.conftest import (
    ROOT,
    Processes,
    http_get,
    require_tool,
)
from tests.observability.records import feature, publish, record

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "stat_guard.json"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    return subprocess.run([promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True,
                          text=True, timeout=60)


def test_prometheus_configuration_passes_promtool() -> None:
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_exporter_job_has_a_scrape_timeout() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    timeout = jobs["stat_guard_exporter"].get("scrape_timeout")
    assert timeout == config["global"]["scrape_timeout"] == "10s"


def test_alert_rules_pass_promtool() -> None:
    result = _promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"StatGuardFeatureDrift", "StatGuardFeatureWarning",
            "StatGuardFeatureMissingValuesJump",
            "StatGuardNoRecentScheduledRun", "StatGuardOnDemandFailing"} <= alerts


def test_alert_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tested = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    covered = {case["alertname"] for test in tested["tests"]
               for case in test.get("alert_rule_test", [])}
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    defined = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert defined == covered, f"alerts without a unit test: {defined - covered}"


def test_ondemand_alert_names_the_routed_task() -> None:
    from workers.routing import RUN_ONDEMAND_ANALYSIS

    assert f'task="{RUN_ONDEMAND_ANALYSIS}"' in (PROMETHEUS_DIR / "alerts.yml").read_text()


def _prometheus_config(tmp_path: Path, exporter_port: int) -> Path:
    """The shipped configuration with a 1 s scrape interval, aimed at the test exporter."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s",
                             "evaluation_interval": "1s"})
    config["rule_files"] = [str(PROMETHEUS_DIR / "alerts.yml")]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["stat_guard_exporter"]["scrape_timeout"] = "1s"  # at most the interval
    jobs["stat_guard_exporter"]["static_configs"] = [
        {"targets": [f"127.0.0.1:{exporter_port}"]}]
    config["scrape_configs"] = [jobs["stat_guard_exporter"]]  # no Flower in this test
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _query(base: str, expr: str) -> dict[str, Any]:
    status, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert status in (200, 400, 422), body[:300]
    return json.loads(body)


def _dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in board["panels"]
            for target in panel.get("targets", [])]


def test_prometheus_scrapes_the_exporter_and_answers_queries(
        processes: Processes, redis_db: redis.Redis, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    exporter_url = processes.exporter(feature_series="all")  # the dashboard's panels
    exporter_port = int(urllib.parse.urlparse(exporter_url).port or 0)
    publish(redis_db, record("churn@1", "churn", "scheduled", "drift", "0.31",
                             {"age": feature(0.31, 0.12, 0.001, 0.2, 0.15, 0.4, "drift")}))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = processes.start("prometheus", [
        prometheus, f"--config.file={_prometheus_config(tmp_path, exporter_port)}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h", "--log.level=warn"])

    def psi_found() -> list[dict[str, Any]]:
        assert server.alive(), server.log()[-3000:]
        try:
            answer = _query(base, 'stat_guard_feature_psi{model="churn",feature="age"}')
        except OSError:
            return []
        return answer.get("data", {}).get("result", [])

    result = wait_for(psi_found, timeout=60, what="Prometheus to scrape the exporter",
                      interval=0.5)
    assert len(result) == 1
    assert result[0]["metric"]["job"] == "stat_guard_exporter"
    assert result[0]["metric"]["source"] == "scheduled"
    assert float(result[0]["value"][1]) == 0.31
    up = _query(base, 'up{job="stat_guard_exporter"}')["data"]["result"]
    assert [float(r["value"][1]) for r in up] == [1.0]
    redis_up = _query(base, "stat_guard_exporter_redis_up")["data"]["result"]
    assert float(redis_up[0]["value"][1]) == 1.0

    status, body = http_get(f"{base}/api/v1/rules")
    assert status == 200
    groups = json.loads(body)["data"]["groups"]
    assert {g["name"] for g in groups} == {"stat_guard_drift", "stat_guard_runs",
                                           "stat_guard_ondemand"}

    # every dashboard query is valid PromQL for this Prometheus
    for expr in _dashboard_expressions():
        concrete = expr.replace("$__rate_interval", "1m").replace("$model", ".*")
        answer = _query(base, concrete)
        assert answer["status"] == "success", (expr, answer)
