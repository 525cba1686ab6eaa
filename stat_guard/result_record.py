"""The result record on the Redis Stream: one typed class for both producers (scheduled
drift runs and on-demand analyses) and every consumer (reactions, the metrics exporter,
the demo, the tests).

Redis keeps flat string fields. :meth:`ResultRecord.to_fields` writes them and
:meth:`ResultRecord.from_fields` reads them back, leniently: a missing or malformed value
reads as empty (``""``, ``None``, ``{}``), so each consumer decides what it cannot do
without. The fields are listed in docs/fleet.md ("The Stream record").
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SCHEDULED = "scheduled"
ONDEMAND = "ondemand"
SOURCES = (SCHEDULED, ONDEMAND)
# The verdicts a record may carry: the rule's four and "error" (nothing could be scored).
RECORD_VERDICTS = ("ok", "warning", "drift", "insufficient_data", "error")
# A run asked for by hand (``stat-guard run``) has a run id of its own, never a schedule
# slot's: ``<model>@manual-<UTC time to the microsecond>``; results and alerts name it so.
MANUAL_MARK = "@manual-"
TRIGGERS = ("scheduled", "manual")


def manual_run_id(model: str, now: datetime) -> str:
    return f"{model}{MANUAL_MARK}{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}"


def run_trigger(run_id: str) -> str:
    """``manual`` for a run id made by :func:`manual_run_id`, else ``scheduled``."""
    return "manual" if MANUAL_MARK in run_id else "scheduled"


# A record's error text (why a model could not be scored) is cut to this many characters.
ERROR_LIMIT_CHARS = 2000
# Redis Stream entries stay small: above this the per-feature JSON is cut down (to_fields).
FEATURES_LIMIT_BYTES = 60_000
# A column of the verdict JSON -> the record's figure of the same meaning.
_VERDICT_COLUMN_FIELDS = {"psi": "psi", "ks_statistic": "ks_statistic",
                          "ks_pvalue": "ks_pvalue", "kl_divergence": "kl", "js_distance": "js",
                          "wasserstein_normalized": "wasserstein", "verdict": "verdict",
                          "missing_rate_baseline": "missing_rate_baseline",
                          "missing_rate_current": "missing_rate_current", "error": "error"}


@dataclass(frozen=True)
class FeatureFigures:
    """One feature's figures in a record; numbers keep 6 significant digits on the stream."""

    verdict: str
    psi: float | None = None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    kl: float | None = None
    js: float | None = None
    wasserstein: float | None = None  # normalised by the baseline's spread
    missing_rate_baseline: float | None = None  # share of NULL, NaN and ±Inf values
    missing_rate_current: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"psi": figure(self.psi), "ks_statistic": figure(self.ks_statistic),
                "ks_pvalue": figure(self.ks_pvalue), "kl": figure(self.kl),
                "js": figure(self.js), "wasserstein": figure(self.wasserstein),
                "missing_rate_baseline": figure(self.missing_rate_baseline),
                "missing_rate_current": figure(self.missing_rate_current),
                "verdict": self.verdict, "error": self.error}

    @classmethod
    def from_verdict_column(cls, column: Mapping[str, Any]) -> FeatureFigures:
        """The figures of one column of the verdict JSON (docs/wire-format.md §4), which
        names some of them in full (``kl_divergence``, ``js_distance``,
        ``wasserstein_normalized``)."""
        return cls.from_json({ours: column.get(theirs)
                              for theirs, ours in _VERDICT_COLUMN_FIELDS.items()})

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> FeatureFigures:
        verdict, error = document.get("verdict"), document.get("error")
        return cls(verdict=verdict if isinstance(verdict, str) else "",
                   psi=parse_number(document.get("psi")),
                   ks_statistic=parse_number(document.get("ks_statistic")),
                   ks_pvalue=parse_number(document.get("ks_pvalue")),
                   kl=parse_number(document.get("kl")), js=parse_number(document.get("js")),
                   wasserstein=parse_number(document.get("wasserstein")),
                   missing_rate_baseline=parse_number(document.get("missing_rate_baseline")),
                   missing_rate_current=parse_number(document.get("missing_rate_current")),
                   error=str(error) if error else None)


@dataclass(frozen=True)
class ScheduledDetails:
    """What only a scheduled run reports."""

    model_drift: Mapping[str, Any]  # JSON: prediction figures, performance, error
    error_count: int
    historical_rows: int
    current_rows: int
    read_lock_s: float  # how long each phase held the DuckDB file
    write_lock_s: float

    def to_fields(self) -> dict[str, str]:
        return {"model_drift": _json(self.model_drift), "error_count": str(self.error_count),
                "historical_rows": str(self.historical_rows),
                "current_rows": str(self.current_rows),
                "read_lock_s": f"{self.read_lock_s:.3f}",
                "write_lock_s": f"{self.write_lock_s:.3f}"}

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> ScheduledDetails:
        model_drift = _loads(fields.get("model_drift"))
        return cls(model_drift=model_drift if isinstance(model_drift, dict) else {},
                   error_count=_integer(fields.get("error_count")) or 0,
                   historical_rows=_integer(fields.get("historical_rows")) or 0,
                   current_rows=_integer(fields.get("current_rows")) or 0,
                   read_lock_s=parse_number(fields.get("read_lock_s")) or 0.0,
                   write_lock_s=parse_number(fields.get("write_lock_s")) or 0.0)


