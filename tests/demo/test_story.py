"""`make demo`'s story end to end: every step's outcome, and nothing left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.http_server import ROOT
from tests.servers import private_redis_port


def _our_processes() -> list[str]:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines()
            if ".demo" in line or "drift@demo" in line or "ondemand@demo" in line]


@pytest.mark.slow
def test_demo_tells_the_whole_story_and_cleans_up():
    # PGHOST/PGPORT already name the run's private cluster; Redis is the private one too.
    env = {**os.environ, "STAT_GUARD_REDIS_PORT": str(private_redis_port())}
    result = subprocess.run([sys.executable, "-m", "demo.story"], cwd=ROOT, text=True,
                            capture_output=True, timeout=600, env=env)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    # 1. demo data with drift injected on purpose
    assert "drifted on purpose" in out
    # 3. the 3σ signal fires on the injected drift and PostgreSQL answers "drift"
    assert "3σ signal fired" in out
    assert "perform_drift_analysis answered: verdict drift" in out
    assert re.search(r"ondemand\s+demo\.payments\s+amount\s+[\d.]+.*drift", out)
    assert re.search(r"ondemand\s+demo\.payments\s+latency_ms\s+[\d.]+.*ok", out)
    # 4. the scheduled run finds the drifted features of every production model
    for model, feature in (("fraud_scoring", "amount"), ("fraud_scoring", "country"),
                           ("pricing", "demand_index")):
        assert re.search(rf"scheduled\s+{model}\s+{feature}\s+[\d.]+.*drift", out), (model,
                                                                                    feature)
    assert re.search(r"scheduled\s+churn\s+monthly_charges\s+[\d.]+.*(warning|drift)", out)
    stable = re.findall(r"scheduled\s+\S+\s+(\S+)\s+[\d.]+.*\b(drift|warning)\b", out)
    assert {name for name, _ in stable} <= {"amount", "country", "demand_index",
                                             "monthly_charges"}
    # reactions: alerts and flags
    assert "models flagged in DuckDB model_metadata: ['fraud_scoring', 'pricing']" in out
    assert re.search(r"'alert': '\d+'", out)
    # the drift pages ran with the fleet and listed every model; where they are is said
    assert re.search(r"drift pages on http://127\.0\.0\.1:\d+/ \(user:password demo:demo\)",
                     out)
    assert re.search(r"drift pages list (\d+) of \1 models", out)
    assert re.search(r"  pages     http://127\.0\.0\.1:\d+/  \(user:password demo:demo", out)
    # 5. every process stopped, the server setting restored
    assert "stopping every process the demo started" in out
    assert _our_processes() == []
