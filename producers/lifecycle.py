"""Signal handling shared by the producers: SIGTERM/SIGINT mean "stop reading, flush, exit 0"."""

from __future__ import annotations

from collections.abc import Callable

from lakehouse.shutdown import StopRequest


def on_stop_signals(process_name: str, request_stop: Callable[[], None]) -> StopRequest:
    """Call ``request_stop`` on the first SIGTERM/SIGINT (copies within a second are the same
    request); a later signal ends the process at once with 128 + signal, in case a flush hangs.

    Plain ``signal.signal`` (``lakehouse.shutdown``, not ``loop.add_signal_handler``) so the request
    also reaches a thread that is blocked publishing into a full Kafka buffer.
    """
    return StopRequest(process_name, on_request=request_stop).install()
