"""``stat-guard report RESULT -o FILE``: one result as a self-contained HTML file (inline
CSS and SVG, nothing loaded from anywhere), drawn by the pages' renderer
(workers/pages/render.py), read from Redis (workers/pages/data.py), never the DuckDB file.
"""

from __future__ import annotations

import redis

from stat_guard.result_record import ResultRecord
from workers.config import FleetConfig
from workers.pages import data, render


def resolve(client: redis.Redis, config: FleetConfig, result: str
            ) -> tuple[data.Result, list[ResultRecord]] | None:
    """``result`` as a run id, else as a model name (its newest result); with the model's
    recent results. None when Redis holds neither."""
    entries = data.recent_entries(client, config)
    found = data.find_result(client, config, result, entries)
    if found is not None:
        return found, data.model_results(client, config, found.model, entries).history
    newest, results = data.newest_result(client, config, result, entries)
    if newest is None:
        return None
    return newest, results.history


def file_name(run_id: str) -> str:
    """The report's file name: ``stat_guard-<run id>.html``, unsafe characters replaced."""
    safe = "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in run_id)[:150]
    return f"stat_guard-{safe}.html"


def render_report(found: data.Result, history: list[ResultRecord], config: FleetConfig
                  ) -> str:
    return render.report(found, history, config.thresholds)
