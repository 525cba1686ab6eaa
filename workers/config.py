"""The fleet's configuration, read once: ``Global_Configs/App.yaml`` (or the file named by
``STAT_GUARD_CONFIG``), falling back to the defaults of ``App.example.yaml``, then
``STAT_GUARD_<SECTION>_<KEY>`` environment variables on top.

Every other module asks :func:`get_config` and never reads the environment itself.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

from stat_guard.scheduled.config import DEFAULT_CONFIG as ENGINE_DEFAULTS
from stat_guard.scheduled.config import ConfigError, DriftRunConfig, WindowConfig
from stat_guard.scheduled.export import default_results_dir
from stat_guard.verdict import Thresholds

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_PATH = ROOT / "Global_Configs" / "App.yaml"
CONFIG_PATH_VARIABLE = "STAT_GUARD_CONFIG"
ENV_PREFIX = "STAT_GUARD_"


@dataclass(frozen=True)
class PostgresConfig:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    database: str = "test"
    connect_timeout_s: int = 5
    application_name: str = "stat_guard_worker"

    def conninfo(self) -> str:
        """A libpq connection string (the password only when one is set)."""
        parts = {"host": self.host, "port": self.port, "user": self.user,
                 "dbname": self.database, "connect_timeout": self.connect_timeout_s,
                 "application_name": self.application_name}
        if self.password:
            parts["password"] = self.password
        return " ".join(f"{key}={_libpq_quote(str(value))}" for key, value in parts.items())


@dataclass(frozen=True)
class RedisConfig:
    host: str = "127.0.0.1"
    port: int = 6379
    username: str = ""
    password: str = ""
    db: int = 0
    key_prefix: str = "stat_guard"  # every key the fleet writes itself starts with this
    socket_timeout_s: float = 30.0
    socket_connect_timeout_s: float = 5.0

    def url(self) -> str:
        """``redis://`` URL for Celery's broker and result backend."""
        auth = ""
        if self.password:
            auth = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@"
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"

    def key(self, *parts: str) -> str:
        return ":".join((self.key_prefix, *parts))


@dataclass(frozen=True)
class DuckDBConfig:
    path: str = "data/stat_guard.duckdb"
    threads: int = ENGINE_DEFAULTS.duckdb_threads
    memory_limit: str = ENGINE_DEFAULTS.duckdb_memory_limit
    memory_limit_max: str = ENGINE_DEFAULTS.duckdb_memory_limit_max
    lock_attempts: int = ENGINE_DEFAULTS.lock_attempts
    lock_base_delay_s: float = ENGINE_DEFAULTS.lock_base_delay_s
    lock_max_delay_s: float = ENGINE_DEFAULTS.lock_max_delay_s
    # After each run, the model's newest rows and model_metadata as Parquet in results_dir
    # ("" = beside the file: data/x.duckdb -> data/x.results/), for readers that must not
    # hold the DuckDB file (docs/scheduled-drift.md, "Reading results while the fleet runs").
    export_results: bool = True
    results_dir: str = ""


@dataclass(frozen=True)
class DriftConfig:
    psi_bins: int = ENGINE_DEFAULTS.psi_bins
    ks_bins: int = ENGINE_DEFAULTS.ks_bins
    max_categories: int = ENGINE_DEFAULTS.max_categories  # the rarest beyond it are pooled
    nice: int = 19  # OS niceness of the drift worker's pool processes
    sched_idle: bool = True  # ... and Linux's SCHED_IDLE scheduling class
    busy_max_retries: int = 6  # DuckDB file stayed locked: retries of the task
    busy_retry_base_s: float = 30.0
    busy_retry_max_s: float = 600.0
    lock_retry_countdown_s: float = 60.0  # another run holds the model's lock
    lock_max_retries: int = 60
    # The hourly schedule runs the models of one feature table as one task: at most this
    # many models a task (a larger group is split), all within one drift time limit.
    batch_max_models: int = 50

    def __post_init__(self) -> None:
        if self.batch_max_models < 1:
            raise ConfigError("drift.batch_max_models must be at least 1")


@dataclass(frozen=True)
class ScheduleConfig:
    drift_interval_s: float = 3600.0
    # Send the drift entry once when beat starts (the slot's run ids make a restart within
    # one interval a no-op), then every drift_interval_s.
    drift_run_at_start: bool = True
    baseline_refresh_interval_s: float = 86400.0
    reactions_interval_s: float = 10.0


