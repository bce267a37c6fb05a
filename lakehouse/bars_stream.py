"""The 1-minute bars stream: the ``trades`` table's appends -> ``bars_1m`` and ``late_trades``.

Reads the snapshots the raw-trades job appends to ``trades`` (an Iceberg streaming source) and,
per micro-batch: records trades whose bar is already closed in ``late_trades``, then combines the
other trades into the bars of their still-open windows (``lakehouse.open_bars``, kept per batch in
the checkpoint) and MERGEs the changed bars, whole, into ``bars_1m``. Whole bars from per-batch
progress keep the bars exact and make a replayed micro-batch harmless. The bar maths live in
``lakehouse.bars`` and ``lakehouse.open_bars``; ``jobs/bars.py`` runs this stream on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lakehouse import bars, streaming
from lakehouse.bars_progress import BarsProgress, BarsProgressLog
from lakehouse.catalog import spark_table_name
from lakehouse.open_bars import (
    BarKey,
    OpenBar,
    apply_partials,
    first_window_after,
    split_by_knowledge,
    still_open,
)
from lakehouse.ops import stream_metrics
from lakehouse.settings import Settings
from lakehouse.tables import BARS_1M, LATE_TRADES, TRADES
from lakehouse.times import from_epoch_micros, to_epoch_micros
from lakehouse.trades import trades_in_ranges

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession
    from pyspark.sql.streaming import StreamingQuery

JOB_NAME = "bars"
QUERY_NAME = "bars_1m"
log = logging.getLogger(JOB_NAME)
RUNTIME_GROUP_FILTER = "spark.sql.optimizer.runtime.rowLevelOperationGroupFilter.enabled"


def checkpoint_location(settings: Settings) -> str:
    """The bars stream's checkpoint; its progress log (``BarsProgressLog``) lives inside it."""
    return streaming.checkpoint_location(settings, JOB_NAME)


