"""Raw trades: Kafka trades topic -> Iceberg ``trades`` (every trade once) + ``quarantine``.

Exactly once across restarts: a trade is appended only when no earlier copy of it can be stored
(it lies above its symbol's mark of what is stored) or when its id is not among the stored ones of
its symbol and span (re-sent trades drop out). The first batch after a restart, which Spark may
replay after a crash, is checked that way in full. Every commit carries its writer, batch and path.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from lakehouse.catalog import spark_table_name
from lakehouse.iceberg_writes import append_marked, append_once, batch_marker, is_catalog_busy, writer_id
from lakehouse.logs import configure_logging
from lakehouse.messages import Trade
from lakehouse.parsing import PARSED, REJECT_REASON, MessageParser, quarantine_rows
from lakehouse.settings import Settings, load_settings
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.streaming import checkpoint_location, read_kafka, run_until_stopped
from lakehouse.tables import QUARANTINE, TRADES
from lakehouse.trades import (
    CLUSTERED_WRITE_OPTIONS,
    SymbolSpan,
    TradeRows,
    above_marks,
    advance_stored_until,
    marks_from_observation,
    not_yet_stored,
    ranges_to_check,
    stored_until_from_files,
    trades_in_ranges,
)

JOB_NAME = "raw_trades"
KEPT = "_kept"  # the cached parse's flag of the trades the checked path considers
log = logging.getLogger(JOB_NAME)


class RawTradesWriter:
    """The ``foreachBatch`` sink. Each Spark job costs a fixed ~0.2-1 s on a small machine, so a
    batch runs as few as possible.

    In steady state (this process has written a batch before, so this one is no replay) a batch is
    one Spark job: the trades above their symbol's mark of what is stored, which no earlier copy
    can precede (all of them, for a feed in event-time order), are parsed, deduplicated and
    appended straight from Kafka; the counts of the rest and the new marks are observed on the way.
    Only when that pass saw rejected messages or trades reaching back into what is stored is the
    batch read again for them: the checked path, where the parse is cached, measured per symbol,
    and trades reaching back are compared with the stored trade ids of their symbol and span.

    The first batch of a process may be a replay of a batch committed (wholly, or its first part)
    before a crash: it takes the checked path over every trade, with marks read from the table, so
    what is stored already drops out by content. The Spark expressions are built once, here.
    """

    def __init__(self, settings: Settings, writer: str):
        self.settings = settings
        self.writer = writer
        self.process = uuid.uuid4().hex[:8]  # tells this process's commits from a crashed one's
        self.trades_table = spark_table_name(settings, TRADES)
        self.quarantine_table = spark_table_name(settings, QUARANTINE)
        # Per symbol, an upper bound of the event times stored (ms), read from the table once per
        # process and advanced by each commit; see ranges_to_check.
        self.stored_until_ms: dict[str, int] | None = None
        self.last_written_batch: int | None = None  # this process's newest batch
        self.parse = MessageParser(Trade)
        self.trade_rows = TradeRows()
        self.valid = F.col(REJECT_REASON).isNull()
        self.rejected = F.col(REJECT_REASON).isNotNull()
        self.symbol = F.col(f"{PARSED}.symbol")
        self.event_time_ms = F.col(f"{PARSED}.event_time_ms")
        # What a batch caches: the parse and the Kafka position, and the raw record only where the
        # quarantine needs it. Caching every valid trade's JSON too cost 5-10% of parse + cache.
        self.cached_columns = [
            "partition", "offset", PARSED, REJECT_REASON,
            *(F.when(self.rejected, F.col(raw)).alias(raw) for raw in ("topic", "timestamp", "key", "value")),
        ]
        # Per symbol of the kept trades (rejected and other messages fall in the null group).
        self.kept_symbol = F.when(F.col(KEPT), self.symbol).alias("symbol")
        self.span_of_symbol = [
            F.count_if(self.rejected).alias("rejected"),
            F.count("*").alias("trades"),
            F.min(self.event_time_ms).alias("first_ms"),
            F.max(self.event_time_ms).alias("last_ms"),
        ]

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        marker = batch_marker(self.writer, batch_id)
        if self.last_written_batch is not None and batch_id > self.last_written_batch:
            how = self._steady_batch(batch, batch_id, marker)
        else:
            how = self._checked_batch(batch, marker)
        self.last_written_batch = batch_id
        log.info("batch %s: %s -> %s: %s, %.1f s", batch_id, self.settings.kafka.trades_topic, self.trades_table,
                 how, time.monotonic() - started)

    def _steady_batch(self, batch: DataFrame, batch_id: int, marker: str) -> str:
        above = above_marks(self.symbol, self.event_time_ms, self._stored_until(batch.sparkSession))
        try:
            fresh, rejected, reaching_back = self._append_fresh(batch, self.valid & above, f"{marker}:fresh")
        except Exception as error:  # Py4JJavaError carries the Java exception text
            if not is_catalog_busy(error):
                raise
            # The commit may have landed all the same: take the marks from the table, so whatever
            # it stored is checked, and take the checked path for the whole batch.
            log.warning("batch %s: catalog busy at commit; checking the whole batch against the table", batch_id)
            self.stored_until_ms = self._stored_until_in_table(batch.sparkSession)
            return self._checked_batch(batch, marker)
        if rejected or reaching_back:
            self._append_checked(batch, marker, f"{marker}:checked", only=~above)
        return f"{fresh} trades in one pass, {reaching_back} reaching back checked, {rejected} quarantined"

    def _checked_batch(self, batch: DataFrame, marker: str) -> str:
        checked, rejected = self._append_checked(batch, marker, f"{marker}:checked-{self.process}")
        return f"{checked} trades checked against what is stored, {rejected} quarantined"

    def _stored_until(self, spark: SparkSession) -> dict[str, int]:
        """The marks of what is stored, read on the first batch of this process and kept up to date by
        each commit after it."""
        if self.stored_until_ms is None:
            self.stored_until_ms = self._stored_until_in_table(spark)
        return self.stored_until_ms

    def _stored_until_in_table(self, spark: SparkSession) -> dict[str, int]:
        """Per symbol, the newest event time the table's data files can hold, from their metrics: a
        metadata query that reads no data. A writer on a new checkpoint re-reading a topic the table
        already holds then checks every batch that reaches into it, not only its first."""
        bound = "readable_metrics.event_time.upper_bound"
        rows = spark.sql(
            f"SELECT partition.symbol AS symbol, "
            f"CASE WHEN count_if({bound} IS NULL) = 0 THEN unix_millis(max({bound})) END AS until_ms "
            f"FROM {self.trades_table}.files WHERE content = 0 GROUP BY partition.symbol"
        ).collect()
        return stored_until_from_files((row.symbol, row.until_ms) for row in rows)

    def _append_fresh(self, batch: DataFrame, fresh: Column, marker: str) -> tuple[int, int, int]:
        """Append the ``fresh`` trades in one Spark job and advance the marks; (trades seen,
        rejected messages, valid trades that are not fresh), observed on the way."""
        counts = Observation()
        parsed = self.parse(batch).observe(
            counts,
            F.count_if(fresh).alias("fresh"),
            F.count_if(self.rejected).alias("rejected"),
            F.count_if(self.valid & ~fresh).alias("reaching_back"),
        )
        partitions = self.settings.streaming.shuffle_partitions
        trades = self.trade_rows.first_of_each_trade(self.trade_rows.rows_where(parsed, fresh), partitions)
        trades, newest = self.trade_rows.observing_newest(trades)
        append_marked(trades, self.trades_table, marker, CLUSTERED_WRITE_OPTIONS)
        written = marks_from_observation(newest.get["newest"])
        self.stored_until_ms = advance_stored_until(
            self._stored_until(batch.sparkSession), (SymbolSpan(s, ms, ms) for s, ms in written.items())
        )
        seen = counts.get
        return seen["fresh"], seen["rejected"], seen["reaching_back"]

    def _append_checked(
        self, batch: DataFrame, quarantine_marker: str, trades_marker: str, only: Column | None = None
    ) -> tuple[int, int]:
        """The checked path over the batch's valid trades (or those meeting ``only``): cache the
        parse, measure it per symbol, append the trades not stored yet, quarantine the rejects.
        (valid trades it considered, rejected messages)."""
        kept = self.valid if only is None else self.valid & only
        parsed = self.parse(batch).select(*self.cached_columns, kept.alias(KEPT)).persist()
        try:
            rejected, kept_count, spans = self._measure(parsed)
            if spans:
                self._append_trades(parsed.where(F.col(KEPT)), spans, trades_marker)
            if rejected:
                append_once(quarantine_rows(parsed.where(self.rejected)), self.quarantine_table, quarantine_marker)
        finally:
            parsed.unpersist()
        return kept_count, rejected

    def _measure(self, parsed: DataFrame) -> tuple[int, int, list[SymbolSpan]]:
        """(rejected messages, kept trades, event-time span of each symbol's kept trades), in one pass."""
        rows = parsed.groupBy(self.kept_symbol).agg(*self.span_of_symbol).collect()
        spans = [SymbolSpan(r.symbol, r.first_ms, r.last_ms) for r in rows if r.symbol is not None]
        return sum(r.rejected for r in rows), sum(r.trades for r in rows if r.symbol is not None), spans

    def _append_trades(self, kept: DataFrame, spans: list[SymbolSpan], marker: str) -> None:
        """Append the kept trades not stored yet (checked where they reach back into what is stored).
        ``marker`` is new to the table (batch, path, process), so only a retried commit looks for it."""
        spark = kept.sparkSession
        partitions = self.settings.streaming.shuffle_partitions
        trades = self.trade_rows.first_of_each_trade(self.trade_rows.rows(kept), partitions)
        ranges = ranges_to_check(spans, self._stored_until(spark))
        if ranges:
            stored = spark.table(self.trades_table).where(trades_in_ranges(ranges))
            trades = not_yet_stored(trades, stored.select("trade_id"))
        append_once(trades, self.trades_table, marker, CLUSTERED_WRITE_OPTIONS, known_uncommitted=True)
        self.stored_until_ms = advance_stored_until(self._stored_until(spark), spans)


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