@dataclass(frozen=True)
class QueuesConfig:
    drift: str = "drift"
    ondemand: str = "ondemand"
    reactions: str = "reactions"


@dataclass(frozen=True)
class LimitsConfig:
    """Long-task safety. Order enforced: soft < hard < model lock TTL <= visibility."""

    visibility_timeout_s: float = 3600.0
    drift_soft_time_limit_s: float = 3000.0
    drift_time_limit_s: float = 3300.0
    model_lock_ttl_s: float = 3500.0
    ondemand_soft_time_limit_s: float = 30.0
    ondemand_time_limit_s: float = 60.0
    reactions_soft_time_limit_s: float = 120.0
    reactions_time_limit_s: float = 180.0
    unacked_restore_interval_s: int = 10  # how often a worker looks for lost messages
    unacked_restore_throttle: int = 10  # ... and scans on every Nth look
    result_expires_s: int = 86400

    def __post_init__(self) -> None:
        if not (0 < self.drift_soft_time_limit_s < self.drift_time_limit_s
                < self.model_lock_ttl_s <= self.visibility_timeout_s):
            raise ConfigError(
                "limits need drift_soft_time_limit_s < drift_time_limit_s < "
                "model_lock_ttl_s <= visibility_timeout_s")
        for soft, hard, name in (
                (self.ondemand_soft_time_limit_s, self.ondemand_time_limit_s, "ondemand"),
                (self.reactions_soft_time_limit_s, self.reactions_time_limit_s, "reactions")):
            if not 0 < soft < hard < self.visibility_timeout_s:
                raise ConfigError(f"limits need 0 < {name}_soft_time_limit_s < "
                                  f"{name}_time_limit_s < visibility_timeout_s")


@dataclass(frozen=True)
class StreamConfig:
    name: str = "stat_guard:results"
    maxlen: int = 10_000  # approximate (MAXLEN ~)
    group: str = "stat_guard-reactions"
    claim_idle_s: float = 300.0  # pending this long: the consumer is presumed dead
    batch_size: int = 100
    max_deliveries: int = 5  # an entry that failed this often is given up (and counted)
    published_ttl_s: int = 7 * 86400  # how long "run id already published" is remembered
    drain_time_budget_s: float = 60.0  # one reaction task stops reading after this


@dataclass(frozen=True)
class ReactionsConfig:
    webhook_url: str = ""  # empty: alerts are only logged and counted
    webhook_format: str = "alertmanager"  # or "slack"
    webhook_timeout_s: float = 5.0
    marker_ttl_s: int = 7 * 86400  # "already reacted to this run id"
    warnings_maxlen: int = 1000
    flag_ondemand: bool = False  # flag_model for on-demand drift too (model must exist)
    # A model still in drift (or still failing) is reminded of this long after the last
    # notification, at its next such run; the runs between send nothing.
    remind_after_s: float = 4 * 3600.0
    state_ttl_s: int = 30 * 86400  # a (model, source)'s alert state outlives its last run

    def __post_init__(self) -> None:
        if self.webhook_format not in ("alertmanager", "slack"):
            raise ConfigError("reactions.webhook_format must be 'alertmanager' or 'slack'")
        if not self.remind_after_s > 0:
            raise ConfigError("reactions.remind_after_s must be above 0")
        if self.state_ttl_s < 1:
            raise ConfigError("reactions.state_ttl_s must be at least 1")


@dataclass(frozen=True)
class OnDemandConfig:
    window: str = "15 minutes"
    source: str = ""  # empty: the extension's pg_stat_guard.source setting
    time_column: str = ""
    value_columns: tuple[str, ...] = ()
    # Integer value columns to analyse as categories (text, boolean and enum columns are
    # categorical without being listed); empty: the extension's
    # pg_stat_guard.category_columns setting.
    category_columns: tuple[str, ...] = ()
    model: str = ""  # the model name written in stream records (default: the source)
    statement_timeout_ms: int = 10_000
    cooldown_s: float = 300.0
    sigmas: float = 3.0
    warmup: int = 30
    busy_max_retries: int = 3
    busy_retry_s: float = 5.0
    pause_local_drift: bool = True  # stop this host's drift runs while an analysis runs
    pause_max_s: float = 30.0  # ... and never longer than this without a new analysis


