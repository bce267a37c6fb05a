"""The 1-minute bars stream: the ``trades`` table's appends -> ``bars_1m`` and ``late_trades``.

Reads the snapshots the raw-trades job appends to ``trades`` (an Iceberg streaming source) and,
per micro-batch: records trades whose bar is already closed in ``late_trades``, then combines the
other trades into the bars of their still-open windows (``lakehouse.open_bars``, kept per batch in
the checkpoint) and commits them to ``bars_1m``: the open bars replace the open-bars file, the bars
that closed are appended (``lakehouse.bars_commit``), and a background fold moves closed bars into
day-symbol files (``lakehouse.fold``). Whole bars from per-batch progress keep the bars exact and
make a replayed micro-batch harmless. The bar maths live in ``lakehouse.bars`` and
``lakehouse.open_bars``; ``jobs/bars.py`` runs this stream on its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lakehouse import bars, streaming
from lakehouse.bars_commit import BarsCommitter, open_bars_files
from lakehouse.bars_progress import BarsProgress, BarsProgressLog
from lakehouse.catalog import spark_table_name
from lakehouse.fold import BackgroundFolder
from lakehouse.logs import describe_error
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
    from collections.abc import Iterable

    from pyspark.sql import DataFrame, Row, SparkSession
    from pyspark.sql.streaming import StreamingQuery

JOB_NAME = "bars"
QUERY_NAME = "bars_1m"
log = logging.getLogger(JOB_NAME)


def checkpoint_location(settings: Settings) -> str:
    """The bars stream's checkpoint; its progress log (``BarsProgressLog``) lives inside it."""
    return streaming.checkpoint_location(settings, JOB_NAME)


