"""How the processes start: beat's schedule, Flower behind basic auth."""

from __future__ import annotations

import base64
import dataclasses
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from beat_schedule import build_beat_schedule
from tests.fleet.conftest import CONFIG, ROOT, Fleet
from tests.local import free_port, wait_for
from workers.config import BaselinesConfig, BaselineSource
from workers.routing import CONSUME_REACTIONS, REFRESH_BASELINES, SCHEDULE_DRIFT_RUNS


def test_beat_schedule_entries_expire_and_skip_baselines_when_none_configured() -> None:
    schedule = build_beat_schedule(CONFIG)
    assert {e["task"] for e in schedule.values()} == {SCHEDULE_DRIFT_RUNS, CONSUME_REACTIONS}
    assert schedule["drift-runs"]["schedule"].total_seconds() == 3600
    assert all(e["options"]["expires"] == e["schedule"].total_seconds()
               for e in schedule.values())
    with_baselines = dataclasses.replace(CONFIG, baselines=BaselinesConfig(sources=(
        BaselineSource("public.events", "created_at", ("amount",)),)))
    entry = build_beat_schedule(with_baselines)["baseline-refresh"]
    assert entry["task"] == REFRESH_BASELINES
    assert entry["schedule"].total_seconds() == 86400


def _status(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_flower_refuses_to_start_without_basic_auth() -> None:
    done = subprocess.run([sys.executable, "-m", "workers.flower"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "STAT_GUARD_CONFIG": str(
                              Path(ROOT, "Global_Configs", "App.example.yaml"))})
    assert done.returncode != 0
    assert "basic_auth" in done.stderr
    # It says where to set it: the file read and the environment variable.
    assert "App.example.yaml: flower: basic_auth:" in done.stderr
    assert "STAT_GUARD_FLOWER_BASIC_AUTH=" in done.stderr


def test_flower_serves_only_with_the_configured_credentials(fleet: Fleet) -> None:
    port = free_port()
    flower = fleet._start("flower", [sys.executable, "-m", "workers.flower"], env={
        "STAT_GUARD_FLOWER_PORT": str(port), "STAT_GUARD_FLOWER_BASIC_AUTH": "ops:pa55"})
    url = f"http://127.0.0.1:{port}/api/workers"
    wait_for(lambda: _status(url) == 401 or flower.process.poll() is not None, timeout=30,
             what="Flower to answer")
    assert _status(url) == 401
    assert _status(url, "ops:wrong") == 401
    assert _status(url, "ops:pa55") == 200
    assert "pa55" not in Path(f"/proc/{flower.process.pid}/cmdline").read_text()


def test_each_queue_is_declared_on_its_own_exchange(fleet: Fleet) -> None:
    """The worker banner lists every queue with the exchange of its own name (declared
    without one, all three took the default queue's: ``drift exchange=ondemand``)."""
    queues = CONFIG.queues
    names = (queues.drift, queues.ondemand, queues.reactions)
    worker = fleet.worker(",".join(names))
    banner = worker.log()
    for name in names:
        assert re.search(rf"\.> {name}\s+exchange={name}\(direct\) key={name}\b", banner), \
            banner[-2000:]