@dataclass(frozen=True)
class BaselineSource:
    source: str
    time_column: str
    value_columns: tuple[str, ...]
    lookback: str = "7 days"  # the baseline window is [now() - lookback, now() - end_offset)
    end_offset: str = "0 seconds"
    compression: int | None = None
    category_columns: tuple[str, ...] = ()  # integer columns kept as category tables


@dataclass(frozen=True)
class BaselinesConfig:
    sources: tuple[BaselineSource, ...] = ()
    statement_timeout_ms: int = 600_000


@dataclass(frozen=True)
class FlowerConfig:
    address: str = "127.0.0.1"
    port: int = 5555
    basic_auth: str = ""  # "user:password[,user2:password2]"; empty refuses to start


@dataclass(frozen=True)
class ExporterConfig:
    """The metrics exporter (workers/exporter.py, docs/observability.md)."""

    # Per-feature series beyond the default verdict and missing-share increase: names from
    # workers.exporter_text.OPTIONAL_FEATURE_SERIES (psi, ks_statistic, ...) or "all".
    feature_series: tuple[str, ...] = ()
    # Scrapes arriving while a build runs are served that build; with max_age_s > 0, so is a
    # scrape arriving within max_age_s after a build began (results that much older).
    max_age_s: float = 0.0
    # At most this many features of one model get series (the drift, warning and error ones
    # first, then the rest by name); stat_guard_model_features_omitted counts the others.
    max_features_per_model: int = 1000


@dataclass(frozen=True)
class PagesConfig:
    """The drift pages (workers/pages, docs/pages.md): server-rendered HTML of the results,
    read from Redis like the exporter."""

    host: str = "127.0.0.1"
    port: int = 8090
    # "user:password[,user2:password2]" and/or a token (``?token=`` or ``Authorization:
    # Bearer``); with neither the pages start only on a loopback address.
    basic_auth: str = ""
    token: str = ""
    public_url: str = ""  # where people reach the pages (links in alerts); "" = no links
    history: int = 50  # a model's recent results drawn on its page
    scan_limit: int = 2000  # newest stream entries read per page

    def __post_init__(self) -> None:
        if self.basic_auth and any(":" not in pair for pair in self.basic_auth.split(",")):
            raise ConfigError("pages.basic_auth must be user:password[,user2:password2]")
        if self.history < 1 or self.scan_limit < 1:
            raise ConfigError("pages.history and pages.scan_limit must be at least 1")


@dataclass(frozen=True)
class DisplayConfig:
    """Display summaries of results (stat_guard.display, workers/displays.py)."""

    ttl_s: int = 30 * 86400  # a run's summaries expire from Redis this long after the run

    def __post_init__(self) -> None:
        if self.ttl_s < 1:
            raise ConfigError("display.ttl_s must be at least 1")


@dataclass(frozen=True)
class TestingConfig:
    """Fault-injection pauses for the fleet's tests; zero in production."""

    drift_delay_s: float = 0.0  # sleep inside a drift run, after the lock, before the engine
    reaction_delay_s: float = 0.0  # sleep after reading an entry, before acting on it


