"""Stop requests from a supervisor (systemd, Kubernetes, Airflow, a shell's ``kill`` or Ctrl-C).

The first SIGTERM or SIGINT asks the process to stop at its next safe point: between micro-batches
for a stream, between runs for an interval job. A second signal ends the process at once, with the
conventional exit code 128 + signal number. Copies of one request that arrive together (systemd
signals every process of the unit, and ``spark-submit.sh`` forwards the signal it receives to the
Python driver) are one request, not two: a second signal counts only ``DUPLICATE_WINDOW_SECONDS``
after the first.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from enum import Enum
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DUPLICATE_WINDOW_SECONDS = 1.0


class Verdict(Enum):
    STOP_AT_SAFE_POINT = "stop at the next safe point"
    SAME_REQUEST = "a copy of the request already being served"
    STOP_NOW = "stop at once"


def judge_signal(first_request_at: float | None, now: float,
                 window_seconds: float = DUPLICATE_WINDOW_SECONDS) -> Verdict:
    """What a stop signal arriving at ``now`` means, given when the first one arrived (monotonic s)."""
    if first_request_at is None:
        return Verdict.STOP_AT_SAFE_POINT
    if now - first_request_at < window_seconds:
        return Verdict.SAME_REQUEST
    return Verdict.STOP_NOW


class StopRequest:
    """A stop request set by SIGTERM/SIGINT; long-running loops poll or wait on it.

    ``install`` must run on the main thread (Python delivers signals there). ``exit_now`` is how a
    second signal ends the process: ``os._exit`` by default, so no cleanup can hang it.
    ``on_request`` is called once, on the first request, for a loop that does not poll (it runs in
    the signal handler: it must only set flags or schedule work, e.g. ``call_soon_threadsafe``).
    """

    def __init__(
        self,
        process_name: str,
        clock: Callable[[], float] = time.monotonic,
        exit_now: Callable[[int], None] = os._exit,
        on_request: Callable[[], None] | None = None,
    ) -> None:
        self.process_name = process_name
        self._on_request = on_request
        self._event = threading.Event()
        self._first_request_at: float | None = None
        self._clock = clock
        self._exit_now = exit_now

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.receive(signum)

    def receive(self, signum: int) -> Verdict:
        """Serve one stop signal (the handler's logic, callable without a real signal)."""
        verdict = judge_signal(self._first_request_at, self._clock())
        name = signal.Signals(signum).name
        if verdict is Verdict.STOP_AT_SAFE_POINT:
            self._first_request_at = self._clock()
            log.info("%s: received %s, stopping at the next safe point (send it again to stop at once)",
                     self.process_name, name)
            self.request()
        elif verdict is Verdict.STOP_NOW:
            log.warning("%s: received %s again, stopping at once", self.process_name, name)
            logging.shutdown()
            self._exit_now(128 + signum)
        return verdict

    def request(self) -> None:
        """Ask for a stop from inside the process (e.g. a failed query)."""
        first = not self._event.is_set()
        self._event.set()
        if first and self._on_request is not None:
            self._on_request()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_seconds: float | None = None) -> bool:
        """Sleep until a stop is requested or the timeout passes; True when a stop was requested."""
        return self._event.wait(timeout_seconds)
