"""Settings of a scheduled drift run over DuckDB: which rows form each window, bins, limits.

The one definition of each setting, its default and its checks; the fleet's configuration
(workers/config.py) takes its ``windows`` section and its drift and DuckDB defaults from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stat_guard.categories import DEFAULT_MAX_CATEGORIES
from stat_guard.verdict import DEFAULT_THRESHOLDS, Thresholds


class ConfigError(ValueError):
    """Settings that are malformed or inconsistent (the fleet's configuration raises it too)."""


@dataclass(frozen=True)
class WindowConfig:
    """The owner's window selection, as fractions of a table's rows ordered by time.

    Current window: the most recent ``current_fraction`` of rows. Historical window: the
    rows from ``historical_start`` to ``historical_end`` of the way through, ending before
    the current window starts. A window with more than ``max_rows_per_window`` rows is
    sampled reproducibly by a hash of each row's key and ``seed`` (see
    docs/scheduled-drift.md). The fleet's ``windows`` section is this type.
    """

    current_fraction: float = 0.05  # the newest 5% of rows by time
    historical_start: float = 0.5  # the historical window from 50% ...
    historical_end: float = 0.7  # ... to 70% of the way through
    max_rows_per_window: int = 500_000  # above: a hash(key, seed) sample of this size
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.current_fraction < 1:
            raise ConfigError("windows.current_fraction must be in (0, 1)")
        if not 0 <= self.historical_start < self.historical_end <= 1 - self.current_fraction:
            raise ConfigError("windows need 0 <= historical_start < historical_end "
                              "<= 1 - current_fraction")
        if self.max_rows_per_window < 1:
            raise ConfigError("windows.max_rows_per_window must be positive")


@dataclass(frozen=True)
class DriftRunConfig:
    """Everything one drift run needs besides the database path and the model."""

    windows: WindowConfig = field(default_factory=WindowConfig)
    psi_bins: int = 10
    ks_bins: int = 1000  # fine quantile bins for binned KS and Wasserstein
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    max_categories: int = DEFAULT_MAX_CATEGORIES  # beyond: the rarest categories pooled
    duckdb_threads: int = 1
    duckdb_memory_limit: str = "16MB"
    # A single feature that runs out of memory under duckdb_memory_limit (a categorical
    # column with hundreds of thousands of distinct values, say) is retried alone under
    # this larger limit before it gets an error entry.
    duckdb_memory_limit_max: str = "128MB"
    # Count the cells with the engine's own DuckDB extension when it is built
    # (scripts/build_duckdb_cells.py); False, or no build: a GROUP BY, the same cells.
    native_cells: bool = True
    lock_attempts: int = 8  # opening a locked file: retries with backoff and jitter
    lock_base_delay_s: float = 0.2
    lock_max_delay_s: float = 5.0
    # Where the write phase copies the model's newest rows and model_metadata as Parquet
    # (stat_guard/scheduled/export.py); "" writes no copy.
    results_dir: str = ""

    def __post_init__(self) -> None:
        if self.psi_bins < 2 or self.ks_bins < 2:
            raise ConfigError("psi_bins and ks_bins must be >= 2")
        if self.max_categories < 2:
            raise ConfigError("max_categories must be >= 2")
        if self.duckdb_threads < 1 or self.lock_attempts < 1:
            raise ConfigError("duckdb_threads and lock_attempts must be >= 1")
        if self.lock_base_delay_s < 0 or self.lock_max_delay_s < self.lock_base_delay_s:
            raise ConfigError("need 0 <= lock_base_delay_s <= lock_max_delay_s")


DEFAULT_CONFIG = DriftRunConfig()