@dataclass(frozen=True)
class FleetConfig:
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    duckdb: DuckDBConfig = field(default_factory=DuckDBConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    queues: QueuesConfig = field(default_factory=QueuesConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    reactions: ReactionsConfig = field(default_factory=ReactionsConfig)
    ondemand: OnDemandConfig = field(default_factory=OnDemandConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    flower: FlowerConfig = field(default_factory=FlowerConfig)
    exporter: ExporterConfig = field(default_factory=ExporterConfig)
    pages: PagesConfig = field(default_factory=PagesConfig)

    display: DisplayConfig = field(default_factory=DisplayConfig)
    testing: TestingConfig = field(default_factory=TestingConfig)
    source_path: str = ""  # the file read, or "" for built-in defaults

    def __post_init__(self) -> None:
        self.drift_run_config()  # the engine's own checks of its settings
        # A run whose pool process died keeps its lock until the TTL; the redelivered run
        # must be willing to wait that long.
        waited = self.drift.lock_retry_countdown_s * self.drift.lock_max_retries
        if waited < self.limits.model_lock_ttl_s:
            raise ConfigError("drift.lock_retry_countdown_s * drift.lock_max_retries must "
                              "cover limits.model_lock_ttl_s")
        # A retry waiting longer than the visibility timeout would be delivered twice.
        longest = max(self.drift.busy_retry_max_s, self.drift.lock_retry_countdown_s,
                      self.ondemand.busy_retry_s)
        if longest >= self.limits.visibility_timeout_s:
            raise ConfigError("retry countdowns (drift.busy_retry_max_s, "
                              "drift.lock_retry_countdown_s, ondemand.busy_retry_s) must be "
                              "below limits.visibility_timeout_s")


    def drift_run_config(self) -> DriftRunConfig:
        """The engine's settings for one drift run (DuckDB threads and memory are capped
        here: the drift worker must never starve the machine)."""
        duckdb = self.duckdb
        return DriftRunConfig(
            windows=self.windows, psi_bins=self.drift.psi_bins, ks_bins=self.drift.ks_bins,
            max_categories=self.drift.max_categories, thresholds=self.thresholds,
            duckdb_threads=duckdb.threads, duckdb_memory_limit=duckdb.memory_limit,
            duckdb_memory_limit_max=duckdb.memory_limit_max,
            lock_attempts=duckdb.lock_attempts, lock_base_delay_s=duckdb.lock_base_delay_s,
            lock_max_delay_s=duckdb.lock_max_delay_s, results_dir=self.results_dir())

    def results_dir(self) -> str:
        """Where the drift worker writes the Parquet copy of results ("" when turned off)."""
        duckdb = self.duckdb
        if not duckdb.export_results:
            return ""
        return duckdb.results_dir or default_results_dir(duckdb.path)


def load_config(path: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> FleetConfig:
    """Build the configuration: file (if any), then environment overrides.

    ``path`` defaults to ``$STAT_GUARD_CONFIG``, else ``Global_Configs/App.yaml`` when it
    exists; with neither, the built-in defaults (the values of ``App.example.yaml``).
    """
    environ = os.environ if environ is None else environ
    explicit = path or environ.get(CONFIG_PATH_VARIABLE)
    config_path = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    document: dict[str, Any] = {}
    if explicit or config_path.exists():
        document = _read_yaml(config_path)
    sections: dict[str, Any] = {}
    for section in fields(FleetConfig):
        if section.name == "source_path":
            continue
        raw = document.get(section.name) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{section.name}: expected a mapping")
        sections[section.name] = _build_section(section.name, _section_type(section), raw,
                                                environ)
    unknown = set(document) - {f.name for f in fields(FleetConfig)}
    if unknown:
        raise ConfigError(f"unknown configuration sections: {sorted(unknown)}")
    return FleetConfig(**sections, source_path=str(config_path) if document else "")


@functools.lru_cache(maxsize=1)
def get_config() -> FleetConfig:
    """The process's configuration, read on first use and kept."""
    return load_config()


def env_name(section: str, key: str) -> str:
    """The environment variable overriding ``section.key``."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


# ---- parsing ------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return document


def _section_type(section: dataclasses.Field) -> type:
    hints = typing.get_type_hints(FleetConfig)
    return hints[section.name]


def _build_section(name: str, cls: type, raw: dict[str, Any],
                   environ: Mapping[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{name}: unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {}
    for item in fields(cls):
        kind = hints[item.name]
        variable = env_name(name, item.name)
        if variable in environ and _env_overridable(kind):
            values[item.name] = _coerce(f"{variable}", kind, environ[variable], from_env=True)
        elif item.name in raw:
            values[item.name] = _coerce(f"{name}.{item.name}", kind, raw[item.name])
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def _env_overridable(kind: Any) -> bool:
    origin = typing.get_origin(kind)
    if origin is tuple:
        return typing.get_args(kind)[0] is str
    return True


def _coerce(where: str, kind: Any, value: Any, from_env: bool = False) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value is None or (from_env and value == ""):
            return None
        return _coerce(where, inner[0], value, from_env)
    if origin is tuple:
        element = args[0]
        if from_env:
            value = [part.strip() for part in str(value).split(",") if part.strip()]
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list")
        return tuple(_coerce(f"{where}[{i}]", element, v) for i, v in enumerate(value))
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping")
        return _build_section(where, kind, value, {})
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if kind is int:
            if isinstance(value, bool):
                raise ValueError("not an integer")
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            return "" if value is None else str(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    raise ConfigError(f"{where}: unsupported type {kind!r}")


def _libpq_quote(value: str) -> str:
    if value and all(ch.isalnum() or ch in "._-/:" for ch in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
