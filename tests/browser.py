"""A small Chrome DevTools Protocol client for the browser tests: headless Chromium
(``/usr/bin/chromium``, installed by scripts/bootstrap.sh) started on a DevTools port it
picks itself, one page driven over the protocol's WebSocket (tornado's client: Flower
brings tornado, so no package is added for it).

    with Browser(tmp_path) as browser:
        browser.navigate(url)                      # returns once the load event fired
        browser.evaluate("document.title")         # a JavaScript value, by value
        browser.load_time_ms()                     # loadEventEnd - navigation start
        browser.screenshot(path)                   # PNG
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (scripts/bootstrap.sh installs it)")
    return path


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page; every call waits for its answer."""

    def __init__(self, workdir: Path, width: int = 1280, height: int = 900,
                 timeout_s: float = 30.0) -> None:
        from tornado.websocket import websocket_connect

        self.timeout_s = timeout_s
        profile = workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "DevToolsActivePort").unlink(missing_ok=True)  # a former run's port
        self._stderr = open(workdir / "chromium.log", "wb")
        self.process = subprocess.Popen(
            [require_chromium(), "--headless=new", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
             "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--mute-audio", f"--window-size={width},{height}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self._stderr, start_new_session=True)
        self._loop = asyncio.new_event_loop()
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        try:
            port = self._devtools_port(profile / "DevToolsActivePort")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                        timeout=10) as response:
                targets = json.loads(response.read())
            page = next(t for t in targets if t.get("type") == "page")
            self._socket = self._run(lambda: websocket_connect(
                page["webSocketDebuggerUrl"], max_message_size=512 * 1024 * 1024))
            self.call("Page.enable")
            self.call("Network.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, path: Path) -> int:
        """Chromium writes its port (and the browser endpoint) to DevToolsActivePort."""
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with {self.process.returncode}")
            try:
                lines = path.read_text().splitlines()
                if len(lines) >= 2:  # the port, then the browser's endpoint: complete
                    return int(lines[0])
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.05)
        raise BrowserError("chromium did not open its DevTools port")

    def _run(self, start: Callable[[], Awaitable[Any]]) -> Any:
        """Run what ``start`` begins on our loop (tornado ties its futures to the running
        loop, so they must be created inside it)."""
        async def run() -> Any:
            return await asyncio.wait_for(start(), self.timeout_s)
        return self._loop.run_until_complete(run())

    def _receive(self) -> dict[str, Any]:
        message = self._run(self._socket.read_message)
        if message is None:
            raise BrowserError("the DevTools connection closed")
        return json.loads(message)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept
        in ``events``."""
        ident = next(self._ids)
        text = json.dumps({"id": ident, "method": method, "params": params})
        self._run(lambda: self._socket.write_message(text))
        while True:
            message = self._receive()
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_event(self, method: str) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event["method"] == method:
                return self.events.pop(i)
        while True:
            message = self._receive()
            if message.get("method") == method:
                return message
            if "method" in message:
                self.events.append(message)

    def set_headers(self, headers: dict[str, str]) -> None:
        """Extra HTTP headers on every request of the page (e.g. Authorization)."""
        self.call("Network.setExtraHTTPHeaders", headers=headers)

    def navigate(self, url: str) -> None:
        """Open ``url`` and wait for its load event."""
        self.events.clear()
        answer = self.call("Page.navigate", url=url)
        if answer.get("errorText"):
            raise BrowserError(f"navigating to {url}: {answer['errorText']}")
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression[:80]}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def load_time_ms(self) -> float:
        """The last navigation's loadEventEnd - its start (Navigation Timing), once set."""
        script = ("(() => { const n = performance.getEntriesByType('navigation')[0]; "
                  "return n ? n.loadEventEnd - n.startTime : -1; })()")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            value = self.evaluate(script)
            if value and value > 0:
                return float(value)
            time.sleep(0.02)
        raise BrowserError("no loadEventEnd")

    def screenshot(self, path: Path, height: int | None = None) -> bytes:
        """A PNG of the page's top (``height`` CSS pixels, default the viewport)."""
        params: dict[str, Any] = {"format": "png"}
        if height is not None:
            width = self.evaluate("document.documentElement.clientWidth")
            params.update(clip={"x": 0, "y": 0, "width": width, "height": height,
                                "scale": 1}, captureBeyondViewport=True)
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        socket = getattr(self, "_socket", None)
        if socket is not None:
            socket.close()
        try:  # the renderer and helper processes share chromium's process group
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self._stderr.close()
        self._loop.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
