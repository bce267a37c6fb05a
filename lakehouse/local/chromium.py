"""Headless Chromium driven over the DevTools protocol: what the dashboard's browser test and its
benchmark use to look at the page as a person would.

Debian's ``chromium`` package (``make browser``) is the browser; a vendor browser download is not
reachable here, so no driver that fetches its own. The protocol is JSON over one WebSocket
(``websockets``, already a dependency): navigate, evaluate JavaScript, take a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from lakehouse.local.processes import wait_until

CHROMIUM = "/usr/bin/chromium"
# Flags that work on these machines (root, no GPU, no network but the page's own loopback server).
LAUNCH_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
)


class BrowserError(RuntimeError):
    """Chromium could not be started, or a page command failed."""


class Chromium:
    """One headless Chromium with one page (tab). Use as a context manager: it is always stopped."""

    def __init__(self, width: int = 1400, height: int = 1000, binary: str = CHROMIUM,
                 start_timeout_seconds: float = 30.0) -> None:
        if not Path(binary).exists():
            raise BrowserError(f"{binary} not found: run `make browser` (installs Debian's chromium package)")
        self._profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        self._process = subprocess.Popen(
            [binary, *LAUNCH_FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        port_file = self._profile / "DevToolsActivePort"
        if not wait_until(port_file.exists, start_timeout_seconds, 0.05):
            self.close()
            raise BrowserError(f"chromium did not open its DevTools port within {start_timeout_seconds:.0f} s")
        wait_until(lambda: len(port_file.read_text().split()) >= 2, 5, 0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            pages = [t for t in json.load(answer) if t.get("type") == "page"]
        if not pages:
            self.close()
            raise BrowserError("chromium started without a page")
        # No keepalive pings: the socket is loopback, and a caller may leave the browser idle for
        # minutes (a test runs a Spark job between two looks) while pings go unanswered.
        self._socket: ClientConnection = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 2**20,
                                                 ping_interval=None)
        self._ids = itertools.count(1)
        self.send("Page.enable")
        self.send("Runtime.enable")

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send(self, method: str, timeout_seconds: float = 30.0, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events that arrive meanwhile are dropped)."""
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"{method}: no answer within {timeout_seconds:.0f} s")
            message = json.loads(self._socket.recv(timeout=remaining))
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def open(self, url: str) -> None:
        """Navigate the page to ``url`` (returns once navigation started; wait for content with
        ``wait_for``)."""
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"javascript failed: {result['exceptionDetails'].get('text')}: {expression[:200]}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_seconds: float = 30.0, interval_seconds: float = 0.1,
                 accept: Callable[[Any], bool] = bool) -> Any:
        """Poll ``expression`` until ``accept`` holds for its value; that value."""
        deadline = time.monotonic() + timeout_seconds
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if accept(value):
                return value
            time.sleep(interval_seconds)
        raise BrowserError(f"waited {timeout_seconds:.0f} s for {expression[:200]!r}; last value {value!r}")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the page's visible area, written to ``path``."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        socket = getattr(self, "_socket", None)
        if socket is not None:
            socket.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        # Its helpers (renderers, crash handler) are in the session it was started in: none outlives it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        shutil.rmtree(self._profile, ignore_errors=True)