@dataclass(frozen=True)
class OnDemandDetails:
    """What only an on-demand analysis reports: the analysed table and window."""

    table: str
    window_start: str
    window_end: str
    rows: int | None

    def to_fields(self) -> dict[str, str]:
        return {"table": self.table, "window_start": self.window_start,
                "window_end": self.window_end, "rows": "" if self.rows is None else str(self.rows)}

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> OnDemandDetails:
        return cls(table=fields.get("table", ""), window_start=fields.get("window_start", ""),
                   window_end=fields.get("window_end", ""),
                   rows=_integer(fields.get("rows")))


@dataclass(frozen=True)
class ResultRecord:
    """One result on the stream.

    ``drift_score`` is the model's largest PSI (``stat_guard.verdict.model_verdict``),
    None when undefined; ``details`` holds what only one source reports.
    """

    run_id: str
    model: str
    source: str  # SCHEDULED or ONDEMAND
    verdict: str
    drift_score: float | None
    features: Mapping[str, FeatureFigures] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    details: ScheduledDetails | OnDemandDetails | None = None
    features_truncated: bool = False  # the per-feature JSON was cut down to fit
    error: str = ""  # why the run could not score the model (verdict "error"), if known
    display_key: str = ""  # Redis key of the run's display summaries (stat_guard.display)

    @property
    def trigger(self) -> str:
        """What started the run: ``manual`` (``stat-guard run``), ``scheduled`` (a beat
        slot) or ``ondemand`` (the local signal)."""
        return run_trigger(self.run_id) if self.source == SCHEDULED else self.source

    def to_fields(self) -> dict[str, str]:
        """Flat str → str fields for ``XADD``, under about 60 kB.

        When the per-feature JSON would not fit, features judged ``ok`` keep only their
        verdict and ``features_truncated`` is "1". A verdict outside ``RECORD_VERDICTS``
        raises ValueError: the producer refuses it (consumers would park it).
        """
        if self.verdict not in RECORD_VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r} (expected one of "
                             f"{', '.join(RECORD_VERDICTS)})")
        features = {name: figures.to_json() for name, figures in self.features.items()}
        encoded = _json(features)
        truncated = self.features_truncated or len(encoded) > FEATURES_LIMIT_BYTES
        if len(encoded) > FEATURES_LIMIT_BYTES:
            features = {name: (value if value["verdict"] != "ok" else {"verdict": "ok"})
                        for name, value in features.items()}
            encoded = _json(features)[:FEATURES_LIMIT_BYTES]
        fields = {
            "run_id": self.run_id,
            "model": self.model,
            "source": self.source,
            "trigger": self.trigger,
            "verdict": self.verdict,
            "drift_score": number_text(self.drift_score),
            "features": encoded,
            "features_truncated": "1" if truncated else "0",
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": "" if self.duration_s is None else f"{self.duration_s:.6f}",
        }
        if self.error:
            fields["error"] = self.error[:ERROR_LIMIT_CHARS]
        if self.display_key:
            fields["display_key"] = self.display_key
        if self.details is not None:
            fields.update(self.details.to_fields())
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> ResultRecord:
        """A record from stream fields (str or bytes), or from the JSON copy the reaction
        task keeps per model; missing or malformed values read as empty."""
        text = {_text(key): _text(value) for key, value in fields.items()}
        source = text.get("source", "")
        details: ScheduledDetails | OnDemandDetails | None = None
        if source == SCHEDULED:
            details = ScheduledDetails.from_fields(text)
        elif source == ONDEMAND:
            details = OnDemandDetails.from_fields(text)
        return cls(run_id=text.get("run_id", ""), model=text.get("model", ""), source=source,
                   verdict=text.get("verdict", ""),
                   drift_score=parse_number(text.get("drift_score")),
                   features=_features(text.get("features")),
                   started_at=_timestamp(text.get("started_at")),
                   finished_at=_timestamp(text.get("finished_at")),
                   duration_s=parse_number(text.get("duration_s")), details=details,
                   features_truncated=text.get("features_truncated") == "1",
                   error=text.get("error", ""), display_key=text.get("display_key", ""))


def figure(value: float | None) -> float | None:
    """A number as the record keeps it: 6 significant digits, None when undefined."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def number_text(value: float | None) -> str:
    """A number as a stream field: 6 significant digits, "nan" when undefined."""
    rounded = figure(value)
    return "nan" if rounded is None else f"{rounded:.6g}"


def _features(text: str | None) -> dict[str, FeatureFigures]:
    document = _loads(text)  # a truncated record's JSON may be cut short: no features
    if not isinstance(document, dict):
        return {}
    return {str(name): FeatureFigures.from_json(figures)
            for name, figures in document.items() if isinstance(figures, dict)}


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat()


def _timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def parse_number(value: Any) -> float | None:
    """A number from a stream field (or a Redis counter); None when missing, malformed or
    not finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _integer(value: Any) -> int | None:
    number = parse_number(value)
    return None if number is None else int(number)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
