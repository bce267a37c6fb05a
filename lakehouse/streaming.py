"""Running streaming queries: Kafka source options, progress logging and clean shutdown.

Shared by every job so each job file stays a few lines of wiring.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lakehouse.kafka_loss import starting_offsets
from lakehouse.kafka_security import spark_kafka_options
from lakehouse.logs import root_cause
from lakehouse.settings import Settings
from lakehouse.shutdown import StopRequest

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger(__name__)


# Spark's Kafka source tries an offset lookup 3 times, each bounded by Kafka's 60 s default.
OFFSET_LOOKUP_PATIENCE_S = 180


def offset_lookup_options(timeout_s: float) -> dict[str, str]:
    """Kafka source options that bound each offset lookup by ``timeout_s`` and try again (each try
    on a new admin client, so on fresh metadata) for about ``OFFSET_LOOKUP_PATIENCE_S`` in all.

    A lookup addressed to a partition leader that has died waits out its whole timeout even after
    the partition has a new leader; with Kafka's default a broker's death stalled the stream 60 s.
    Kafka's clients refuse a ``default.api.timeout.ms`` below ``request.timeout.ms`` (30 s by
    default), so one request may take the whole timeout."""
    timeout_ms = str(int(timeout_s * 1000))
    return {
        "kafka.default.api.timeout.ms": timeout_ms,
        "kafka.request.timeout.ms": timeout_ms,
        "fetchOffset.numRetries": str(max(3, math.ceil(OFFSET_LOOKUP_PATIENCE_S / timeout_s))),
    }


def read_kafka(spark: SparkSession, settings: Settings, topic: str, resume: tuple[str, str] | None = None) -> DataFrame:
    """The official Kafka source on one topic, from the earliest offset on a new checkpoint.

    ``resume`` (job name, checkpoint): the stream's checkpoint is first checked against what Kafka
    still holds (``lakehouse.kafka_loss``: a loss stops the job, or, accepted, starts a new
    checkpoint where the old one stopped)."""
    starting = (starting_offsets(spark, settings, *resume, topic=topic) if resume else None) or "earliest"
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", starting)
        .option("includeHeaders", "false")
        .options(**offset_lookup_options(settings.streaming.kafka_offsets_timeout_seconds))
        .options(**spark_kafka_options(settings))
    )
    if settings.streaming.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(settings.streaming.max_offsets_per_trigger))
    return reader.load()


def in_own_pool(spark: SparkSession, pool: str, start: Callable[[], StreamingQuery]) -> StreamingQuery:
    """Start a query in a FAIR scheduler pool of its own, so several queries in one application
    share the cores instead of one long micro-batch (a bars MERGE) holding up the others."""
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", pool)
    try:
        return start()
    finally:
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", None)


def checkpoint_location(settings: Settings, job_name: str) -> str:
    location = settings.streaming.checkpoint_dir
    if "://" in location:
        return f"{location.rstrip('/')}/{job_name}"
    return str(settings.path(location) / job_name)


def describe_progress(progress: dict) -> str:
    """One line an operator can read: rows, rate, batch time, and Kafka lag where known."""
    rows = progress.get("numInputRows", 0)
    rate = progress.get("processedRowsPerSecond") or 0.0
    duration_ms = (progress.get("durationMs") or {}).get("triggerExecution", 0)
    lag = None
    for source in progress.get("sources") or []:
        behind = (source.get("metrics") or {}).get("maxOffsetsBehindLatest")
        if behind is not None:
            lag = int(float(behind)) + (lag or 0)
    return (
        f"{progress.get('name') or 'query'} batch {progress.get('batchId')}: {rows} rows, "
        f"{rate:,.0f} rows/s, {duration_ms} ms" + (f", Kafka lag {lag} msgs" if lag is not None else "")
    )


# What Spark's Kafka source says when the messages it is to read next were deleted (retention ran
# out while the stream was behind); a restart names the lost offsets (lakehouse.kafka_loss).
KAFKA_LOSS_MARKERS = ("OffsetOutOfRangeException", "Some data may have been lost")
KAFKA_LOSS_HINT = ("; Kafka deleted messages this stream had not read yet: start the job again, and it names "
                   "what was lost and how to go on")


# How long a stop request waits for a running micro-batch to finish before stopping the query
# anyway (its commits are idempotent, so an interrupted batch is redone after a restart). A
# supervisor's grace period must be longer (docs/operations.md).
BATCH_FINISH_TIMEOUT_SECONDS = 120.0


def stop_between_batches(query: StreamingQuery, timeout_seconds: float = BATCH_FINISH_TIMEOUT_SECONDS) -> None:
    """Stop ``query`` once its running micro-batch (if any) has finished: ``query.stop()`` alone
    interrupts a batch midway."""
    deadline = time.monotonic() + timeout_seconds
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()


def run_until_stopped(queries: list[StreamingQuery], process_name: str = "streaming",
                      poll_seconds: float = 1.0, stop: StopRequest | None = None,
                      after_stop: Sequence[Callable[[], None]] = ()) -> None:
    """Log each query's progress per micro-batch until one fails or a stop is requested (SIGTERM or
    SIGINT: ``lakehouse.shutdown``; a second signal ends the process at once).

    On a stop request every query is stopped between micro-batches, in order, so checkpoints and
    tables stay consistent; then ``after_stop`` runs, in order (the pipeline catches its bars up
    with the trades its raw query stored last). A failed query raises its exception after the
    others are stopped, and ``after_stop`` does not run. The caller stops the SparkSession
    afterwards, so the JVM can exit.
    """
    stop = stop or StopRequest(process_name).install()
    log.info("%s: running %s; SIGTERM or SIGINT stops it between micro-batches", process_name,
             ", ".join(query.name or "query" for query in queries))
    last_batch: dict[str, int] = {}
    failure: Exception | None = None
    while not stop.wait(poll_seconds):
        for query in queries:
            progress = query.lastProgress
            if progress and last_batch.get(query.id) != progress["batchId"]:
                last_batch[query.id] = progress["batchId"]
                if progress.get("numInputRows", 0):
                    log.info(describe_progress(progress))
            if not query.isActive:
                failure = query.exception()
                stop.request()
    for query in queries:
        if query.isActive:
            log.info("stopping %s", query.name)
            stop_between_batches(query)
    if failure is not None:
        log.error("%s: a query failed: %s", process_name, failure)
        log.info("%s: every query stopped", process_name)
        hint = KAFKA_LOSS_HINT if any(marker in str(failure) for marker in KAFKA_LOSS_MARKERS) else ""
        raise RuntimeError(f"streaming query failed: {root_cause(failure)}{hint} (the whole trace is logged above)")
    for finish in after_stop:
        finish()
    log.info("%s: every query stopped", process_name)
