"""What the pages and ``stat-guard report`` read: Redis only, as the metrics exporter
does (the newest stream entries, then the reaction task's ``latest:<source>`` hashes for
models not among them; workers/exporter.py), plus each result's display summaries
(workers/displays.py). Never the DuckDB file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import redis

from stat_guard.display import VERDICTS, DisplayError, RunDisplay
from stat_guard.result_record import SOURCES, ResultRecord
from workers.config import FleetConfig
from workers.displays import display_key, load_display
from workers.exporter import newest_entries, parse_record
from workers.reaction_keys import latest_documents


@dataclass(frozen=True)
class Result:
    """One result as the pages draw it: its stream record (None when only the summaries
    are left) and its display summaries (None when absent, expired or unreadable; then
    ``display_note`` says which)."""

    record: ResultRecord | None
    display: RunDisplay | None
    display_note: str = ""

    @property
    def run_id(self) -> str:
        return self.record.run_id if self.record else self.display.run_id  # type: ignore

    @property
    def model(self) -> str:
        return self.record.model if self.record else self.display.model  # type: ignore


@dataclass
class ModelResults:
    """A model's newest record of each source and its recent records, newest first."""

    latest: dict[str, ResultRecord] = field(default_factory=dict)
    history: list[ResultRecord] = field(default_factory=list)

    @property
    def newest(self) -> ResultRecord | None:
        records = list(self.latest.values())
        return max(records, key=_finish) if records else None


def verdict_rank(verdict: str) -> int:
    return VERDICTS.index(verdict) if verdict in VERDICTS else len(VERDICTS)


def worst_first(records: list[ResultRecord]) -> list[ResultRecord]:
    """Most severe verdict first, then the larger drift score, then the model's name."""
    return sorted(records, key=lambda r: (verdict_rank(r.verdict), -(r.drift_score or 0.0),
                                          r.model, r.source))


def _finish(record: ResultRecord) -> float:
    moment = record.finished_at or record.started_at
    return moment.timestamp() if moment else float("-inf")


def _stored_records(client: redis.Redis, config: FleetConfig, skip: set[tuple[str, str]]
                    ) -> Iterator[ResultRecord]:
    for source in SOURCES:
        for _model, document in latest_documents(
                client, config.redis, source,
                skip=lambda m, source=source: (_text(m), source) in skip):
            try:
                fields = json.loads(document)
            except ValueError:
                continue
            record = parse_record(fields) if isinstance(fields, dict) else None
            if record is not None:
                yield record


def latest_results(client: redis.Redis, config: FleetConfig) -> list[ResultRecord]:
    """The newest record of every (model, source), worst first."""
    latest: dict[tuple[str, str], ResultRecord] = {}
    for _entry_id, fields in newest_entries(client, config.stream.name,
                                            config.pages.scan_limit):
        key = (_text(fields.get(b"model", b"")), _text(fields.get(b"source", b"")))
        if key in latest:
            continue
        record = parse_record(fields)
        if record is not None:
            latest.setdefault((record.model, record.source), record)
    for record in _stored_records(client, config, set(latest)):
        latest.setdefault((record.model, record.source), record)
    return worst_first(list(latest.values()))


def model_results(client: redis.Redis, config: FleetConfig, model: str) -> ModelResults:
    """``model``'s newest record per source and its last ``pages.history`` records."""
    found = ModelResults()
    wanted = model.encode()
    for _entry_id, fields in newest_entries(client, config.stream.name,
                                            config.pages.scan_limit):
        if fields.get(b"model") != wanted:
            continue
        record = parse_record(fields)
        if record is None:
            continue
        found.latest.setdefault(record.source, record)
        if len(found.history) < config.pages.history:
            found.history.append(record)
    for record in _stored_records(client, config,
                                  {(model, source) for source in found.latest}):
        if record.model == model:
            found.latest.setdefault(record.source, record)
            if not found.history:
                found.history.append(record)
    return found


def find_run(client: redis.Redis, config: FleetConfig, run_id: str) -> ResultRecord | None:
    """The record of ``run_id``: among the newest stream entries, else the latest hashes."""
    wanted = run_id.encode()
    for _entry_id, fields in newest_entries(client, config.stream.name,
                                            config.pages.scan_limit):
        if fields.get(b"run_id") == wanted:
            record = parse_record(fields)
            if record is not None:
                return record
    for record in _stored_records(client, config, set()):
        if record.run_id == run_id:
            return record
    return None


def with_display(client: redis.Redis, config: FleetConfig,
                 record: ResultRecord | None, run_id: str = "") -> Result | None:
    """``record`` with its display summaries; with no record, the summaries stored under
    ``run_id`` alone (the stream may have been trimmed). None when there is neither."""
    key = record.display_key if record is not None else display_key(config.redis, run_id)
    if record is not None and not record.display_key:
        return Result(record, None, "This result carries no distributions (it was "
                                    "published without display summaries).")
    try:
        display = load_display(client, key)
    except DisplayError as exc:
        if record is None:
            return None
        return Result(record, None, f"The distributions of this result could not be read "
                                    f"({exc}).")
    if display is None:
        if record is None:
            return None
        return Result(record, None, "The distributions of this result have expired (its "
                                    "display summaries are kept for a limited time); its "
                                    "figures are shown without them.")
    return Result(record, display)


def find_result(client: redis.Redis, config: FleetConfig, run_id: str) -> Result | None:
    return with_display(client, config, find_run(client, config, run_id), run_id)


def newest_result(client: redis.Redis, config: FleetConfig, model: str
                  ) -> tuple[Result | None, ModelResults]:
    results = model_results(client, config, model)
    newest = results.newest
    if newest is None:
        return None, results
    return with_display(client, config, newest), results


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
