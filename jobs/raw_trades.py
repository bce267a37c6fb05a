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
from lakehouse.parsing import REJECT_REASON, parse_messages, quarantine_rows
from lakehouse.settings import Settings, load_settings
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.streaming import checkpoint_location, read_kafka, run_until_stopped
from lakehouse.tables import QUARANTINE, TRADES
from lakehouse.trades import event_time_ranges, first_of_each_trade, in_ranges, not_yet_stored, trade_rows

JOB_NAME = "raw_trades"
log = logging.getLogger(JOB_NAME)


def write_batch(settings: Settings, writer: str, batch: DataFrame, batch_id: int) -> None:
    started = time.monotonic()
    spark = batch.sparkSession
    trades_table = spark_table_name(settings, TRADES)
    parsed = parse_messages(batch, Trade).persist()
    try:
        rejected = parsed.where(F.col(REJECT_REASON).isNotNull())
        trades = first_of_each_trade(trade_rows(parsed.where(F.col(REJECT_REASON).isNull()))).persist()
        stored_ids = in_ranges(spark.table(trades_table), event_time_ranges(trades)).select("trade_id")
        fresh = not_yet_stored(trades, stored_ids)
        marker = batch_marker(writer, batch_id)
        wrote = append_once(fresh, trades_table, marker)
        quarantined = rejected.count()
        if quarantined:
            append_once(quarantine_rows(rejected), spark_table_name(settings, QUARANTINE), marker)
        trades.unpersist()
    finally:
        parsed.unpersist()
    log.info(
        "batch %s: %s -> %s, %s quarantined, %.1f s",
        batch_id, settings.kafka.trades_topic, trades_table if wrote else "(already committed)",
        quarantined, time.monotonic() - started,
    )


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
        .foreachBatch(lambda batch, batch_id: write_batch(settings, writer, batch, batch_id))
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
