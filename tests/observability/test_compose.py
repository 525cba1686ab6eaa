"""docker-compose.yml and its Dockerfiles, checked without a Docker engine:
``docker-compose config`` must accept the file, and the resolved services must be wired
as documented (health-gated dependencies, one beat, limits on the drift worker)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.conftest import ROOT, require_tool

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SERVICES = {"postgres", "redis", "worker-drift", "worker-ondemand", "beat", "flower",
            "exporter", "pages", "function", "prometheus", "grafana"}


def _compose(*args: str, env_file: Path | None = ENV_EXAMPLE
             ) -> subprocess.CompletedProcess[str]:
    tool = require_tool("docker-compose")
    argv = [tool, "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    # no COMPOSE_*/DOCKER_* from the caller's shell may change what is validated
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(ROOT)}
    return subprocess.run([*argv, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _command(service: dict[str, Any]) -> str:
    command = service.get("command") or []
    return " ".join(command) if isinstance(command, list) else str(command)


def test_compose_file_is_valid() -> None:
    result = _compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_secrets_are_required_not_hardcoded() -> None:
    result = _compose("config", "-q", env_file=None)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr
    text = COMPOSE.read_text()
    raw = yaml.safe_load(text)
    for name, service in raw["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|KEY|AUTH", variable):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[-?][^}]*)?\}", str(value)), (name, variable)
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                   if line and not line.startswith("#"))
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert used <= set(example), f"not in .env.example: {used - set(example)}"
    assert all("#" not in value for value in example.values())


def test_every_service_is_there_with_a_healthcheck(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_dependencies_wait_for_health(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency]
    assert set(services["worker-ondemand"]["depends_on"]) == {"redis", "postgres",
                                                              "function"}
    assert set(services["grafana"]["depends_on"]) == {"prometheus"}


def _started(service: dict[str, Any]) -> str:
    """What a ``stat-guard`` command of the compose file starts (its ``--dry-run``)."""
    command = service["command"]
    assert command[0] == "stat-guard", command
    done = subprocess.run([sys.executable, "-m", "workers.cli.main", *command[1:],
                           "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_workers_beat_and_limits(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    drift = services["worker-drift"]
    assert re.search(r"worker -Q drift -c 1\b", _started(drift))
    assert not _started(drift).startswith("nice")  # its pool process lowers its own priority
    assert drift["mem_limit"] and drift["cpus"]
    ondemand = _started(services["worker-ondemand"])
    assert "-Q ondemand,reactions -P prefork -c 2 -n ondemand@%h" in ondemand
    beats = [name for name, s in services.items() if re.search(r"\bbeat\b", _command(s))]
    assert beats == ["beat"]
    assert _started(services["beat"]).split()[1:] == [
        "-A", "beat_schedule", "beat", "-l", "info", "-s", "/app/state/celerybeat-schedule"]
    assert "--maxmemory-policy noeviction" in _command(services["redis"])
    postgres = _command(services["postgres"])
    assert "shared_preload_libraries=pg_stat_guard" in postgres
    assert "pg_stat_guard.function_url=http://function:7071/api/drift" in postgres
    assert "-m workers.exporter --address 0.0.0.0 --port 9808" in _started(services["exporter"])
    assert "-m stat_guard.service --host 0.0.0.0 --port 7071" in _started(services["function"])
    assert _started(services["flower"]).strip().endswith("-m workers.flower")
    pages = services["pages"]
    assert _started(pages).strip().endswith("-m workers.pages --host 0.0.0.0 --port 8090")
    assert pages["environment"]["STAT_GUARD_PAGES_BASIC_AUTH"]  # required off loopback
    assert [str(port) for port in pages["ports"]] == ["127.0.0.1:8090:8090/tcp"]
    assert "/healthz" in " ".join(pages["healthcheck"]["test"])


def test_mounted_configuration_exists(resolved: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        for volume in resolved["services"][name]["volumes"]:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("/"):  # a bind mount (named volumes have no slash)
                assert Path(source).exists(), volume
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"]
               for config in job["static_configs"] for t in config["targets"]}
    assert targets == {"exporter:9808", "flower:5555"}


@pytest.mark.parametrize("dockerfile", ["deploy/docker/fleet.Dockerfile",
                                        "deploy/docker/postgres.Dockerfile"])
def test_dockerfiles_copy_only_what_exists(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text()
    assert not re.search(r"TODO|FIXME|placeholder", text, flags=re.I)
    for line in text.splitlines():
        match = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
        if match:
            for source in match.group(1).split():
                assert (ROOT / source).exists(), f"{dockerfile}: {source} missing"


def test_postgres_image_builds_the_extension_and_installs_pgsql_http() -> None:
    text = (ROOT / "deploy/docker/postgres.Dockerfile").read_text()
    assert re.search(r"^FROM postgres:\$\{PG_MAJOR\}-bookworm AS build$", text, flags=re.M)
    assert "make && make install" in text
    assert '"postgresql-${PG_MAJOR}-http"' in text
    init = ROOT / "deploy/postgres/initdb/10-pg_stat_guard.sh"
    assert init.stat().st_mode & 0o111
    syntax = subprocess.run(["sh", "-n", str(init)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


def test_fleet_image_starts_its_default_process_through_stat_guard(
        resolved: dict[str, Any]) -> None:
    text = (ROOT / "deploy/docker/fleet.Dockerfile").read_text()
    (cmd,) = re.findall(r"^CMD\s+(\[.*\])\s*$", text, flags=re.M)
    command = json.loads(cmd)  # the exec form: no shell between Docker and the process
    assert command[0] == "stat-guard", command
    # The image on its own runs what the compose file's on-demand and reaction worker runs.
    assert command == resolved["services"]["worker-ondemand"]["command"]
    assert _started({"command": command}) == _started(resolved["services"]["worker-ondemand"])
