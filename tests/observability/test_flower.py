"""Flower with basic auth over a real Celery worker (Redis database 11): the API lists the
fleet's registered tasks, /metrics serves Celery's task metrics to Prometheus, and headless
Chromium takes a screenshot of the dashboard.

``make flower-screenshot`` runs this test with FLOWER_SCREENSHOT=docs/img/flower.png to
refresh the picture in the documentation.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from tests.local import free_port, wait_for
from tests.observability.conftest import (
    CONFIG,
    ROOT,
    Processes,
    http_get,
    require_tool,
    subprocess_env,
)
from workers import routing

USER, PASSWORD = "observer", "flower-test-password"
FLEET_TASKS = {routing.SCHEDULE_DRIFT_RUNS, routing.RUN_MODEL_DRIFT, routing.RUN_DRIFT_BATCH,
               routing.RUN_ONDEMAND_ANALYSIS, routing.REFRESH_BASELINES,
               routing.CONSUME_REACTIONS}


def _auth() -> dict[str, str]:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def screenshot(url: str, output: Path, workdir: Path) -> bytes:
    chromium = require_tool("chromium")
    browser = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", f"--user-data-dir={workdir / 'chromium-profile'}",
         "--virtual-time-budget=4000", f"--screenshot={output}", "--window-size=1280,800",
         url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        _out, errors = browser.communicate(timeout=90)
    finally:
        try:  # Chromium's renderer and helper processes share its process group
            os.killpg(browser.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        browser.wait()
    assert output.exists(), (errors or "")[-2000:]
    return output.read_bytes()


def test_flower_lists_the_fleet_tasks_serves_metrics_and_renders(
        processes: Processes, redis_db: redis.Redis, tmp_path: Path) -> None:
    node = f"obs-{uuid.uuid4().hex[:6]}@flower-test"
    queues = ",".join((CONFIG.queues.drift, CONFIG.queues.ondemand, CONFIG.queues.reactions))
    worker = processes.start("worker", [
        sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queues,
        "-c", "1", "-n", node, "-E", "-l", "info", "--without-gossip", "--without-mingle"])
    port = free_port()
    flower = processes.start("flower", [sys.executable, "-m", "workers.flower"],
                             subprocess_env(STAT_GUARD_FLOWER_PORT=str(port),
                                            STAT_GUARD_FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}"))
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: " ready." in worker.log() or not worker.alive(), timeout=60,
             what="the worker")
    assert worker.alive(), worker.log()[-3000:]

    def flower_answers() -> bool:
        assert flower.alive(), flower.log()[-3000:]
        try:
            return http_get(f"{base}/healthcheck", timeout=5)[0] == 200
        except OSError:
            return False

    wait_for(flower_answers, timeout=60, what="Flower", interval=0.3)

    # basic auth guards the pages and the API
    assert http_get(f"{base}/")[0] == 401
    assert http_get(f"{base}/api/workers")[0] == 401

    def registered() -> set[str]:
        status, body = http_get(f"{base}/api/workers?refresh=1", timeout=20, headers=_auth())
        assert status == 200, body[:300]
        info = json.loads(body).get(node) or {}
        return set(info.get("registered") or [])

    tasks = wait_for(registered, timeout=60, what="Flower to list the worker's tasks",
                     interval=1.0)
    assert FLEET_TASKS <= tasks

    # Prometheus scrapes Flower's own metrics without credentials
    def worker_online() -> str:
        status, body = http_get(f"{base}/metrics")
        assert status == 200
        text = body.decode()
        return text if f'flower_worker_online{{worker="{node}"}} 1.0' in text else ""

    metrics = wait_for(worker_online, timeout=30, what="flower_worker_online", interval=0.5)
    assert "# TYPE flower_events_total counter" in metrics

    # a person's view of the dashboard
    output = tmp_path / "flower.png"
    data = screenshot(f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/", output, tmp_path)
    assert png_size(data) == (1280, 800)
    assert len(data) > 20_000, f"suspiciously small screenshot: {len(data)} bytes"
    keep = os.environ.get("FLOWER_SCREENSHOT")
    if keep:
        shutil.copyfile(output, ROOT / keep)


def test_flower_refuses_to_start_without_credentials() -> None:
    result = subprocess.run([sys.executable, "-m", "workers.flower"], cwd=ROOT,
                            env=subprocess_env(STAT_GUARD_FLOWER_BASIC_AUTH=""),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "basic_auth" in result.stderr


@pytest.mark.parametrize("data", [b"", b"GIF89a" + b"\0" * 30])
def test_png_check_rejects_other_files(data: bytes) -> None:
    with pytest.raises(AssertionError):
        png_size(data)
