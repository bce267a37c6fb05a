"""A producer's Prometheus metrics, read from the counters the producer already keeps.

A collector, not instrumented calls: the values are read from ``SinkStats`` and ``FeedCounters``
when Prometheus scrapes, so publishing a message costs nothing extra. Counters only ever grow
(``rate(lakehouse_producer_messages_total[1m])`` is messages per second); times are Unix seconds, so
an alert computes an age as ``time() - lakehouse_producer_last_trade_timestamp_seconds``. A "message"
is anything the source sent (pings too); a "trade" is data, what a stall is judged on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from producers.kafka_sink import KafkaSink
from producers.progress import FeedCounters


class ProducerCollector(Collector):
    def __init__(self, source: str, sink: KafkaSink, counters: FeedCounters,
                 clock_seconds: Callable[[], float] = time.time, in_session: Callable[[], bool] | None = None) -> None:
        self.source, self.sink, self.counters = source, sink, counters
        self._clock_seconds = clock_seconds
        self._in_session = in_session

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats, feed, source = self.sink.stats, self.counters, self.source
        acked = CounterMetricFamily("lakehouse_producer_messages", "Messages Kafka acknowledged, by topic.",
                                    labels=["source", "topic"])
        for topic, count in sorted(dict(stats.acked_by_topic).items()):
            acked.add_metric([source, topic], count)
        yield acked
        for name, doc, value in (
            ("lakehouse_producer_messages_failed", "Messages Kafka finally refused.", stats.failed),
            ("lakehouse_producer_reconnects", "Reconnections to the source after a lost link.", feed.reconnects),
            ("lakehouse_producer_feed_gaps", "Feed gaps recorded (time the source was not read).", feed.gaps),
            ("lakehouse_producer_quarantined", "Source records that could not be parsed, sent to quarantine.",
             feed.quarantined),
        ):
            family = CounterMetricFamily(name, doc, labels=["source"])
            family.add_metric([source], value)
            yield family
        pending = GaugeMetricFamily("lakehouse_producer_buffer_pending_messages",
                                    "Messages handed to Kafka and not acknowledged yet.", labels=["source"])
        pending.add_metric([source], stats.pending)
        yield pending
        fill = GaugeMetricFamily("lakehouse_producer_buffer_fill_ratio",
                                 "Unacknowledged bytes over the bytes the producer may hold (1 = back-pressure).",
                                 labels=["source"])
        fill.add_metric([source], stats.pending_bytes / self.sink.config.max_pending_bytes)
        yield fill
        if self._in_session is not None:
            # What the stall alert waits for: a source rightly silent between sessions is no stall.
            session = GaugeMetricFamily("lakehouse_producer_in_session",
                                        "1 while the source's market is in its trading session, else 0.",
                                        labels=["source"])
            session.add_metric([source], float(self._in_session()))
            yield session
        if feed.source_lag_ms is not None:
            lag = GaugeMetricFamily("lakehouse_producer_source_lag_seconds",
                                    "Receive time minus the newest event time in the last frame or poll.",
                                    labels=["source"])
            lag.add_metric([source], feed.source_lag_ms / 1000)
            yield lag
        if feed.last_message_ms is not None:
            last = GaugeMetricFamily("lakehouse_producer_last_message_timestamp_seconds",
                                     "When the source last sent anything (Unix time).", labels=["source"])
            last.add_metric([source], feed.last_message_ms / 1000)
            yield last
            age = GaugeMetricFamily("lakehouse_producer_last_message_age_seconds",
                                    "Seconds since the source last sent anything.", labels=["source"])
            age.add_metric([source], max(self._clock_seconds() - feed.last_message_ms / 1000, 0.0))
            yield age
        yield from self._trade_times(feed)

    def _trade_times(self, feed: FeedCounters) -> Iterator[GaugeMetricFamily]:
        """The last trade's time and age. The age is exported from the start (since the producer
        started, before its first trade) so the stall alert also fires for a feed that never sent one."""
        source = self.source
        if feed.last_trade_ms is not None:
            last = GaugeMetricFamily("lakehouse_producer_last_trade_timestamp_seconds",
                                     "When the source last sent a trade (Unix time).", labels=["source"])
            last.add_metric([source], feed.last_trade_ms / 1000)
            yield last
        since_ms = feed.started_ms if feed.last_trade_ms is None else feed.last_trade_ms
        age = GaugeMetricFamily("lakehouse_producer_last_trade_age_seconds",
                                "Seconds since the source last sent a trade (before the first: since the start).",
                                labels=["source"])
        age.add_metric([source], max(self._clock_seconds() - since_ms / 1000, 0.0))
        yield age


def register_producer_metrics(source: str, sink: KafkaSink, counters: FeedCounters,
                              in_session: Callable[[], bool] | None = None) -> None:
    """Add the producer's collector to the process registry (what ``serve_metrics`` serves);
    ``in_session``: whether the source's market trades now."""
    from prometheus_client import REGISTRY

    REGISTRY.register(ProducerCollector(source, sink, counters, in_session=in_session))
