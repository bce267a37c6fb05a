"""Raw-trade transforms: parsed Trade messages -> rows of the trades table, deduplicated.

Pure ``DataFrame -> DataFrame`` functions; the raw-trades job wires them to Kafka and Iceberg.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from lakehouse.parsing import PARSED

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

_ONE_HOUR = timedelta(hours=1)


def trade_rows(valid_messages: DataFrame) -> DataFrame:
    """Valid parsed Trade messages (with their Kafka coordinates) in the trades table's shape."""
    from pyspark.sql import functions as F

    m = f"{PARSED}."
    return valid_messages.select(
        F.col(m + "trade_id").alias("trade_id"),
        F.col(m + "source").alias("source"),
        F.col(m + "symbol").alias("symbol"),
        F.col(m + "price").alias("price"),
        F.col(m + "volume").alias("volume"),
        F.timestamp_millis(F.col(m + "event_time_ms")).alias("event_time"),
        F.coalesce(F.col(m + "conditions"), F.array().cast("array<string>")).alias("conditions"),
        F.col(m + "venue").alias("venue"),
        F.timestamp_millis(F.col(m + "received_time_ms")).alias("received_time"),
        F.current_timestamp().alias("ingested_time"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
    )


def first_of_each_trade(trades: DataFrame) -> DataFrame:
    """One row per trade_id: the copy read first from Kafka (lowest partition, offset).

    Deterministic, so a replayed micro-batch keeps the very same row.
    """
    from pyspark.sql import functions as F

    columns = trades.columns
    first = F.min_by(F.struct(*columns), F.struct("kafka_partition", "kafka_offset"))
    return trades.groupBy("trade_id").agg(first.alias("t")).select("t.*")


def not_yet_stored(trades: DataFrame, stored_trade_ids: DataFrame) -> DataFrame:
    """Trades whose trade_id is not among ``stored_trade_ids`` (re-sent trades drop out here)."""
    return trades.join(stored_trade_ids.select("trade_id"), on="trade_id", how="left_anti")


MAX_RANGES = 32


def contiguous_ranges(bucket_starts: list[datetime], width: timedelta) -> list[tuple[datetime, datetime]]:
    """Sorted buckets of ``width`` -> the fewest [start, end) ranges that cover exactly them."""
    ranges: list[tuple[datetime, datetime]] = []
    for start in sorted(bucket_starts):
        if ranges and ranges[-1][1] >= start:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], start + width))
        else:
            ranges.append((start, start + width))
    return ranges


def event_time_ranges(trades: DataFrame) -> list[tuple[datetime, datetime]]:
    """The event-time ranges ``trades`` cover, to bound the read of stored trade ids.

    A re-sent trade has the same event time as its original, so looking only in these ranges finds
    every earlier copy, while Iceberg skips every file whose event_time min/max lies outside them.
    Seconds are tried first (a steady stream gives one narrow range); minutes, then hours, when
    scattered late trades would make too many ranges.
    """
    from pyspark.sql import functions as F

    for unit, width in (("second", timedelta(seconds=1)), ("minute", timedelta(minutes=1)), ("hour", _ONE_HOUR)):
        buckets = trades.select(F.date_trunc(unit, "event_time").alias("b")).distinct().limit(MAX_RANGES * 64)
        ranges = contiguous_ranges([row.b for row in buckets.collect()], width)
        if len(ranges) <= MAX_RANGES:
            return ranges
    return ranges


def in_ranges(frame: DataFrame, ranges: list[tuple[datetime, datetime]], column: str = "event_time") -> DataFrame:
    from functools import reduce

    from pyspark.sql import functions as F

    if not ranges:
        return frame.limit(0)
    condition = reduce(lambda a, b: a | b, [(F.col(column) >= s) & (F.col(column) < e) for s, e in ranges])
    return frame.where(condition)

