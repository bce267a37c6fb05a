"""Signal handling shared by the producers: SIGTERM/SIGINT mean "stop reading, flush, exit 0"."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)


def on_stop_signals(request_stop: Callable[[], None]) -> None:
    """Call ``request_stop`` on the first SIGTERM/SIGINT; a second one is also just a request.

    Plain ``signal.signal`` (not ``loop.add_signal_handler``) so the request also reaches a thread
    that is blocked publishing into a full Kafka buffer.
    """

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping the source, then flushing Kafka", signal.Signals(signum).name)
        request_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
