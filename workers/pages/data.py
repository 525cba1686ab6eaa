"""What the pages and ``stat-guard report`` read: Redis only, as the metrics exporter
does (the newest stream entries, then the reaction task's ``latest:<source>`` hashes for
models not among them; workers/exporter.py), plus each result's display summaries
(workers/displays.py). Never the DuckDB file.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import redis

from stat_guard.display import DisplayError, RunDisplay, verdict_rank
from stat_guard.result_record import SOURCES, ResultRecord
from workers.config import FleetConfig
from workers.displays import display_key, load_display
from workers.exporter import newest_entries, parse_record, text
from workers.reaction_keys import latest_key, latest_records

# The newest stream entries (newest first, undecoded), as ``recent_entries`` reads them:
# read once a request and handed to each reader that needs them.
Entries = list[tuple[bytes, dict[bytes, bytes]]]


@dataclass(frozen=True)
class Result:
    """One result as the pages draw it: its stream record (None when only the summaries
    are left) and its display summaries (None when absent, expired or unreadable; then
    ``display_note`` says which)."""

    record: ResultRecord | None
    display: RunDisplay | None
    display_note: str = ""

    def _of(self, name: str) -> Any:
        """A field of the record, or of the summaries when only they are left."""
        return getattr(self.record if self.record is not None else self.display, name)

    run_id = property(lambda self: self._of("run_id"))
    model = property(lambda self: self._of("model"))
    verdict = property(lambda self: self._of("verdict"))
    drift_score = property(lambda self: self._of("drift_score"))
    finished_at = property(lambda self: self._of("finished_at"))  # datetime, or ISO text
    source = property(lambda self: self._of("source"))
    trigger = property(lambda self: self._of("trigger"))


@dataclass
class ModelResults:
    """A model's newest record of each source and its recent records, newest first."""

    latest: dict[str, ResultRecord] = field(default_factory=dict)
    history: list[ResultRecord] = field(default_factory=list)

    @property
    def newest(self) -> ResultRecord | None:
        records = list(self.latest.values())
        return max(records, key=_finish) if records else None


def worst_first(records: list[ResultRecord]) -> list[ResultRecord]:
    """Most severe verdict first, then the larger drift score, then the model's name."""
    return sorted(records, key=lambda r: (verdict_rank(r.verdict), -(r.drift_score or 0.0),
                                          r.model, r.source))


def _finish(record: ResultRecord) -> float:
    moment = record.finished_at or record.started_at
    return moment.timestamp() if moment else float("-inf")


def recent_entries(client: redis.Redis, config: FleetConfig) -> Entries:
    """The newest ``pages.scan_limit`` stream entries, newest first."""
    return list(newest_entries(client, config.stream.name, config.pages.scan_limit))


def _stored_records(client: redis.Redis, config: FleetConfig,
                    skip: Collection[tuple[str, str]] = ()) -> list[ResultRecord]:
    """The reaction task's stored records (``latest:<source>``) but the known ``skip``."""
    return latest_records(client, config.redis, parse=parse_record,
                          skip=lambda model, source: (text(model), source) in skip)


def latest_results(client: redis.Redis, config: FleetConfig) -> list[ResultRecord]:
    """The newest record of every (model, source), worst first."""
    latest: dict[tuple[str, str], ResultRecord] = {}
    for _entry_id, fields in newest_entries(client, config.stream.name,
                                            config.pages.scan_limit):
        key = (text(fields.get(b"model", b"")), text(fields.get(b"source", b"")))
        if key in latest:
            continue
        record = parse_record(fields)
        if record is not None:
            latest.setdefault((record.model, record.source), record)
    for record in _stored_records(client, config, set(latest)):
        latest.setdefault((record.model, record.source), record)
    return worst_first(list(latest.values()))


def _stored_record(client: redis.Redis, config: FleetConfig, model: str, source: str
                   ) -> ResultRecord | None:
    """``model``'s record the reaction task kept in ``latest:<source>``, or None."""
    document = client.hget(latest_key(config.redis, source), model)
    if document is None:
        return None
    try:
        fields = json.loads(document)
    except ValueError:
        return None
    record = parse_record(fields) if isinstance(fields, dict) else None
    return record if record is not None and record.model == model else None


def model_results(client: redis.Redis, config: FleetConfig, model: str,
                  entries: Entries | None = None) -> ModelResults:
    """``model``'s newest record per source and its last ``pages.history`` records
    (among ``entries`` when the newest entries were read already)."""
    found = ModelResults()
    wanted = model.encode()
    for _entry_id, fields in (recent_entries(client, config) if entries is None
                              else entries):
        if fields.get(b"model") != wanted:
            continue
        record = parse_record(fields)
        if record is None:
            continue
        found.latest.setdefault(record.source, record)
        if len(found.history) < config.pages.history:
            found.history.append(record)
    for source in SOURCES:
        if source in found.latest:
            continue
        record = _stored_record(client, config, model, source)
        if record is not None:
            found.latest.setdefault(record.source, record)
            if not found.history:
                found.history.append(record)
    return found


def find_run(client: redis.Redis, config: FleetConfig, run_id: str,
             entries: Entries | None = None) -> ResultRecord | None:
    """The record of ``run_id``: among the newest stream entries (``entries`` when read
    already), else the latest hashes."""
    wanted = run_id.encode()
    for _entry_id, fields in (newest_entries(client, config.stream.name,
                                             config.pages.scan_limit)
                              if entries is None else entries):
        if fields.get(b"run_id") == wanted:
            record = parse_record(fields)
            if record is not None:
                return record
    for record in _stored_records(client, config):
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


def find_result(client: redis.Redis, config: FleetConfig, run_id: str,
                entries: Entries | None = None) -> Result | None:
    return with_display(client, config, find_run(client, config, run_id, entries), run_id)


def newest_result(client: redis.Redis, config: FleetConfig, model: str,
                  entries: Entries | None = None) -> tuple[Result | None, ModelResults]:
    results = model_results(client, config, model, entries)
    newest = results.newest
    if newest is None:
        return None, results
    return with_display(client, config, newest), results

