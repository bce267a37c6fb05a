"""Vendor bars, feed events and source rejects: parsed messages -> rows of their tables. Pure transforms."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakehouse.parsing import PARSED

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def vendor_bar_rows(valid_messages: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    m = f"{PARSED}."
    return valid_messages.select(
        F.col(m + "source").alias("source"),
        F.col(m + "symbol").alias("symbol"),
        F.col(m + "interval").alias("interval"),
        F.timestamp_millis(F.col(m + "bar_start_ms")).alias("bar_start"),
        *[F.col(m + c).alias(c) for c in ("open", "high", "low", "close", "volume")],
        F.timestamp_millis(F.col(m + "received_time_ms")).alias("received_time"),
        F.current_timestamp().alias("ingested_time"),
    )


def feed_event_rows(valid_messages: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    m = f"{PARSED}."
    return valid_messages.select(
        F.col(m + "source").alias("source"),
        F.col(m + "kind").alias("kind"),
        F.coalesce(F.col(m + "symbol"), F.lit("")).alias("symbol"),
        F.timestamp_millis(F.col(m + "start_ms")).alias("start_time"),
        F.timestamp_millis(F.col(m + "end_ms")).alias("end_time"),
        F.col(m + "reason").alias("reason"),
        F.current_timestamp().alias("ingested_time"),
    )


def source_reject_rows(valid_messages: DataFrame) -> DataFrame:
    """QuarantinedInput messages (what a producer could not parse) in the quarantine table's shape.

    The Kafka coordinates are those of the quarantine-topic message; the raw bytes are the source's
    own frame, and the reason says which source rejected it and why.
    """
    from pyspark.sql import functions as F

    m = f"{PARSED}."
    reason = F.concat(F.col(m + "source"), F.lit(" producer: "), F.col(m + "reason"),
                      F.when(F.col(m + "raw_truncated"), F.lit(" (raw text truncated)")).otherwise(F.lit("")))
    return valid_messages.select(
        F.col("topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key").alias("raw_key"),
        F.encode(F.col(m + "raw"), "UTF-8").alias("raw_value"),
        reason.alias("reason"),
        F.timestamp_millis(F.col(m + "received_time_ms")).alias("quarantined_time"),
    )
