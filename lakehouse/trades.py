"""Raw-trade transforms: parsed Trade messages -> rows of the trades table, deduplicated.

Pure functions; the raw-trades job wires them to Kafka and Iceberg. Copies of one trade (the same
``trade_id``) always share its symbol, which is what lets the dedupe and the check against stored
trades work symbol by symbol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from lakehouse.conditions import bar_eligible_column
from lakehouse.parsing import PARSED
from lakehouse.tables import TRADES
from lakehouse.times import from_epoch_ms, to_epoch_micros

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

# Iceberg write options for a frame already sorted by (day, symbol) within each task
# (``TradeRows.first_of_each_trade``): no second shuffle, and one open data file per task at a time.
# A fanout writer instead keeps a Parquet writer (column buffers, compressor) open for every
# partition a task meets, so its memory grows with the symbols a batch touches: 2,000 symbols in one
# batch ran a 2 GiB driver out of heap. Without fanout, Iceberg asks Spark for a local sort by the
# spec's fields: the rows arrive in that order from the dedupe's sort, and the distribution is
# "none", so Spark adds that sort but no second shuffle.
#
# The streaming appends write with the table's day-only append spec (``output-spec-id``, set by the
# writer): one file per task and day, whatever the number of symbols; folding
# (``lakehouse.fold``) moves those rows into day-symbol files later, off the stream's path.
# They write Parquet uncompressed: opening a zstd stream per column chunk was more than half a
# small file's fixed cost (bench/bench_file_cost.py); the table's own codec (zstd) is what folding
# and maintenance write.
CLUSTERED_WRITE_OPTIONS: Mapping[str, str] = {
    "distribution-mode": "none", "fanout-enabled": "false", "compression-codec": "uncompressed",
}
# Iceberg's own ``days`` transform as a Spark function of the session's (Iceberg) catalog: sorting by
# the very expression Iceberg asks the write to be sorted by is what lets Spark see that it is.
EVENT_DAY = "system.days(event_time)"


class TradeRows:
    """Valid parsed Trade messages -> rows of the trades table, one per trade.

    Built once per streaming job, like ``lakehouse.parsing.MessageParser``: the output columns (the
    eligibility rule is a lambda) and the dedupe window take hundreds of Py4J round trips to build.
    """

    def __init__(self) -> None:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        m = f"{PARSED}."
        self.columns = [
            F.col(m + "trade_id").alias("trade_id"),
            F.col(m + "source").alias("source"),
            F.col(m + "symbol").alias("symbol"),
            F.col(m + "price").alias("price"),
            F.col(m + "volume").alias("volume"),
            F.timestamp_millis(F.col(m + "event_time_ms")).alias("event_time"),
            F.coalesce(F.col(m + "conditions"), F.array().cast("array<string>")).alias("conditions"),
            F.col(m + "venue").alias("venue"),
            F.timestamp_millis(F.col(m + "received_time_ms")).alias("received_time"),
            F.col("partition").alias("kafka_partition"),
            F.col("offset").alias("kafka_offset"),
            bar_eligible_column(F.col(m + "source"), F.col(m + "conditions")).alias("bar_eligible"),
        ]
        # Copies of a trade share its symbol and event time, so grouping them by the day too changes
        # no group; it makes the window's sort (day, symbol, trade_id, ...) the order the writer
        # needs for either spec (day; day and symbol), and leaves each day file sorted by symbol.
        copies = Window.partitionBy(F.expr(EVENT_DAY), F.col("symbol"), F.col("trade_id")).orderBy(
            "kafka_partition", "kafka_offset")
        self.copy_number = F.row_number().over(copies)
        self.is_first_copy = F.col("_copy") == 1

    def rows(self, valid_messages: DataFrame) -> DataFrame:
        """Valid parsed Trade messages (with their Kafka coordinates) in the trades table's shape,
        but for ``ingested_time`` (``stamped``)."""
        return valid_messages.select(*self.columns)

    @staticmethod
    def stamped(trades: DataFrame, ingested_time: datetime) -> DataFrame:
        """``trades`` with their ``ingested_time``, in the trades table's column order.

        The time comes from a one-row relation joined in, not a literal in the plan: Spark inlines
        a timestamp literal into the code it generates, so a new time per micro-batch would mean
        new Java classes to compile and JIT-compile every batch
        (docs/performance.md#code-generation-and-jit-warm-up).
        """
        from pyspark.sql import functions as F

        stamp = trades.sparkSession.sql(
            f"SELECT * FROM VALUES (timestamp_micros({to_epoch_micros(ingested_time)})) AS stamp(ingested_time)"
        )
        return trades.crossJoin(F.broadcast(stamp)).select(*TRADES.column_names)

    def first_of_each_trade(self, trades: DataFrame, partitions: int) -> DataFrame:
        """One row per trade_id: the copy read first from Kafka (lowest partition, offset).

        Deterministic, so a replayed micro-batch keeps the very same row. The rows are shuffled
        once, by symbol (copies of a trade share it), and leave each task sorted by (day, symbol,
        trade_id), the order either spec of the trades table needs: write it with
        ``CLUSTERED_WRITE_OPTIONS``.

        A ``row_number`` filter rather than ``min_by`` over a struct of the row: the struct forces
        a sort-based aggregate that measured 1.3-1.5x slower on the same 400,000 trades.
        """
        return (
            trades.repartition(partitions, "symbol")
            .withColumn("_copy", self.copy_number)
            .where(self.is_first_copy)
            .drop("_copy")
        )

    @staticmethod
    def in_place(trades: DataFrame, partitions: int) -> DataFrame:
        """``trades`` that hold one row per trade_id already, in the order ``first_of_each_trade``
        leaves them, without a shuffle: the tasks that read them are merged into ``partitions``
        (``coalesce`` moves no rows) and each is sorted by (day, symbol, trade_id) in place.

        The shuffle and the window over every column were the largest per-row cost of a batch that
        the engine ceiling does not pay; a batch holds copies of a trade only after a producer
        re-sent, so the writer takes this path whenever the batch's measure found none
        (docs/performance.md#the-raw-trades-jobs-cost-model)."""
        from pyspark.sql import functions as F

        return trades.coalesce(partitions).sortWithinPartitions(F.expr(EVENT_DAY), "symbol", "trade_id")


def not_yet_stored(trades: DataFrame, stored_trade_ids: DataFrame) -> DataFrame:
    """Trades whose trade_id is not among ``stored_trade_ids`` (re-sent trades drop out here)."""
    return trades.join(stored_trade_ids.select("trade_id"), on="trade_id", how="left_anti")


@dataclass(frozen=True)
class SymbolSpan:
    """The event times (epoch ms, inclusive) one symbol's valid trades cover in a micro-batch."""

    symbol: str
    first_ms: int
    last_ms: int


@dataclass(frozen=True)
class SymbolRange:
    """An event-time range ``[start, end)`` of one symbol."""

    symbol: str
    start: datetime
    end: datetime


def ranges_to_check(spans: Iterable[SymbolSpan], stored_until_ms: Mapping[str, int]) -> list[SymbolRange]:
    """Where earlier copies of this batch's trades could be stored, symbol by symbol.

    A re-sent trade carries its original symbol and event time, so an earlier copy lies in its
    symbol's span. ``stored_until_ms`` holds, per symbol, an upper bound of the event times the table
    holds (``stored_until_from_files`` when the writer starts, then advanced by each commit). So a
    symbol needs checking only where its span reaches back to or below that mark (nothing, for a
    feed in event-time order), and a symbol without a mark not at all: nothing of it is stored.
    """
    ranges = []
    for span in spans:
        until = stored_until_ms.get(span.symbol)
        if until is None:
            continue
        last = min(span.last_ms, until)
        if span.first_ms <= last:
            ranges.append(SymbolRange(span.symbol, from_epoch_ms(span.first_ms), from_epoch_ms(last + 1)))
    return ranges


# The mark of a symbol with a data file that has no event-time bound: every trade is checked.
UNBOUNDED_MS = 2**62


def stored_until_from_files(file_bounds: Iterable[tuple[str, int | None]]) -> dict[str, int]:
    """Per symbol, the newest event time (ms) the table's data files can hold, from their metrics:
    (symbol, upper bound of event_time in ms, or None for a file without that metric) per file."""
    marks: dict[str, int] = {}
    for symbol, upper_ms in file_bounds:
        bound = UNBOUNDED_MS if upper_ms is None else upper_ms
        marks[symbol] = max(marks.get(symbol, bound), bound)
    return marks


def advance_stored_until(stored_until_ms: Mapping[str, int], spans: Iterable[SymbolSpan]) -> dict[str, int]:
    """``stored_until_ms`` after committing ``spans`` (marks never move back)."""
    advanced = dict(stored_until_ms)
    for span in spans:
        advanced[span.symbol] = max(advanced.get(span.symbol, span.last_ms), span.last_ms)
    return advanced


MAX_EXACT_RANGES = 64  # trades_in_ranges: past this many symbols, one span for all


def trades_in_ranges(ranges: Iterable[SymbolRange]) -> Column:
    """A filter on the trades table that Iceberg turns into partition and file pruning
    (``symbol`` is an identity partition, ``event_time`` a day partition plus file min/max).

    Past ``MAX_EXACT_RANGES`` symbols it is coarser: their symbols, within the span of all their
    ranges. It then keeps more rows than the ranges hold, which both callers allow (a semi-join on
    the windows wanted; an anti-join on trade ids), and spares Spark an OR of thousands of terms to
    optimise and compile: a first bars batch over 2,000 symbols took 116 s with the exact filter."""
    from pyspark.sql import functions as F

    ranges = list(ranges)
    if not ranges:
        return F.lit(False)
    if len(ranges) > MAX_EXACT_RANGES:
        return (F.col("symbol").isin(sorted({span.symbol for span in ranges}))
                & (F.col("event_time") >= F.lit(min(span.start for span in ranges)))
                & (F.col("event_time") < F.lit(max(span.end for span in ranges))))
    conditions = [
        (F.col("symbol") == F.lit(span.symbol))
        & (F.col("event_time") >= F.lit(span.start))
        & (F.col("event_time") < F.lit(span.end))
        for span in ranges
    ]
    # OR-ed pairwise, so many symbols make a tree log2(n) deep, not n deep: Spark and Iceberg
    # convert filters recursively.
    while len(conditions) > 1:
        paired = [a | b for a, b in zip(conditions[::2], conditions[1::2], strict=False)]
        conditions = paired + conditions[len(paired) * 2:]
    return conditions[0]


def ingest_stamp(now: datetime, previous: datetime | None) -> datetime:
    """The ``ingested_time`` of a writer's next append: ``now``, but never at or before the stamp of
    its previous append (``previous``). The bars job reads a window's stored trades up to the newest
    ingest time of its micro-batch (``BarsBatchWriter._bars_from_table``); a clock stepped back
    between two appends gave the later one older stamps, and its trades were counted twice."""
    if previous is None or now > previous:
        return now
    return previous + timedelta(microseconds=1)
