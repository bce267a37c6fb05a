"""Serving a process's Prometheus metrics on loopback.

Bound to 127.0.0.1 only: metrics name symbols, topics and tables, and a scraper on the same host
(or a tunnel) is what this project runs. Port 0 in the settings means no endpoint at all.

A port the process cannot listen on (another process serves it) ends the process at start, before
it connects to anything (``MetricsPortError``; exit 2 like any bad setting). Running on without the
endpoint was rejected: Prometheus and the dashboard would go on reading the other process's metrics
under this process's port, so its alerts (a stalled feed, a stream behind) could never fire.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from lakehouse.settings import ENV_PREFIX

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class MetricsPortError(Exception):
    """The metrics endpoint cannot listen on its port; the message names the port and the setting."""


def port_problem(port: int, what: str, setting: str | None, error: OSError) -> str:
    """One line for an operator: which port, why, and which setting gives this process another."""
    change = f"metrics.{setting} ({ENV_PREFIX}METRICS__{setting.upper()})" if setting else "its metrics port"
    if error.errno == errno.EADDRINUSE:
        why = "is already in use by another process"
    else:
        why = f"cannot be listened on ({error.strerror or error})"
    return f"{what} metrics: {LOOPBACK}:{port} {why}; give this process a free port in {change}, or 0 for none"


def serve_metrics(
    port: int, what: str, registry: CollectorRegistry | None = None, *, setting: str | None = None
) -> Callable[[], None] | None:
    """Start ``/metrics`` on 127.0.0.1:``port`` in a daemon thread; returns a function that stops it
    (None when ``port`` is 0: metrics off). ``setting`` is the ``[metrics]`` key the port came from,
    named by the ``MetricsPortError`` raised when the port cannot be had."""
    if not port:
        return None
    from prometheus_client import REGISTRY, start_http_server

    try:
        server, thread = start_http_server(port, addr=LOOPBACK, registry=registry or REGISTRY)
    except OSError as error:
        raise MetricsPortError(port_problem(port, what, setting, error)) from None
    log.info("%s metrics on http://%s:%d/metrics", what, LOOPBACK, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
