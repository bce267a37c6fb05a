"""1-minute OHLCV bars, downstream of the raw trades table.

Reads the snapshots the raw-trades job appends to ``trades`` (an Iceberg streaming source) and,
per micro-batch: records trades whose bar is already closed in ``late_trades``, then recomputes
every other bar the batch touches from all its (deduplicated) trades and MERGEs it into
``bars_1m``. Recomputing whole bars, instead of adding increments, keeps the bars exact and makes
a replayed micro-batch (or a rebuilt checkpoint) harmless. A bar's earlier trades are held in memory
while its window is open (``lakehouse.open_windows``); the trades table is read only for windows
this process has not seen. The bar maths live in ``lakehouse.bars``.

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
from lakehouse.open_windows import OpenWindowTrades, WindowKey
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
        self.open_windows = OpenWindowTrades()

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
                self.open_windows.close_through(bars.watermark_from(mark, self.lateness_seconds))
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
        """Recompute every bar the on-time eligible trades touch, from all its trades, and MERGE.

        A bar's earlier trades come from ``self.open_windows`` (held since they streamed by); only
        a window this process has not seen yet is read from the trades table, pruned to its symbol
        and minute and only up to the newest ``ingested_time`` in this batch, so trades the raw job
        committed after this batch's snapshots wait for their own batch.
        """
        from pyspark.sql import functions as F

        eligible = bars.eligible_trades(on_time)
        keys = [
            ((row["symbol"], row["start_us"]), from_epoch_micros(row["end_us"]))
            for row in bars.affected_windows(eligible).select(
                "symbol",
                F.unix_micros("window_start").alias("start_us"),
                F.unix_micros("window_end").alias("end_us"),
            ).collect()
        ]
        if not keys:
            return 0
        ends = dict(keys)
        missing = self.open_windows.missing(list(ends))
        if missing:
            self.open_windows.add(self._stored_trades(session, missing, ends, ingested_until),
                                  max(ends[key] for key in missing))
        self.open_windows.add(eligible, max(ends.values()))
        self.open_windows.mark_complete(list(ends))
        in_windows = (
            self.open_windows.trades()
            .join(F.broadcast(self._window_frame(session, list(ends))), ["symbol", "window_start"], "left_semi")
            # Held frames may overlap (a window read from the table includes this batch's trades).
            .dropDuplicates(["trade_id"])
            .drop("window_start")
        )
        view = f"bars_recomputed_batch_{batch_id}"
        # Materialised first: a small, lineage-free MERGE source (Iceberg's MERGE plans its source
        # twice, and re-planning the semi-join on top of the held frames trips the analyser).
        recomputed = bars.bars_from_trades(in_windows).localCheckpoint(eager=True)
        recomputed.createOrReplaceTempView(view)
        session.sql(
            f"MERGE INTO {self.bars_table} t USING {view} s "
            "ON t.symbol = s.symbol AND t.window_start = s.window_start "
            "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        )
        session.catalog.dropTempView(view)
        return len(keys)

    @staticmethod
    def _window_frame(session: SparkSession, windows: list[WindowKey]) -> DataFrame:
        """A small local relation of (symbol, window_start), independent of the streaming plan."""
        from pyspark.sql import functions as F

        return session.createDataFrame(windows, "symbol string, start_us bigint").select(
            "symbol", F.timestamp_micros("start_us").alias("window_start")
        )

    def _stored_trades(
        self, session: SparkSession, windows: list[WindowKey], ends: dict[WindowKey, datetime], ingested_until: datetime
    ) -> DataFrame:
        """The eligible trades the table holds for ``windows`` (Iceberg prunes partitions and files)."""
        from pyspark.sql import functions as F

        ranges = bars.symbol_ranges([(symbol, from_epoch_micros(start), ends[(symbol, start)])
                                     for symbol, start in windows])
        trades = (
            session.table(self.trades_table)
            .where(trades_in_ranges(ranges) & (F.col("ingested_time") <= F.lit(ingested_until)))
            .transform(bars.eligible_trades)
        )
        return bars.with_window(trades).join(
            F.broadcast(self._window_frame(session, windows)), ["symbol", "window_start"], "left_semi"
        )


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
