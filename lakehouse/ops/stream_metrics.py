"""Prometheus metrics of the streaming queries, in the driver process.

Two feeds: a ``StreamingQueryListener`` turns each query's progress report into rows, batch
durations and Kafka offsets behind; the ``foreachBatch`` writers report what only they know (the
newest event time they committed, late trades). Every series is labelled ``query`` with the
query's name (``raw_trades``, ``bars``...). Served by ``lakehouse.ops.metrics_http.serve_metrics``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

INPUT_ROWS = Counter("lakehouse_stream_input_rows", "Rows read by the query's micro-batches.", ["query"])
BATCHES = Counter("lakehouse_stream_batches", "Micro-batches completed (empty ones included).", ["query"])
INPUT_ROWS_PER_SECOND = Gauge("lakehouse_stream_input_rows_per_second",
                              "Rows per second arriving, as of the last micro-batch.", ["query"])
PROCESSED_ROWS_PER_SECOND = Gauge("lakehouse_stream_processed_rows_per_second",
                                  "Rows per second processed, as of the last micro-batch.", ["query"])
BATCH_DURATION = Histogram("lakehouse_stream_batch_duration_seconds", "Wall time of one micro-batch.", ["query"],
                           buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300))
OFFSETS_BEHIND = Gauge("lakehouse_stream_kafka_offsets_behind",
                       "Kafka messages between the last micro-batch's end and the topic's end (summed over "
                       "partitions).", ["query"])
LAST_PROGRESS = Gauge("lakehouse_stream_last_progress_timestamp_seconds",
                      "When the query last reported progress (Unix time).", ["query"])
NEWEST_EVENT = Gauge("lakehouse_stream_newest_committed_event_timestamp_seconds",
                     "Newest event time the query has committed to its table (Unix time).", ["query"])
_newest_event_seconds: dict[str, float] = {}
LATE_TRADES = Counter("lakehouse_stream_late_trades", "Trades that came after their bar had closed.", ["query"])


def offsets_behind(progress: Mapping[str, Any]) -> int | None:
    """Kafka messages behind the topic end, summed over the query's Kafka sources (None: no Kafka
    source reported it)."""
    behind = None
    for source in progress.get("sources") or []:
        value = (source.get("metrics") or {}).get("maxOffsetsBehindLatest")
        if value is not None:
            behind = (behind or 0) + int(float(value))
    return behind


def observe_progress(progress: Mapping[str, Any], now_seconds: float) -> None:
    """Fold one progress report (``StreamingQueryProgress`` as JSON) into the metrics."""
    query = progress.get("name") or progress.get("id") or "query"
    INPUT_ROWS.labels(query).inc(progress.get("numInputRows") or 0)
    BATCHES.labels(query).inc()
    INPUT_ROWS_PER_SECOND.labels(query).set(progress.get("inputRowsPerSecond") or 0.0)
    PROCESSED_ROWS_PER_SECOND.labels(query).set(progress.get("processedRowsPerSecond") or 0.0)
    duration_ms = (progress.get("durationMs") or {}).get("triggerExecution")
    if duration_ms is not None:
        BATCH_DURATION.labels(query).observe(duration_ms / 1000)
    behind = offsets_behind(progress)
    if behind is not None:
        OFFSETS_BEHIND.labels(query).set(behind)
    LAST_PROGRESS.labels(query).set(now_seconds)


def committed_event_time(query: str, newest_event_seconds: float) -> None:
    """A writer committed rows up to this event time (Unix seconds); the gauge only moves forward."""
    if newest_event_seconds > _newest_event_seconds.get(query, float("-inf")):
        _newest_event_seconds[query] = newest_event_seconds
        NEWEST_EVENT.labels(query).set(newest_event_seconds)


def late_trades(query: str, count: int) -> None:
    LATE_TRADES.labels(query).inc(count)


def listen_for_progress(spark: SparkSession) -> None:
    """Register a listener that feeds every query's progress into the metrics."""
    import time

    from pyspark.sql.streaming import StreamingQueryListener

    class ProgressMetrics(StreamingQueryListener):
        def onQueryStarted(self, event: Any) -> None:
            pass

        def onQueryProgress(self, event: Any) -> None:
            try:
                observe_progress(json.loads(event.progress.json), time.time())
            except Exception:  # a metrics hiccup must never fail the query
                log.exception("could not record a progress report")

        def onQueryIdle(self, event: Any) -> None:
            pass

        def onQueryTerminated(self, event: Any) -> None:
            pass

    spark.streams.addListener(ProgressMetrics())


def serve_stream_metrics(port: int) -> Callable[[], None] | None:
    """The endpoint of every query of this application, on 127.0.0.1:``port`` (0: none at all).
    A job serves it before its Spark session starts: a port it cannot have
    (``lakehouse.ops.metrics_http.MetricsPortError``) then ends it before any JVM does."""
    from lakehouse.ops.metrics_http import serve_metrics

    return serve_metrics(port, "streaming", setting="streaming_port")


def start_stream_metrics(spark: SparkSession, port: int) -> None:
    """Feed every query's progress into what ``serve_stream_metrics`` serves (port 0: nothing)."""
    if port:
        listen_for_progress(spark)
