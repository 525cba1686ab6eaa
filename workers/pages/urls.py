"""The drift pages' URL scheme (relative paths), shared by the renderer's links
(workers/pages/render.py) and the alerts' links (tasks/reactions.py ``pages_links``);
imports nothing heavy, so the reaction task does not load the renderer."""

from __future__ import annotations

from urllib.parse import quote


def model_path(model: str) -> str:
    return f"/models/{quote(model, safe='')}"


def run_path(run_id: str) -> str:
    return f"/runs/{quote(run_id, safe='')}"


def report_path(run_id: str) -> str:
    return f"{run_path(run_id)}/report.html"
