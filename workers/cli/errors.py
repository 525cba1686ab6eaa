"""How a command fails: one line on stderr and an exit code, never a traceback."""

from __future__ import annotations

from stat_guard.verdict import ERROR, Verdict

# Exit codes every command shares (``status`` adds 1 for drift and 2 for a failed run).
OK = 0
DRIFT = 1
FAILED = 2  # a bad configuration, an unknown model, DuckDB missing or busy, a failed run
REDIS_UNREACHABLE = 3


def verdict_exit_code(*verdicts: str) -> int:
    """The exit code of results with these verdicts: a failed run (``error``) wins over
    drift, drift over the rest."""
    if ERROR in verdicts:
        return FAILED
    return DRIFT if Verdict.DRIFT in verdicts else OK


class CommandError(Exception):
    """A failure the user can act on: ``message`` is printed as it is, then the command
    exits with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
