"""Runs last: after every test above, the server never restarted and logged no crash."""

from __future__ import annotations

import pytest

from tests.perform_drift_analysis.conftest import SEEN_MESSAGES, TEST_KEY


def test_postmaster_never_restarted(admin, server_health):
    assert admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == \
        server_health.postmaster_start


def test_no_crash_or_leak_lines_in_the_server_log(server_health):
    if server_health.new_log_text() is None:
        pytest.skip("server log not readable here (set PSG_SERVER_LOG)")
    lines = server_health.crash_lines()
    assert lines == [], "\n".join(lines[:20])


def test_key_never_appeared_in_any_message_or_error_report(server_health):
    """No error, notice or server error report (ERROR/WARNING/... lines and their DETAIL,
    CONTEXT, STATEMENT) carries the key. The postmaster's own "parameter ... changed to"
    LOG lines on reload are PostgreSQL's, not the extension's, and are counted apart."""
    assert [m for m in SEEN_MESSAGES if TEST_KEY in m] == []
    if server_health.new_log_text() is None:
        pytest.skip("server log not readable here (set PSG_SERVER_LOG)")
    assert [line for line in server_health.error_report_lines() if TEST_KEY in line] == []
    reload_lines = [line for line in server_health.new_log_text().splitlines()
                    if TEST_KEY in line]
    print(f"\n{len(reload_lines)} postmaster reload line(s) show the key "
          "(PostgreSQL logs changed settings at LOG level)")
