"""uvicorn's h11 protocol with a deadline for a request's head.

uvicorn closes an idle kept-alive connection after ``timeout_keep_alive``, but only once a
response has been sent, and any byte received restarts that clock: a client that opens a
connection and sends its request line and headers one byte at a time holds the connection
(and a file descriptor) for as long as it likes. Here the whole head of every request
must arrive within ``STAT_GUARD_HEADER_TIMEOUT`` seconds (10) of the connection's start
or of the previous response's end; otherwise the connection is closed. The body has its
own deadline in the app (``STAT_GUARD_BODY_TIMEOUT``, a 408).

Used by ``python -m stat_guard.service`` only: the Azure Function runs behind the
platform's own front end, and its bundle does not ship uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("stat_guard.service")


def header_timeout() -> float:
    # ``stat_guard.service.main`` validates its settings and puts this one in the
    # environment before uvicorn starts, so every worker process reads the same value.
    return float(os.environ["STAT_GUARD_HEADER_TIMEOUT"])


class GuardedH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout()
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's head was complete
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        self._arm_head_timer()  # before: a pipelined request is handled inside
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info("closing a connection: no request head within %g s", self.header_timeout)
            self.transport.close()
