"""The configuration module: the example file is the defaults, overrides, checks."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from tests.fleet.conftest import CONFIG
from workers.celery_app import app, celery_settings
from workers.config import ConfigError, FleetConfig, env_name, load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "Global_Configs" / "App.example.yaml"


def test_example_file_holds_exactly_the_built_in_defaults() -> None:
    from_example = load_config(EXAMPLE, environ={})
    assert dataclasses.replace(from_example, source_path="") == FleetConfig()


def test_environment_overrides_file_values(tmp_path: Path) -> None:
    path = tmp_path / "App.yaml"
    path.write_text("redis:\n  port: 6390\n  password: from-file\n"
                    "ondemand:\n  value_columns: [a]\n")
    config = load_config(path, environ={
        env_name("redis", "password"): "s3cret",
        env_name("ondemand", "value_columns"): "amount, latency",
        env_name("schedule", "drift_interval_s"): "900",
        env_name("reactions", "flag_ondemand"): "true"})
    assert config.redis.port == 6390
    assert config.redis.password == "s3cret"
    assert config.redis.url() == "redis://:s3cret@127.0.0.1:6390/0"
    assert config.ondemand.value_columns == ("amount", "latency")
    assert config.schedule.drift_interval_s == 900.0
    assert config.reactions.flag_ondemand is True


def test_baseline_sources_are_read_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "App.yaml"
    path.write_text("baselines:\n  sources:\n    - source: public.events\n"
                    "      time_column: created_at\n      value_columns: [amount, latency]\n"
                    "      lookback: 3 days\n")
    (source,) = load_config(path, environ={}).baselines.sources
    assert (source.source, source.value_columns, source.lookback, source.compression) == (
        "public.events", ("amount", "latency"), "3 days", None)


@pytest.mark.parametrize("text, message", [
    ("limits:\n  drift_time_limit_s: 4000\n", "visibility_timeout_s"),
    ("limits:\n  model_lock_ttl_s: 3000\n", "model_lock_ttl_s"),
    ("redis:\n  prot: 1\n", "unknown keys"),
    ("redsi: {}\n", "unknown configuration sections"),
    ("redis:\n  port: many\n", "redis.port"),
    ("reactions:\n  webhook_format: teams\n", "webhook_format"),
    ("windows:\n  historical_end: 0.99\n", "historical_end"),
    ("drift:\n  lock_max_retries: 10\n", "lock_max_retries"),
    ("drift:\n  busy_retry_max_s: 4000\n", "busy_retry_max_s"),
])
def test_inconsistent_settings_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "App.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(environ={"STAT_GUARD_CONFIG": str(tmp_path / "absent.yaml")})


def test_long_task_safety_settings_of_the_app() -> None:
    import tasks.scheduled  # noqa: F401 - registers the drift task

    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    visibility = conf.broker_transport_options["visibility_timeout"]
    drift = app.tasks["stat_guard.run_model_drift"]
    assert drift.soft_time_limit < drift.time_limit < CONFIG.limits.model_lock_ttl_s
    batch = app.tasks["stat_guard.run_drift_batch"]
    assert (batch.soft_time_limit, batch.time_limit) == (drift.soft_time_limit,
                                                         drift.time_limit)
    assert CONFIG.limits.model_lock_ttl_s <= visibility
    defaults = celery_settings(FleetConfig())
    assert defaults["broker_transport_options"]["visibility_timeout"] == 3600
    assert defaults["task_routes"]["stat_guard.run_model_drift"] == {"queue": "drift"}
    assert defaults["task_routes"]["stat_guard.run_drift_batch"] == {"queue": "drift"}
    assert defaults["task_routes"]["stat_guard.run_ondemand_analysis"] == {"queue": "ondemand"}
    assert defaults["task_routes"]["stat_guard.consume_reactions"] == {"queue": "reactions"}


def test_every_setting_is_documented() -> None:
    docs = (ROOT / "docs" / "fleet.md").read_text()
    example = EXAMPLE.read_text()
    for section in dataclasses.fields(FleetConfig):
        if section.name == "source_path":
            continue
        for item in dataclasses.fields(getattr(FleetConfig(), section.name)):
            assert re.search(rf"\b{item.name}\b", example), f"{section.name}.{item.name}"
            assert f"`{section.name}.{item.name}`" in docs, f"{section.name}.{item.name}"


def test_local_configuration_is_ignored_by_git_and_the_templates_are_not() -> None:
    """App.yaml and .env hold passwords, webhook URLs and keys: never committed by mistake."""
    root = Path(__file__).resolve().parents[2]

    def ignored(path: str) -> bool:
        done = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=root)
        assert done.returncode in (0, 1)
        return done.returncode == 0

    assert ignored("Global_Configs/App.yaml") and ignored(".env")
    assert not ignored("Global_Configs/App.example.yaml") and not ignored(".env.example")