class BarsBatchWriter:
    """The ``foreachBatch`` sink: late trades -> ``late_trades``; changed bars -> ``bars_1m``.

    The job keeps the bars whose windows are still open (``lakehouse.open_bars``) and combines each
    batch's trades into them, so a batch costs what its own trades cost. A window whose first trades
    it meets is new once the job tracks every trade (``split_by_knowledge``); before that (its first
    batch, the first after an upgrade) a window it does not hold is built from the trades table once.
    Every write is idempotent (MERGE of whole bars on the table keys, late-ness and open bars taken
    from the progress as it stood before this batch), so Spark may replay a batch after a crash.
    """

    def __init__(self, spark: SparkSession, settings: Settings, checkpoint: str) -> None:
        # A session of the writer's own: its MERGE bounds the target itself (``merge_bars_sql``), so
        # Spark's runtime group filter (one more scan and join of the target) is pure cost here and
        # is turned off in this session only; other jobs' upserts rely on it (docs/performance.md#the-bars-job).
        self.spark = spark.newSession()
        self.spark.conf.set(RUNTIME_GROUP_FILTER, "false")
        self.trades_table = spark_table_name(settings, TRADES)
        self.bars_table = spark_table_name(settings, BARS_1M)
        self.late_table = spark_table_name(settings, LATE_TRADES)
        self.lateness_seconds = settings.streaming.allowed_lateness_seconds
        self.progress = BarsProgressLog(f"{checkpoint}/high_water_mark")

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        session = self.spark
        before = self.progress.before(batch_id)
        watermark = bars.watermark_from(before.high_water_mark, self.lateness_seconds)
        windows = bars.batch_by_window(batch_df).collect()  # the batch's one full pass
        if not windows:
            return
        on_time, late = [], []
        for w in windows:
            (late if bars.window_is_late(w["window_start_us"], w["window_seconds"], watermark) else on_time).append(w)
        late_count = sum(w["trades"] for w in late)
        if late_count:
            self._record_late(session, bars.split_late(batch_df, watermark)[1], watermark, batch_id)
        partials = [open_bar_from(w) for w in on_time if w["trade_count"]]
        known, unknown = split_by_knowledge(partials, before.open_bars, before.tracked_from_us)
        rebuilt = self._bars_from_table(
            session, [bar.key for bar in unknown], from_epoch_micros(max(w["ingested_us"] for w in windows))
        )
        open_now, changed = apply_partials(before.open_bars, known)
        open_now.update((bar.key, bar) for bar in rebuilt)
        self._merge_bars(session, changed + rebuilt, batch_id)
        mark = bars.advance_high_water_mark(
            before.high_water_mark, from_epoch_micros(max(w["mark_us"] for w in windows))
        )
        closed_before = bars.watermark_from(mark, self.lateness_seconds)
        tracked_from_us = before.tracked_from_us
        if tracked_from_us is None:
            tracked_from_us = self._tracking_starts(session, windows)
        stream_metrics.committed_event_time(QUERY_NAME, mark.timestamp())  # ops hook
        stream_metrics.late_trades(QUERY_NAME, late_count)
        self.progress.record(batch_id, BarsProgress(
            mark,
            still_open(open_now, None if closed_before is None else to_epoch_micros(closed_before)),
            tracked_from_us,
        ))
        elapsed = time.monotonic() - started
        trades = sum(w["trades"] for w in windows)
        log.info(
            "batch %d: %d trades in %.2f s (%.0f trades/s), %d bars merged (%d built from the table), "
            "%d late trades, watermark %s",
            batch_id,
            trades,
            elapsed,
            trades / max(elapsed, 1e-9),
            len(changed) + len(rebuilt),
            len(rebuilt),
            late_count,
            watermark.isoformat() if watermark else "none yet",
        )

    def _record_late(self, session: SparkSession, late: DataFrame, watermark: datetime, batch_id: int) -> int:
        """MERGE the too-late trades into ``late_trades`` (insert-only, so a replay adds nothing).
        A second pass over the batch, taken only when it holds late trades."""
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

    def _tracking_starts(self, session: SparkSession, windows: list[Row]) -> int:
        """The first window after every trade stored so far and in this batch: from there on each
        trade of a window passes through the job, so a window it does not hold has none stored
        (``split_by_knowledge``). Asked once per checkpoint; the newest event time comes from the
        data files' metrics where Iceberg has them."""
        from pyspark.sql import functions as F

        newest_stored_us = session.table(self.trades_table).select(F.unix_micros(F.max("event_time"))).first()[0]
        newest_window_us = max(w["window_start_us"] for w in windows)
        return first_window_after(max(newest_stored_us or 0, newest_window_us), bars.BAR_SECONDS)

    def _bars_from_table(
        self, session: SparkSession, windows: list[BarKey], ingested_until: datetime
    ) -> list[OpenBar]:
        """Whole bars of ``windows`` from the trades table, for windows the job does not hold.

        Read only for those symbols and spans (Iceberg prunes partitions and files) and only up to
        the newest ``ingested_time`` in this batch, so trades the raw job committed after this
        batch's snapshots wait for their own batch instead of being counted twice.
        """
        from pyspark.sql import functions as F

        if not windows:
            return []
        length = timedelta(seconds=bars.BAR_SECONDS)
        ranges = bars.symbol_ranges(
            (symbol, from_epoch_micros(start_us), from_epoch_micros(start_us) + length) for symbol, start_us in windows
        )
        # A small local relation, independent of the streaming plan, to broadcast into the join.
        wanted = session.createDataFrame(windows, "symbol string, window_start_us bigint")
        trades = (
            session.table(self.trades_table)
            .where(trades_in_ranges(ranges) & (F.col("ingested_time") <= F.lit(ingested_until)))
            .transform(bars.eligible_trades)
            # The raw table is deduplicated by contract; this keeps the bars exact even if not.
            .dropDuplicates(["trade_id"])
        )
        whole = bars.partial_bars(trades).join(F.broadcast(wanted), ["symbol", "window_start_us"], "left_semi")
        return [open_bar_from(row) for row in whole.collect()]

    def _merge_bars(self, session: SparkSession, changed: list[OpenBar], batch_id: int) -> None:
        """MERGE whole bars into ``bars_1m`` (insert new windows, overwrite known ones)."""
        from pyspark.sql import functions as F

        if not changed:
            return
        # The update time travels as data: as a literal (current_timestamp()) it would be inlined
        # into the generated code, new classes to compile every batch
        # (docs/performance.md#code-generation-and-jit-warm-up).
        updated_us = to_epoch_micros(datetime.now(UTC))
        rows = session.createDataFrame(
            [(b.symbol, b.window_start_us, b.window_end_us, b.open, b.high, b.low, b.close, b.volume,
              b.trade_count, b.vwap, updated_us, b.close_key // bars.ORDER_KEY_EVENT_SCALE) for b in changed],
            "symbol string, start_us bigint, end_us bigint, open double, high double, low double, "
            "close double, volume double, trade_count bigint, vwap double, updated_us bigint, last_event_us bigint",
        )
        view = f"bars_changed_batch_{batch_id}"
        rows.select(
            "symbol",
            F.timestamp_micros("start_us").alias("window_start"),
            F.timestamp_micros("end_us").alias("window_end"),
            "open", "high", "low", "close", "volume", "trade_count", "vwap",
            F.timestamp_micros("updated_us").alias("updated_time"),
            F.timestamp_micros("last_event_us").alias("last_event_time"),
        ).select(*BARS_1M.column_names).createOrReplaceTempView(view)
        session.sql(merge_bars_sql(self.bars_table, view, changed))
        session.catalog.dropTempView(view)


def merge_bars_sql(bars_table: str, changed_view: str, changed: Sequence[OpenBar]) -> str:
    """MERGE of whole bars on (symbol, window_start), its target bounded to the changed bars'
    symbols and from the day of their earliest window on: Iceberg prunes the scan, and so the
    copy-on-write rewrite, to the files of the touched symbols' open days. A target row outside
    the bounds cannot match a changed bar, so the bounds change nothing but the cost. The bound
    is a whole day because the table's files are (symbol, day) ones, so it prunes as much as the
    window itself would, and the code Spark generates for it stays the same all day instead of
    changing every minute. Symbols are quoted as they are: the Trade contract's symbol pattern
    admits no quote or backslash."""
    symbols = ", ".join(f"'{symbol}'" for symbol in sorted({bar.symbol for bar in changed}))
    earliest_us = min(bar.window_start_us for bar in changed)
    day_us = bars.INTERVAL_SECONDS["1d"] * 1_000_000
    return (
        f"MERGE INTO {bars_table} t USING {changed_view} s "
        "ON t.symbol = s.symbol AND t.window_start = s.window_start "
        f"AND t.symbol IN ({symbols}) AND t.window_start >= timestamp_micros({earliest_us // day_us * day_us}) "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )


def open_bar_from(row: Row) -> OpenBar:
    """An ``OpenBar`` from a ``bars.partial_bars`` or ``bars.batch_by_window`` row."""
    return OpenBar(
        symbol=row["symbol"], window_start_us=row["window_start_us"], window_seconds=row["window_seconds"],
        open=row["open"], open_key=int(row["open_key"]), high=row["high"], low=row["low"],
        close=row["close"], close_key=int(row["close_key"]), volume=row["volume"],
        trade_count=row["trade_count"], notional=row["notional"],
    )


def start_bars_query(
    spark: SparkSession,
    settings: Settings,
    checkpoint: str | None = None,
    max_rows_per_batch: int | None = None,
) -> StreamingQuery:
    """Start the bars stream and return it (the job, the pipeline and tests run it in-process).
    The tables must exist (``lakehouse.spark.ensure_tables``)."""
    checkpoint = checkpoint or checkpoint_location(settings)
    log.info(
        "reading appends of %s; writing %s (MERGE on symbol, window_start) and %s; "
        "lateness %.0f s, trigger %.0f s, checkpoint %s",
        spark_table_name(settings, TRADES),
        spark_table_name(settings, BARS_1M),
        spark_table_name(settings, LATE_TRADES),
        settings.streaming.allowed_lateness_seconds,
        settings.streaming.trigger_seconds,
        checkpoint,
    )
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
