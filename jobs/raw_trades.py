"""Raw trades: Kafka trades topic -> Iceberg ``trades`` (every trade once) + ``quarantine``.

Exactly once across restarts: each micro-batch drops trade ids already stored (re-sent trades) and
commits with a batch marker, so a micro-batch replayed after a crash is recognised and skipped.
"""

from __future__ import annotations

import argparse
import logging
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import spark_table_name
from lakehouse.iceberg_writes import append_once, batch_marker, writer_id
from lakehouse.logs import configure_logging
from lakehouse.messages import Trade
from lakehouse.parsing import PARSED, REJECT_REASON, parse_messages, quarantine_rows
from lakehouse.settings import Settings, load_settings
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.streaming import checkpoint_location, read_kafka, run_until_stopped
from lakehouse.tables import QUARANTINE, TRADES
from lakehouse.trades import event_time_ranges, first_of_each_trade, in_ranges, not_yet_stored, trade_rows

JOB_NAME = "raw_trades"
MAX_CONTIGUOUS_SPAN_MS = 10 * 60 * 1000
log = logging.getLogger(JOB_NAME)


class RawTradesWriter:
    """The ``foreachBatch`` sink. Each Spark job costs a fixed ~0.2-1 s on a small machine, so a
    batch runs as few as possible: one pass that caches the parse and measures it, one check of the
    batch marker, one write (and a quarantine write only when something was rejected).
    """

    def __init__(self, settings: Settings, writer: str):
        self.settings = settings
        self.writer = writer
        self.trades_table = spark_table_name(settings, TRADES)
        self.quarantine_table = spark_table_name(settings, QUARANTINE)
        # Newest event time this process has committed. Unknown after a restart (trades from an
        # earlier run may be anywhere), then the first batch checks its whole event-time span.
        self.stored_until_ms: int | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        parsed = parse_messages(batch, Trade).persist()
        try:
            summary = parsed.agg(
                F.count_if(F.col(REJECT_REASON).isNotNull()).alias("rejected"),
                F.min(F.when(F.col(REJECT_REASON).isNull(), F.col(f"{PARSED}.event_time_ms"))).alias("lo_ms"),
                F.max(F.when(F.col(REJECT_REASON).isNull(), F.col(f"{PARSED}.event_time_ms"))).alias("hi_ms"),
            ).first()
            marker = batch_marker(self.writer, batch_id)
            wrote = summary.lo_ms is not None and self._append_trades(parsed, summary.lo_ms, summary.hi_ms, marker)
            if summary.rejected:
                rejected = parsed.where(F.col(REJECT_REASON).isNotNull())
                append_once(quarantine_rows(rejected), self.quarantine_table, marker)
        finally:
            parsed.unpersist()
        log.info(
            "batch %s: %s -> %s, %s quarantined, %.1f s",
            batch_id, self.settings.kafka.trades_topic, self.trades_table if wrote else "(nothing new)",
            summary.rejected, time.monotonic() - started,
        )

    def _append_trades(self, parsed: DataFrame, lo_ms: int, hi_ms: int, marker: str) -> bool:
        spark = parsed.sparkSession
        trades = first_of_each_trade(trade_rows(parsed.where(F.col(REJECT_REASON).isNull())))
        # A re-sent trade carries its original event time, so earlier copies can only lie in the
        # span both this batch and the stored trades cover; usually a sliver, often nothing.
        upper_ms = hi_ms if self.stored_until_ms is None else min(hi_ms, self.stored_until_ms)
        if lo_ms > upper_ms:
            fresh = trades
        elif hi_ms - lo_ms <= MAX_CONTIGUOUS_SPAN_MS:
            # Epoch literals, not Python datetimes: independent of the driver's time zone.
            span = F.col("event_time").between(F.timestamp_millis(F.lit(lo_ms)), F.timestamp_millis(F.lit(upper_ms)))
            stored = spark.table(self.trades_table).where(span)
            fresh = not_yet_stored(trades, stored.select("trade_id"))
        else:  # scattered late trades: look only in the ranges they fall in
            stored = in_ranges(spark.table(self.trades_table), event_time_ranges(trades))
            fresh = not_yet_stored(trades, stored.select("trade_id"))
        wrote = append_once(fresh, self.trades_table, marker)
        self.stored_until_ms = hi_ms if self.stored_until_ms is None else max(self.stored_until_ms, hi_ms)
        return wrote


def start(spark: SparkSession, settings: Settings) -> StreamingQuery:
    """Start the query (tables created if missing) and return it; the caller awaits or stops it."""
    ensure_tables(spark, settings, (TRADES, QUARANTINE))
    checkpoint = checkpoint_location(settings, JOB_NAME)
    writer = writer_id(checkpoint)
    log.info(
        "reading Kafka topic %s at %s; writing %s and %s; checkpoint %s; trigger %ss",
        settings.kafka.trades_topic, settings.kafka.bootstrap_servers, spark_table_name(settings, TRADES),
        spark_table_name(settings, QUARANTINE), checkpoint, settings.streaming.trigger_seconds,
    )
    return (
        read_kafka(spark, settings, settings.kafka.trades_topic)
        .writeStream.queryName(JOB_NAME)
        .foreachBatch(RawTradesWriter(settings, writer))
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=f"{settings.streaming.trigger_seconds} seconds")
        .start()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    configure_logging()
    settings = load_settings()
    spark = build_spark_session(settings, JOB_NAME)
    run_until_stopped([start(spark, settings)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
