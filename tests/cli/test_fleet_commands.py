"""``stat-guard run`` and ``stat-guard unflag`` through a real drift worker process (one for
the module), and the commands that start the fleet's processes (``--dry-run``)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stat_guard.scheduled.engine import flag_model
from stat_guard.scheduled.models import add_model
from tests.cli.conftest import CONFIG, PAYMENTS, Fleet, stat_guard, write_feature_table
from tests.fleet.support import query
from tests.local import free_port


@pytest.fixture(scope="module")
def drift_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A drift worker on its own DuckDB file (model ``payments``); yields the file."""
    workdir = tmp_path_factory.mktemp("cli-fleet")
    db_path = workdir / "fleet.duckdb"
    write_feature_table(db_path)
    add_model(str(db_path), PAYMENTS, CONFIG.drift_run_config())
    fleet = Fleet(workdir=workdir, env={"STAT_GUARD_DUCKDB_PATH": str(db_path)})
    try:
        fleet.worker("drift")
        yield db_path
    finally:
        fleet.stop_all()


def test_run_through_the_drift_worker(drift_worker: Path) -> None:
    ran = stat_guard("run", "payments", "--timeout", "60", db_path=drift_worker)
    assert ran.code == 1, ran.err + ran.out
    head, *_table = ran.out.splitlines()
    assert head.startswith("model payments, run payments@manual-")
    assert "(manual run): verdict drift" in head
    assert "waiting for the drift worker" in ran.err
    [(run_id,)] = query(drift_worker, "SELECT last_run_id FROM model_metadata")
    assert run_id in head


def test_run_of_an_unknown_model_through_the_worker(drift_worker: Path) -> None:
    ran = stat_guard("run", "nobody", "--timeout", "60", db_path=drift_worker)
    assert ran.code == 2
    assert ran.err.splitlines()[-1] == ("stat-guard: model 'nobody' is not registered "
                                        "(stat-guard models list)")


def test_unflag_through_the_drift_worker(drift_worker: Path) -> None:
    flag_model(str(drift_worker), "payments", "payments@20261206T090000Z", "drift")
    cleared = stat_guard("unflag", "payments", "--timeout", "60", db_path=drift_worker)
    assert (cleared.code, cleared.out.strip()) == (0, "model payments unflagged"), cleared.err
    assert query(drift_worker, "SELECT flagged, flagged_run_id FROM model_metadata") == [
        (False, "payments@20261206T090000Z")]
    unknown = stat_guard("unflag", "nobody", "--timeout", "60", db_path=drift_worker)
    assert unknown.code == 2
    assert unknown.err.splitlines()[-1] == "stat-guard: model 'nobody' is not in model_metadata"


def test_run_with_redis_unreachable_is_exit_3() -> None:
    port = free_port()
    ran = stat_guard("run", "payments", env={"STAT_GUARD_REDIS_PORT": str(port)})
    assert ran.code == 3
    assert ran.err.strip().startswith(f"stat-guard: Redis at 127.0.0.1:{port} (db 13) is "
                                      f"unreachable")


CELERY = str(Path(sys.executable).with_name("celery"))


@pytest.mark.parametrize(("argv", "expected"), [
    (["worker", "drift"], f"nice -n 19 {CELERY} -A workers.celery_app worker -Q drift -c 1 "
                          f"-n drift@%h -l info --without-gossip --without-mingle"),
    (["worker", "drift", "--no-nice"], f"{CELERY} -A workers.celery_app worker -Q drift -c 1 "
                                       f"-n drift@%h -l info --without-gossip --without-mingle"),
    (["worker", "ondemand"], f"{CELERY} -A workers.celery_app worker -Q ondemand -P threads "
                             f"-c 4 -n ondemand@%h -l info --without-gossip --without-mingle"),
    (["worker", "ondemand", "--with-reactions", "-P", "prefork", "-c", "2"],
     f"{CELERY} -A workers.celery_app worker -Q ondemand,reactions -P prefork -c 2 "
     f"-n ondemand@%h -l info --without-gossip --without-mingle"),
    (["worker", "reactions", "-n", "r1@box"],
     f"{CELERY} -A workers.celery_app worker -Q reactions -c 1 -n r1@box -l info "
     f"--without-gossip --without-mingle"),
    (["beat", "-s", "/state/beat"], f"{CELERY} -A beat_schedule beat -l info -s /state/beat"),
    (["exporter", "--port", "9900"],
     f"{sys.executable} -m workers.exporter --address 127.0.0.1 --port 9900"),
    (["flower"], f"{sys.executable} -m workers.flower"),
    (["function", "--port", "7072"],
     f"{sys.executable} -m stat_guard.service --host 127.0.0.1 --port 7072"),
    (["pages"], f"{sys.executable} -m workers.pages"),
    (["pages", "--host", "0.0.0.0", "--port", "8091"],
     f"{sys.executable} -m workers.pages --host 0.0.0.0 --port 8091"),
])
def test_dry_run_prints_the_production_command(argv: list[str], expected: str) -> None:
    shown = stat_guard(*argv, "--dry-run")
    assert shown.code == 0, shown.err
    assert shlex.split(shown.out) == shlex.split(expected)


@pytest.mark.parametrize("argv", [
    [], ["worker"], ["worker", "drift"], ["worker", "ondemand"], ["worker", "reactions"],
    ["beat"], ["exporter"], ["flower"], ["function"], ["models"], ["models", "list"],
    ["models", "add"], ["models", "remove"], ["run"], ["status"], ["unflag"], ["pages"],
    ["report"]])
def test_every_command_has_help(argv: list[str]) -> None:
    from workers.cli.main import main

    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0


def test_a_missing_or_invalid_configuration_is_one_line(tmp_path: Path) -> None:
    missing = stat_guard("--config", str(tmp_path / "absent.yaml"), "worker", "drift",
                         "--dry-run")
    assert missing.code == 2 and missing.out == ""
    assert missing.err.strip() == (f"stat-guard: configuration: cannot read configuration "
                                   f"{tmp_path / 'absent.yaml'}: [Errno 2] No such file or "
                                   f"directory: '{tmp_path / 'absent.yaml'}'")
    (tmp_path / "bad.yaml").write_text("redis:\n  colour: blue\n")
    invalid = stat_guard("--config", str(tmp_path / "bad.yaml"), "status")
    assert invalid.code == 2
    assert invalid.err.strip() == "stat-guard: configuration: redis: unknown keys ['colour']"
