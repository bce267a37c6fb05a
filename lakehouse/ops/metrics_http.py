"""Serving a process's Prometheus metrics on loopback.

Bound to 127.0.0.1 only: metrics name symbols, topics and tables, and a scraper on the same host
(or a tunnel) is what this project runs. Port 0 in the settings means no endpoint at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def serve_metrics(port: int, what: str, registry: CollectorRegistry | None = None) -> Callable[[], None] | None:
    """Start ``/metrics`` on 127.0.0.1:``port`` in a daemon thread; returns a function that stops it
    (None when ``port`` is 0: metrics off). A port already taken fails here, at start, loudly."""
    if not port:
        return None
    from prometheus_client import REGISTRY, start_http_server

    server, thread = start_http_server(port, addr=LOOPBACK, registry=registry or REGISTRY)
    log.info("%s metrics on http://%s:%d/metrics", what, LOOPBACK, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
