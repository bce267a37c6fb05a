"""One periodic progress line per producer, so a tired operator sees at a glance whether it is healthy.

    finnhub: 1520 msg/s acked (total 91200, pending 35), reconnects 1, quarantined 3, source lag 84 ms

Back-pressure (the broker not taking records) is appended when it is happening.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lakehouse.times import now_ms
from producers.kafka_sink import SinkStats

log = logging.getLogger(__name__)


@dataclass
class FeedCounters:
    """What the source side reports; the producer loop updates these."""

    reconnects: int = 0
    quarantined: int = 0
    source_lag_ms: int | None = None  # receive time minus the newest event time seen
    gaps: int = 0  # feed gaps recorded
    last_message_ms: int | None = None  # when the source last sent anything, pings too (epoch ms, UTC)
    # When the source last sent a trade: pings and error frames keep last_message_ms fresh while no
    # trade flows (Finnhub after "Subscribing to too many symbols"), so a stall is judged on this.
    last_trade_ms: int | None = None
    started_ms: int = field(default_factory=now_ms)  # when counting began: the trade age before the first


def format_progress(
    name: str, rate_per_second: float, stats: SinkStats, feed: FeedCounters, blocked_seconds: float | None
) -> str:
    lag = "n/a" if feed.source_lag_ms is None else f"{feed.source_lag_ms} ms"
    line = (
        f"{name}: {rate_per_second:.0f} msg/s acked (total {stats.acked}, pending {stats.pending}, "
        f"failed {stats.failed}), reconnects {feed.reconnects}, quarantined {feed.quarantined}, "
        f"source lag {lag}"
    )
    if blocked_seconds is not None:
        line += f"; BACK-PRESSURE for {blocked_seconds:.0f}s ({stats.last_error})"
    return line


class ProgressLog:
    def __init__(
        self,
        name: str,
        stats: SinkStats,
        feed: FeedCounters,
        interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.stats, self.feed = name, stats, feed
        self.interval_seconds = interval_seconds
        self._clock = clock
        self._last_time = clock()
        self._last_acked = stats.acked

    def maybe_log(self, force: bool = False) -> str | None:
        now = self._clock()
        elapsed = now - self._last_time
        if not force and elapsed < self.interval_seconds:
            return None
        rate = (self.stats.acked - self._last_acked) / elapsed if elapsed > 0 else 0.0
        blocked = None if self.stats.blocked_since is None else now - self.stats.blocked_since
        line = format_progress(self.name, rate, self.stats, self.feed, blocked)
        log.info(line)
        self._last_time, self._last_acked = now, self.stats.acked
        return line