class BarsBatchWriter:
    """The ``foreachBatch`` sink: late trades -> ``late_trades``; open and closed bars -> ``bars_1m``.

    The job keeps the bars whose windows are still open (``lakehouse.open_bars``) and combines each
    batch's trades into them, so a batch costs what its own trades cost. A window whose first trades
    it meets is new once the job tracks every trade (``split_by_knowledge``); before that (its first
    batch, the first after an upgrade) a window it does not hold is built from the trades table once.
    Every write is idempotent (whole bars, late-ness and open bars taken from the progress as it
    stood before this batch, a bars commit made once per batch), so Spark may replay a batch after
    a crash.
    """

    def __init__(self, spark: SparkSession, settings: Settings, checkpoint: str) -> None:
        self.spark = spark.newSession()  # its temporary views apart from other queries'
        self.trades_table = spark_table_name(settings, TRADES)
        self.bars_table = spark_table_name(settings, BARS_1M)
        self.late_table = spark_table_name(settings, LATE_TRADES)
        self.lateness_seconds = settings.streaming.allowed_lateness_seconds
        self.progress = BarsProgressLog(f"{checkpoint}/high_water_mark")
        self.committer = BarsCommitter(self.spark, self.bars_table, self.progress.run_id())
        self.folder = BackgroundFolder(self.spark, self.bars_table, settings.streaming.fold_interval_seconds,
                                       BARS_1M, keep=open_bars_files)

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        session = self.spark
        before = self.progress.before(batch_id)
        watermark = bars.advance_watermark(before.watermark, before.high_water_mark, self.lateness_seconds)
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
            session, [bar.key for bar in unknown], batch_df, from_epoch_micros(max(w["ingested_us"] for w in windows))
        )
        open_now, changed = apply_partials(before.open_bars, known)
        updated_us = to_epoch_micros(datetime.now(UTC))
        changed = [replace(bar, updated_us=updated_us) for bar in changed + rebuilt]
        open_now.update((bar.key, bar) for bar in changed)
        mark = bars.advance_high_water_mark(
            before.high_water_mark, from_epoch_micros(max(w["mark_us"] for w in windows))
        )
        closed_before = bars.advance_watermark(watermark, mark, self.lateness_seconds)
        open_after = still_open(open_now, None if closed_before is None else to_epoch_micros(closed_before))
        closed = [bar for key, bar in open_now.items() if key not in open_after]
        self.committer.commit(
            batch_id,
            self._bar_rows(session, open_after.values(), updated_us),
            self._bar_rows(session, closed, updated_us) if closed else None,
            stored_elsewhere=[bar.key for bar in rebuilt],
            replaced=list(before.open_bars),
        )
        tracked_from_us = before.tracked_from_us
        if tracked_from_us is None:
            tracked_from_us = self._tracking_starts(session, windows)
        stream_metrics.committed_event_time(QUERY_NAME, mark.timestamp())  # ops hook
        stream_metrics.late_trades(QUERY_NAME, late_count)
        self.progress.record(batch_id, BarsProgress(mark, open_after, tracked_from_us, closed_before))
        self.folder.maybe_start()
        elapsed = time.monotonic() - started
        trades = sum(w["trades"] for w in windows)
        log.info(
            "batch %d: %d trades in %.2f s (%.0f trades/s), %d bars changed (%d built from the table), "
            "%d open, %d closed, %d late trades, watermark %s",
            batch_id,
            trades,
            elapsed,
            trades / max(elapsed, 1e-9),
            len(changed),
            len(rebuilt),
            len(open_after),
            len(closed),
            late_count,
            watermark.isoformat() if watermark else "none yet",
        )

    def _record_late(self, session: SparkSession, late: DataFrame, watermark: datetime, batch_id: int) -> int:
        """MERGE the too-late trades into ``late_trades`` on its key (insert-only, so a replay adds nothing).
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
        on = " AND ".join(f"t.{column} = s.{column}" for column in LATE_TRADES.key)
        session.sql(f"MERGE INTO {self.late_table} t USING {view} s ON {on} WHEN NOT MATCHED THEN INSERT *")
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
        self, session: SparkSession, windows: list[BarKey], batch_df: DataFrame, ingested_until: datetime
    ) -> list[OpenBar]:
        """Whole bars of ``windows`` from the trades table, for windows the job does not hold.

        Read only for those symbols and spans (Iceberg prunes partitions and files), and only the
        trades stored before this batch's newest ``ingested_time`` (``ingested_until``, one raw-job
        append), so trades the raw job committed after this batch's snapshots wait for their own
        batch instead of being counted twice. The trades stamped ``ingested_until`` itself are taken
        from the batch, not the table: with ``streaming-max-rows-per-micro-batch`` one append's
        files may be split over two batches, and the table would give the next batch's part here
        too. (No earlier batch holds an eligible trade of such a window: it would be held.)
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
        stored_before = (
            session.table(self.trades_table)
            .where(trades_in_ranges(ranges) & (F.col("ingested_time") < F.lit(ingested_until)))
            # Every row counts, as in the batches and in rebuild_bars: the raw job stores each trade
            # once, and a trade_id reused with another symbol or event time is a trade of its own
            # (docs/contracts.md), so a dedupe on the id would drop a trade.
            .transform(bars.eligible_trades)
        )
        in_batch = (
            batch_df.where(trades_in_ranges(ranges) & (F.col("ingested_time") == F.lit(ingested_until)))
            .transform(bars.eligible_trades)
        )

        def wanted_bars(trades: DataFrame) -> list[OpenBar]:
            partials = bars.partial_bars(trades).join(F.broadcast(wanted), ["symbol", "window_start_us"], "left_semi")
            return [open_bar_from(row) for row in partials.collect()]

        combined, _ = apply_partials({bar.key: bar for bar in wanted_bars(stored_before)}, wanted_bars(in_batch))
        return list(combined.values())

    def _bar_rows(self, session: SparkSession, bar_list: Iterable[OpenBar], now_us: int) -> DataFrame:
        """``bar_list`` as rows of ``bars_1m``; ``now_us`` is the update time of a bar held from a
        version of the job that did not keep one."""
        from pyspark.sql import functions as F

        # The update time travels as data: as a literal (current_timestamp()) it would be inlined
        # into the generated code, new classes to compile every batch
        # (docs/performance.md#code-generation-and-jit-warm-up).
        rows = session.createDataFrame(
            [(b.symbol, b.window_start_us, b.window_end_us, b.open, b.high, b.low, b.close, b.volume,
              b.trade_count, b.vwap, b.updated_us or now_us, b.close_key // bars.ORDER_KEY_EVENT_SCALE)
             for b in bar_list],
            "symbol string, start_us bigint, end_us bigint, open double, high double, low double, "
            "close double, volume double, trade_count bigint, vwap double, updated_us bigint, last_event_us bigint",
        )
        return rows.select(
            "symbol",
            F.timestamp_micros("start_us").alias("window_start"),
            F.timestamp_micros("end_us").alias("window_end"),
            "open", "high", "low", "close", "volume", "trade_count", "vwap",
            F.timestamp_micros("updated_us").alias("updated_time"),
            F.timestamp_micros("last_event_us").alias("last_event_time"),
        ).select(*BARS_1M.column_names)


def open_bar_from(row: Row) -> OpenBar:
    """An ``OpenBar`` from a ``bars.partial_bars`` or ``bars.batch_by_window`` row."""
    return OpenBar(
        symbol=row["symbol"], window_start_us=row["window_start_us"], window_seconds=row["window_seconds"],
        open=row["open"], open_key=int(row["open_key"]), high=row["high"], low=row["low"],
        close=row["close"], close_key=int(row["close_key"]), volume=row["volume"],
        trade_count=row["trade_count"], notional=row["notional"],
    )


# How long a clean stop of the pipeline waits for the bars to take in the trades stored last.
CATCH_UP_TIMEOUT_SECONDS = 45.0


def start_bars_query(
    spark: SparkSession,
    settings: Settings,
    checkpoint: str | None = None,
    max_rows_per_batch: int | None = None,
    available_now: bool = False,
) -> StreamingQuery:
    """Start the bars stream and return it (the job, the pipeline and tests run it in-process).
    The tables must exist (``lakehouse.spark.ensure_tables``). ``available_now``: take in the trades
    stored when it starts, then stop (``catch_up_bars``)."""
    checkpoint = checkpoint or checkpoint_location(settings)
    log.info(
        "reading appends of %s; writing %s (open bars replaced, closed bars appended, folded every %.0f s) "
        "and %s; lateness %.0f s, trigger %.0f s, checkpoint %s",
        spark_table_name(settings, TRADES),
        spark_table_name(settings, BARS_1M),
        settings.streaming.fold_interval_seconds,
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
    if available_now:
        writer = writer.trigger(availableNow=True)
    elif settings.streaming.trigger_seconds > 0:
        writer = writer.trigger(processingTime=f"{settings.streaming.trigger_seconds} seconds")
    return writer.start()


def catch_up_bars(spark: SparkSession, settings: Settings, timeout_seconds: float = CATCH_UP_TIMEOUT_SECONDS) -> None:
    """Bars for every trade stored when it is called, then stop: what the pipeline runs once its
    raw-trades query has stopped, so the bars a clean stop leaves agree with the trades it stored
    (the bars query, a trigger behind, had not read the raw query's last commits). On the bars
    query's own checkpoint, after that query has stopped; ``timeout_seconds`` bounds the wait, and
    what is left then is read by the next start, as after any stop."""
    started = time.monotonic()
    try:
        query = start_bars_query(spark, settings, available_now=True)
        if not query.awaitTermination(timeout_seconds):
            log.warning("bars not caught up with the trades after %.0f s: stopped; the next start reads the rest",
                        timeout_seconds)
            streaming.stop_between_batches(query)
            return
    except Exception as error:  # nothing is lost: the checkpoint says what the next start reads
        log.warning("catching the bars up failed, the next start reads the rest: %s", describe_error(error))
        return
    log.info("bars caught up with the stored trades in %.1f s", time.monotonic() - started)
