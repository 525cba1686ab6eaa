"""The Azure Function's ASGI app, served by a real uvicorn process."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from stat_guard.tdigest import TDigest
from stat_guard.wire import ColumnDigests, Envelope, encode_envelope
from tests.conftest import GOLDEN_DIR
from tests.http_server import ROOT, verdict_service

KEY = "s3cret-function-key-do-not-log"


def post(url: str, body: bytes, headers: dict[str, str] | None = None,
         method: str = "POST") -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/api/drift", data=body if method == "POST" else None, method=method,
        headers={"content-type": "application/octet-stream", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("service") / "service.log"
    with verdict_service({"STAT_GUARD_FUNCTION_KEY": KEY,
                          "STAT_GUARD_MAX_BODY_BYTES": str(4 * 1024 * 1024)}, log_path) as url:
        yield url, log_path


def _envelope(shift: float, columns: int = 3, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pairs = {f"feature_{i}": ColumnDigests(
        current=TDigest.from_values(rng.normal(shift if i == 0 else 0.0, 1, 10_000)),
        baseline=TDigest.from_values(rng.normal(0, 1, 50_000))) for i in range(columns)}
    return encode_envelope(Envelope({"request_id": f"shift-{shift}"}, pairs))


def test_verdict_flips_when_drift_is_injected(service):
    url, _ = service
    status, calm = post(url, _envelope(0.0), {"x-functions-key": KEY})
    assert status == 200 and calm["verdict"] == "ok"
    status, drifted = post(url, _envelope(0.7), {"x-functions-key": KEY})
    assert status == 200 and drifted["verdict"] == "drift"
    assert drifted["columns"]["feature_0"]["verdict"] == "drift"
    assert drifted["columns"]["feature_1"]["verdict"] == "ok"
    assert drifted["request_id"] == "shift-0.7" and drifted["function_version"]


def test_golden_envelope_is_answered(service):
    url, _ = service
    status, result = post(url, (GOLDEN_DIR / "envelope.psge").read_bytes(),
                          {"x-functions-key": KEY})
    assert status == 200 and result["request_id"] == "golden-1"
    assert result["columns"]["latency ms"]["verdict"] == "insufficient_data"


def test_golden_version_2_envelope_is_answered_with_categorical_columns(service):
    url, _ = service
    status, result = post(url, (GOLDEN_DIR / "envelope_v2.psge").read_bytes(),
                          {"x-functions-key": KEY})
    assert status == 200 and result["request_id"] == "golden-2", result
    city = result["columns"]["city"]
    assert city["kind"] == "categorical" and "kind" not in result["columns"]["amount"]
    assert city["current"] == {"count": 17, "null_count": 1, "distinct": 6, "named": 4,
                               "other_count": 2, "other_distinct": 2}
    assert city["unseen_categories"] == ["bordeaux"] and city["unseen_share"] == 4 / 17
    tier = result["columns"]["plan tier"]  # a current window of NULLs only
    assert tier["verdict"] == "drift" and tier["reasons"][0].startswith("missing share")
    assert tier["psi"] is None


def test_envelopes_of_earlier_digest_versions_are_answered_as_the_current_ones(service):
    """The verdict service is upgraded before the extension: envelopes carrying version 2
    (golden/v2/) or version 1 (golden/v1/) digests get the answer the same columns get
    in version 3 digests."""
    url, _ = service
    for earlier, current in (("v2/envelope.psge", "envelope.psge"),
                             ("v1/envelope.psge", "envelope.psge"),
                             ("v2/envelope_v2.psge", "envelope_v2.psge")):
        answers = []
        for name in (earlier, current):
            status, result = post(url, (GOLDEN_DIR / name).read_bytes(),
                                  {"x-functions-key": KEY})
            assert status == 200, (name, result)
            result.pop("timings_ms", None)
            answers.append(result)
        assert answers[0] == answers[1], earlier


def test_every_malformed_version_2_envelope_is_a_400(service, golden):
    url, _ = service
    for case in golden["malformed_envelopes_v2"]:
        status, result = post(url, bytes.fromhex(case["hex"]), {"x-functions-key": KEY})
        assert status == 400 and "malformed envelope" in result["error"], case["reason"]


@pytest.mark.parametrize("body", [b"", b"garbage", b"PSGE\x01\x00\x00\x00\xff\xff\xff\xff"])
def test_malformed_body_is_a_400_with_a_message(service, body):
    url, _ = service
    status, result = post(url, body, {"x-functions-key": KEY})
    assert status == 400 and result["status"] == "error"
    assert "malformed envelope" in result["error"]


def test_body_over_the_limit_is_a_413(service):
    url, _ = service
    status, result = post(url, b"\x00" * (5 * 1024 * 1024), {"x-functions-key": KEY})
    assert status == 413 and "exceeds" in result["error"]


@pytest.mark.parametrize("headers", [{}, {"x-functions-key": "wrong"},
                                     {"x-functions-key": KEY + "x"}])
def test_missing_or_wrong_key_is_a_401(service, headers):
    url, _ = service
    status, result = post(url, _envelope(0.0, 1), headers)
    assert status == 401 and KEY not in json.dumps(result)


def test_wrong_method_and_unknown_route(service):
    url, _ = service
    assert post(url, b"", {"x-functions-key": KEY}, method="GET")[0] == 405
    request = urllib.request.Request(f"{url}/api/nothing", method="GET")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 404


def test_the_key_never_appears_in_the_log(service):
    url, log_path = service
    post(url, b"bad", {"x-functions-key": KEY})
    post(url, b"bad", {"x-functions-key": "wrong"})
    assert KEY not in log_path.read_text(errors="replace")


def test_invalid_settings_are_refused_at_start():
    from stat_guard.service import ServiceSettings
    with pytest.raises(ValueError, match="STAT_GUARD_PSI_DRIFT"):
        ServiceSettings.from_environ({"STAT_GUARD_PSI_DRIFT": "high"})
    with pytest.raises(ValueError, match="psi_warning"):
        ServiceSettings.from_environ({"STAT_GUARD_PSI_DRIFT": "0.05"})
    for name, value in [("STAT_GUARD_BODY_TIMEOUT", "0"), ("STAT_GUARD_HEADER_TIMEOUT", "nan"),
                        ("STAT_GUARD_KEEP_ALIVE_TIMEOUT", "1.5"), ("STAT_GUARD_WORKERS", "0"),
                        ("STAT_GUARD_MAX_CONNECTIONS", "-1"),
                        ("STAT_GUARD_ANALYSIS_PROCESSES", "-1"),
                        ("STAT_GUARD_INLINE_BYTES", "-5")]:
        with pytest.raises(ValueError, match=name):
            ServiceSettings.from_environ({name: value})


def test_server_settings_defaults_and_the_processes_per_worker():
    from stat_guard.service import ServiceSettings
    settings = ServiceSettings.from_environ({})
    assert (settings.body_timeout, settings.header_timeout, settings.keep_alive_timeout,
            settings.max_connections, settings.workers, settings.inline_bytes) == (
        30.0, 10.0, 5, 500, 1, 0)
    assert settings.analysis_processes >= 1
    many = ServiceSettings.from_environ({"STAT_GUARD_WORKERS": "64"})
    assert many.workers == 64 and many.analysis_processes == 1
    assert ServiceSettings.from_environ(
        {"STAT_GUARD_ANALYSIS_PROCESSES": "0"}).analysis_processes == 0


def test_two_workers_answer(tmp_path):
    with verdict_service({"STAT_GUARD_WORKERS": "2"}, tmp_path / "service.log") as url:
        for shift in (0.0, 0.7):
            status, result = post(url, _envelope(shift))
            assert status == 200 and result["request_id"] == f"shift-{shift}"
    assert "Started parent process" in (tmp_path / "service.log").read_text()


@pytest.mark.slow
def test_bundle_imports_in_a_clean_virtual_environment(tmp_path):
    bundle = tmp_path / "azure-function.zip"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_azure_bundle.py"),
                    "--output", str(bundle)], check=True, capture_output=True)
    site = tmp_path / "site"
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        archive.extractall(site)
    assert {"function_app.py", "host.json", "requirements.txt",
            "stat_guard/service.py"} <= names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r",
                    str(site / "requirements.txt")], check=True, capture_output=True)
    probe = ("import function_app, azure.functions as func; "
             "assert isinstance(function_app.app, func.AsgiFunctionApp); "
             "print([f.get_function_name() for f in function_app.app.get_functions()])")
    result = subprocess.run([str(python), "-c", probe], cwd=site, capture_output=True,
                            text=True, check=True)
    assert "http_app_func" in result.stdout
