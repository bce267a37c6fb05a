"""1-minute OHLCV bars, downstream of the raw trades table.

Reads the snapshots the raw-trades job appends to ``trades`` (an Iceberg streaming source) and,
per micro-batch: records trades whose bar is already closed in ``late_trades``, then recomputes
every other bar the batch touches from the (deduplicated) trades table and MERGEs it into
``bars_1m``. Recomputing whole bars from the table, instead of adding increments, keeps the bars
exact and makes a replayed micro-batch harmless. The bar maths live in ``lakehouse.bars``.

    python -m jobs.bars            # settings from conf/lakehouse.toml + LAKEHOUSE__* env
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse import bars
from lakehouse.catalog import spark_table_name
from lakehouse.logs import configure_logging
from lakehouse.settings import Settings, load_settings
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.streaming import run_until_stopped
from lakehouse.tables import BARS_1M, LATE_TRADES, TRADES
from lakehouse.trades import trades_in_ranges
from lakehouse.watermarks import HighWaterMarkLog, from_epoch_micros

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("jobs.bars")

QUERY_NAME = "bars_1m"


def checkpoint_location(settings: Settings) -> str:
    base = settings.streaming.checkpoint_dir
    root = base if "://" in base else str(settings.path(base))
    return f"{root.rstrip('/')}/bars"


class BarsBatchWriter:
    """The ``foreachBatch`` sink: late trades -> ``late_trades``; recomputed bars -> ``bars_1m``.

    Every write is idempotent (MERGE on the table keys, late-ness decided from the high-water mark
    as it stood before this batch), so Spark may replay a batch after a crash.
    """

    def __init__(self, spark: SparkSession, settings: Settings, checkpoint: str) -> None:
        # All catalog reads and writes go through the query's own session (not the cloned session
        # foreachBatch hands over): one Iceberg catalog instance, so one SQLite connection per JVM.
        self.spark = spark
        self.trades_table = spark_table_name(settings, TRADES)
        self.bars_table = spark_table_name(settings, BARS_1M)
        self.late_table = spark_table_name(settings, LATE_TRADES)
        self.lateness_seconds = settings.streaming.allowed_lateness_seconds
        self.marks = HighWaterMarkLog(f"{checkpoint}/high_water_mark")

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        from pyspark.sql import functions as F

        started = time.monotonic()
        session = self.spark
        previous_mark = self.marks.before(batch_id)
        watermark = bars.watermark_from(previous_mark, self.lateness_seconds)
        batch = batch_df.persist()
        on_time, late = bars.split_late(batch, watermark)
        try:
            stats = batch.agg(
                F.count(F.lit(1)).alias("rows"),
                F.max(F.unix_micros(bars.high_water_mark_candidate())).alias("mark_us"),
                F.max(F.unix_micros("ingested_time")).alias("ingested_us"),
            ).first()
            if not stats or not stats["rows"]:
                return
            late_count = self._record_late(session, late, watermark, batch_id) if watermark else 0
            merged = self._merge_bars(session, on_time, from_epoch_micros(stats["ingested_us"]), batch_id)
            mark = bars.advance_high_water_mark(previous_mark, from_epoch_micros(stats["mark_us"]))
            if mark is not None:
                self.marks.record(batch_id, mark)
        finally:
            batch.unpersist()
        elapsed = time.monotonic() - started
        log.info(
            "batch %d: %d trades in %.2f s (%.0f trades/s), %d bars merged, %d late trades, watermark %s",
            batch_id,
            stats["rows"],
            elapsed,
            stats["rows"] / max(elapsed, 1e-9),
            merged,
            late_count,
            watermark.isoformat() if watermark else "none yet",
        )

    def _record_late(self, session: SparkSession, late: DataFrame, watermark: datetime, batch_id: int) -> int:
        """MERGE the too-late trades into ``late_trades`` (insert-only, so a replay adds nothing)."""
        from pyspark.sql import functions as F

        rows = late.select(
            "trade_id",
            "symbol",
            F.unix_micros("event_time").alias("event_us"),
            F.unix_micros("window_start").alias("window_us"),
        ).collect()
        if not rows:
            return 0
        late_here = session.createDataFrame(
            [tuple(row) for row in rows], "trade_id string, symbol string, event_us bigint, window_us bigint"
        ).select(
            "trade_id",
            "symbol",
            F.timestamp_micros("event_us").alias("event_time"),
            F.timestamp_micros("window_us").alias("window_start"),
        )
        view = f"late_trades_batch_{batch_id}"
        bars.late_trade_records(late_here, watermark).createOrReplaceTempView(view)
        session.sql(
            f"MERGE INTO {self.late_table} t USING {view} s ON t.trade_id = s.trade_id "
            "WHEN NOT MATCHED THEN INSERT *"
        )
        session.catalog.dropTempView(view)
        return len(rows)

    def _merge_bars(
        self, session: SparkSession, on_time: DataFrame, ingested_until: datetime, batch_id: int
    ) -> int:
        """Recompute every bar the on-time eligible trades touch, from the trades table, and MERGE.

        The trades table is read only for the touched symbols and time spans (Iceberg prunes
        partitions and files) and only up to the newest ``ingested_time`` in this batch, so trades
        the raw job committed after this batch's snapshots wait for their own batch.
        """
        from pyspark.sql import functions as F

        windows = bars.affected_windows(bars.eligible_trades(on_time))
        keys = windows.select(
            "symbol",
            F.unix_micros("window_start").alias("start_us"),
            F.unix_micros("window_end").alias("end_us"),
        ).collect()
        if not keys:
            return 0
        windows_utc = [
            (row["symbol"], from_epoch_micros(row["start_us"]), from_epoch_micros(row["end_us"]))
            for row in keys
        ]
        ranges = bars.symbol_ranges(windows_utc)
        # A small local relation, independent of the streaming plan, to broadcast into the join.
        affected = session.createDataFrame(
            [(symbol, start) for symbol, start, _ in windows_utc], "symbol string, window_start timestamp"
        )
        trades = (
            session.table(self.trades_table)
            .where(trades_in_ranges(ranges) & (F.col("ingested_time") <= F.lit(ingested_until)))
            .transform(bars.eligible_trades)
            # The raw table is deduplicated by contract; this keeps the bars exact even if not.
            .dropDuplicates(["trade_id"])
        )
        in_windows = (
            bars.with_window(trades)
            .join(F.broadcast(affected), ["symbol", "window_start"], "left_semi")
            .drop("window_start", "window_end")
        )
        view = f"bars_recomputed_batch_{batch_id}"
        # Materialised first: a small, lineage-free MERGE source (Iceberg's MERGE plans its
        # source twice, and re-planning the pruned read with the semi-join trips the analyser).
        recomputed = bars.bars_from_trades(in_windows).localCheckpoint(eager=True)
        recomputed.createOrReplaceTempView(view)
        session.sql(
            f"MERGE INTO {self.bars_table} t USING {view} s "
            "ON t.symbol = s.symbol AND t.window_start = s.window_start "
            "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        )
        session.catalog.dropTempView(view)
        return len(keys)


def start_bars_query(
    spark: SparkSession,
    settings: Settings,
    checkpoint: str | None = None,
    max_rows_per_batch: int | None = None,
) -> StreamingQuery:
    """Start the bars stream and return it (tests and pipelines run it in-process)."""
    checkpoint = checkpoint or checkpoint_location(settings)
    trades = (
        spark.readStream.format("iceberg")
        # Compaction commits (replace) are skipped by Iceberg itself; deletes/overwrites by
        # maintenance must not stop the stream either: the trades table is append-only by contract.
        .option("streaming-skip-delete-snapshots", "true")
        .option("streaming-skip-overwrite-snapshots", "true")
    )
    if max_rows_per_batch:
        trades = trades.option("streaming-max-rows-per-micro-batch", str(max_rows_per_batch))
    writer = (
        trades.load(spark_table_name(settings, TRADES))
        .writeStream.queryName(QUERY_NAME)
        .foreachBatch(BarsBatchWriter(spark, settings, checkpoint))
        .option("checkpointLocation", checkpoint)
    )
    if settings.streaming.trigger_seconds > 0:
        writer = writer.trigger(processingTime=f"{settings.streaming.trigger_seconds} seconds")
    return writer.start()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jobs.bars",
        description="Stream 1-minute OHLCV bars from the Iceberg trades table into bars_1m "
        "(late trades beyond the allowed lateness go to late_trades). Settings come from "
        "conf/lakehouse.toml and LAKEHOUSE__SECTION__KEY environment variables; trigger interval: "
        "LAKEHOUSE__STREAMING__TRIGGER_SECONDS, lateness: LAKEHOUSE__STREAMING__ALLOWED_LATENESS_SECONDS.",
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="settings TOML (default conf/lakehouse.toml)"
    )
    parser.add_argument(
        "--max-rows-per-batch",
        type=int,
        default=None,
        help="soft cap on trades per micro-batch (Iceberg streaming-max-rows-per-micro-batch)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    settings = load_settings(args.config)
    spark = build_spark_session(settings, "lakehouse-bars")
    ensure_tables(spark, settings, (TRADES, BARS_1M, LATE_TRADES))
    checkpoint = checkpoint_location(settings)
    log.info(
        "bars job: reading appends of %s; writing %s (MERGE on symbol, window_start) and %s; "
        "lateness %.0f s, trigger %.0f s, checkpoint %s",
        spark_table_name(settings, TRADES),
        spark_table_name(settings, BARS_1M),
        spark_table_name(settings, LATE_TRADES),
        settings.streaming.allowed_lateness_seconds,
        settings.streaming.trigger_seconds,
        checkpoint,
    )
    query = start_bars_query(spark, settings, checkpoint, args.max_rows_per_batch)
    try:
        run_until_stopped([query])  # SIGTERM/SIGINT stop the query between micro-batches
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
