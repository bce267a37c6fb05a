"""The Iceberg tables of the lakehouse: schemas, partition specs and properties, defined once.

Each table is a ``TableDef`` holding a pyiceberg ``Schema`` (the contract pyiceberg readers see)
from which the Spark DDL is rendered, so Spark jobs, pyiceberg readers, the BigQuery sync and the
tests all agree on one definition. All timestamps are UTC (``timestamptz``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DoubleType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

_DAYS = re.compile(r"days\((\w+)\)")


class Compaction(Enum):
    """Which data files maintenance may rewrite while the streams keep writing the table.

    A compaction commit fails when a writer deleted one of its input files in the meantime, and,
    worse, a copy-on-write MERGE fails when compaction replaced a file it is rewriting: the stream
    would stop. So compaction keeps out of the files a live writer may still delete.
    """

    CLOSED_DAYS = "closed days"  # day-partitioned: only days no stream writes any more
    WHOLE_TABLE = "whole table"  # append-only writers: an append never conflicts with a rewrite
    NEVER = "never"  # MERGE updates may rewrite any partition at any time


@dataclass(frozen=True)
class TableDef:
    name: str
    schema: Schema
    partition_by: tuple[str, ...]  # Spark transform expressions, e.g. "symbol", "days(event_time)"
    key: tuple[str, ...]  # the columns that identify one row (used by MERGE and dedup)
    doc: str
    properties: dict[str, str] = field(default_factory=dict)
    # Of ``properties``, those set again on a stored table that holds another value (correctness
    # depends on them); any other property an operator changed is kept.
    enforced_properties: tuple[str, ...] = ()
    compaction: Compaction = Compaction.WHOLE_TABLE
    day_column: str | None = None  # the timestamp whose day partitions the table (CLOSED_DAYS)
    # A coarser spec, a prefix of ``partition_by``, that the streaming appends write with while the
    # table's default spec stays ``partition_by`` (docs/performance.md#many-symbols). None: one spec.
    append_partition_by: tuple[str, ...] | None = None

    @property
    def column_names(self) -> list[str]:
        return [f.name for f in self.schema.fields]


def _schema(*columns: tuple[str, IcebergType, bool, str]) -> Schema:
    return Schema(
        *[
            NestedField(field_id=i, name=name, field_type=type_, required=required, doc=doc)
            for i, (name, type_, required, doc) in enumerate(columns, start=1)
        ]
    )


# Properties every table gets: v2 tables, zstd Parquet, and files sized for analysts' scans.
COMMON_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    "write.target-file-size-bytes": str(128 * 1024 * 1024),
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    # A commit that lost the race to another writer (the streams, rebuild_bars, maintenance) is
    # re-applied on the new table state by Iceberg itself; more, shorter retries than Iceberg's
    # 4 (up to 60 s apart) because several writers commit every few seconds.
    "commit.retry.num-retries": "10",
    "commit.retry.min-wait-ms": "100",
    "commit.retry.max-wait-ms": "5000",
    # The appends merge manifests (Iceberg's default, declared so it is a decision; not ``trades``,
    # which a stream reads, and whose manifests maintenance rewrites instead): maintenance does not
    # rewrite these tables' manifests, since a rewrite fails whenever an append merged the manifests
    # it replaces, and the appends keep the manifest count bounded even when maintenance is not running.
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "100",
    # Every Spark write sorts its rows by partition and keeps one data file open per task (Iceberg's
    # clustered writer), so no writer's memory grows with the partitions it touches. Iceberg's
    # default for a copy-on-write MERGE is the fanout writer, a Parquet writer open per partition: the
    # bars job's MERGE over 2,000 symbols ran its driver out of heap (docs/performance.md#many-symbols).
    "write.spark.fanout.enabled": "false",
}

TRADES = TableDef(
    name="trades",
    doc="Every trade once, as the source reported it. Deduplicated on trade_id.",
    schema=_schema(
        ("trade_id", StringType(), True, "deterministic id from the source's own fields"),
        ("source", StringType(), True, "finnhub | vnstock"),
        ("symbol", StringType(), True, "ticker as the source spells it"),
        ("price", DoubleType(), True, "trade price in the instrument's currency"),
        ("volume", DoubleType(), True, "shares (or units) traded"),
        ("event_time", TimestamptzType(), True, "when the trade happened (UTC)"),
        ("conditions", ListType(element_id=100, element_type=StringType(), element_required=False), False,
         "source trade condition codes"),
        ("venue", StringType(), False, "exchange or venue, where known"),
        ("received_time", TimestamptzType(), True, "when the producer received it (UTC)"),
        ("ingested_time", TimestamptzType(), True, "when the job wrote it (UTC)"),
        ("kafka_partition", IntegerType(), True, "Kafka partition it was read from"),
        ("kafka_offset", LongType(), True, "Kafka offset it was read from"),
        ("bar_eligible", BooleanType(), True,
         "whether the trade may update a bar: the lakehouse.conditions rule, applied at ingest"),
    ),
    # The day first: the streaming appends write with the day alone (``append_partition_by``), one file
    # per task whatever the number of symbols, and folding moves their rows into day-symbol files.
    partition_by=("days(event_time)", "symbol"),
    append_partition_by=("days(event_time)",),
    key=("trade_id",),
    # Parquet builds a dictionary for every column until it outgrows this size, and only then
    # writes the column plain. trade_id, the times and kafka_offset are nearly unique, so by
    # Iceberg's default (2 MiB) a raw batch's 20,000 trades per file were each hashed into a
    # dictionary that was then thrown away. 32 KiB gives up on those columns after a few hundred
    # values and still holds symbols, sources, conditions and up to 4,096 distinct prices or
    # volumes per row group. Same files, byte for byte; a 1M-trade append took 1.86 s instead of
    # 2.8 s (docs/performance.md#parquet-settings-and-partitioning).
    properties={
        "write.parquet.dict-size-bytes": str(32 * 1024),
        # The bars stream reads this table's appends with Iceberg's streaming source, which loses
        # the files of an append snapshot that also wrote a merged manifest whenever a micro-batch
        # spans that snapshot and a later one (it counts the merged manifest's existing files into
        # the snapshot's file positions, then reads only as many positions as files were added:
        # MicroBatches.indexManifests, Iceberg 1.10). So the appends add a manifest and merge none;
        # the folds drop the appended manifests again (docs/performance.md#maintenance-beside-the-streams).
        "commit.manifest-merge.enabled": "false",
    },
    # Set on tables created before it too: the streams' correctness depends on it.
    enforced_properties=("commit.manifest-merge.enabled",),
    # Appended to only, but a trade arrives at any lateness: a day is compacted once it is closed
    # so that its files are rewritten once, not again at every run while the day fills up.
    compaction=Compaction.CLOSED_DAYS,
    day_column="event_time",
)

BARS_1M = TableDef(
    name="bars_1m",
    doc="1-minute OHLCV bars computed from trades; late trades within the lateness correct them.",
    schema=_schema(
        ("symbol", StringType(), True, "ticker"),
        ("window_start", TimestamptzType(), True, "bar start, inclusive (UTC)"),
        ("window_end", TimestamptzType(), True, "bar end, exclusive (UTC)"),
        ("open", DoubleType(), True, "price of the first eligible trade by event time"),
        ("high", DoubleType(), True, "highest eligible trade price"),
        ("low", DoubleType(), True, "lowest eligible trade price"),
        ("close", DoubleType(), True, "price of the last eligible trade by event time"),
        ("volume", DoubleType(), True, "sum of eligible trade volumes"),
        ("trade_count", LongType(), True, "number of eligible trades"),
        ("vwap", DoubleType(), False, "volume-weighted average price; null when volume is 0"),
        ("updated_time", TimestamptzType(), True, "when this bar was last (re)computed (UTC)"),
        ("last_event_time", TimestamptzType(), False,
         "event time of the newest trade folded into the bar (UTC): the bar's age is now minus this; "
         "null in bars written before the column existed"),
    ),
    # The day first, as for trades: the bars stream keeps its open bars, and the bars that closed
    # until a fold moves them, in day-only files (``append_partition_by``; lakehouse.bars_commit).
    partition_by=("days(window_start)", "symbol"),
    append_partition_by=("days(window_start)",),
    key=("symbol", "window_start"),
    # The bars stream writes into the open day; a closed day changes only through rebuild_bars,
    # whose overwrite wins a race with compaction (compaction then retries).
    compaction=Compaction.CLOSED_DAYS,
    day_column="window_start",
)

VENDOR_BARS = TableDef(
    name="vendor_bars",
    doc="OHLCV bars as the vendor (vnstock) computed them, upserted on their key.",
    schema=_schema(
        ("source", StringType(), True, "vendor"),
        ("symbol", StringType(), True, "ticker"),
        ("interval", StringType(), True, "1m, 5m, 15m, 30m, 1H or 1D"),
        ("bar_start", TimestamptzType(), True, "bar start (UTC)"),
        ("open", DoubleType(), True, ""),
        ("high", DoubleType(), True, ""),
        ("low", DoubleType(), True, ""),
        ("close", DoubleType(), True, ""),
        ("volume", DoubleType(), True, ""),
        ("received_time", TimestamptzType(), True, "when the producer received it (UTC)"),
        ("ingested_time", TimestamptzType(), True, "when the job wrote it (UTC)"),
    ),
    partition_by=("symbol",),
    key=("source", "symbol", "interval", "bar_start"),
    # Upserted by MERGE into any symbol's files at any time; its copy-on-write rewrites replace
    # the files they touch already.
    compaction=Compaction.NEVER,
)

QUARANTINE = TableDef(
    name="quarantine",
    doc="Every Kafka message that could not be parsed or validated, with the reason.",
    schema=_schema(
        ("topic", StringType(), True, "Kafka topic"),
        ("kafka_partition", IntegerType(), True, ""),
        ("kafka_offset", LongType(), True, ""),
        ("kafka_timestamp", TimestamptzType(), False, "broker timestamp of the message"),
        ("raw_key", BinaryType(), False, "message key bytes"),
        ("raw_value", BinaryType(), False, "message value bytes, untouched"),
        ("reason", StringType(), True, "why it was rejected"),
        ("quarantined_time", TimestamptzType(), True, "when the job rejected it (UTC)"),
    ),
    partition_by=("days(quarantined_time)",),
    key=("topic", "kafka_partition", "kafka_offset"),
    compaction=Compaction.CLOSED_DAYS,
    day_column="quarantined_time",
)

LATE_TRADES = TableDef(
    name="late_trades",
    doc="Trades that arrived after their bar was closed (beyond the allowed lateness).",
    schema=_schema(
        ("trade_id", StringType(), True, ""),
        ("symbol", StringType(), True, ""),
        ("event_time", TimestamptzType(), True, ""),
        ("window_start", TimestamptzType(), True, "the bar it belonged to"),
        ("watermark", TimestamptzType(), True, "the bars job's watermark when it arrived"),
        ("detected_time", TimestamptzType(), True, ""),
    ),
    partition_by=("symbol",),
    # A trade_id reused with another symbol or event time is another trade (docs/contracts.md).
    key=("trade_id", "symbol", "event_time"),
    # Its MERGE only inserts (WHEN NOT MATCHED), which Iceberg commits as an append: never in
    # conflict with a rewrite, so the whole table may be compacted.
    compaction=Compaction.WHOLE_TABLE,
)

FEED_EVENTS = TableDef(
    name="feed_events",
    doc="What producers reported about the feed itself: gaps while disconnected.",
    schema=_schema(
        ("source", StringType(), True, ""),
        ("kind", StringType(), True, "gap"),
        ("symbol", StringType(), False, "empty when the event concerns the whole feed"),
        ("start_time", TimestamptzType(), True, ""),
        ("end_time", TimestamptzType(), True, ""),
        ("reason", StringType(), False, ""),
        ("ingested_time", TimestamptzType(), True, ""),
    ),
    partition_by=("source",),
    key=("source", "kind", "start_time"),
    compaction=Compaction.NEVER,  # upserted by MERGE, like vendor_bars
)

ALL_TABLES: tuple[TableDef, ...] = (TRADES, BARS_1M, VENDOR_BARS, QUARANTINE, LATE_TRADES, FEED_EVENTS)


_SPARK_TYPES = {
    StringType: "string",
    DoubleType: "double",
    LongType: "bigint",
    IntegerType: "int",
    TimestamptzType: "timestamp",
    BinaryType: "binary",
    BooleanType: "boolean",
}


def _spark_type(type_: IcebergType) -> str:
    if isinstance(type_, ListType):
        return f"array<{_spark_type(type_.element_type)}>"
    return _SPARK_TYPES[type(type_)]


def table_properties(table: TableDef) -> dict[str, str]:
    """Every property ``table`` is created with: the common ones, then its own."""
    return {**COMMON_PROPERTIES, **table.properties}


def merges_manifests(table: TableDef) -> bool:
    """Whether ``table``'s appends merge its manifests (Iceberg's default); ``trades``'s do not."""
    return table_properties(table).get("commit.manifest-merge.enabled", "true") != "false"


def missing_properties(table: TableDef, current: Mapping[str, str]) -> dict[str, str]:
    """The properties of ``table`` that a table created before them lacks, and its enforced ones
    where the stored value differs. Any other property set to another value on purpose
    (``ALTER TABLE ... SET TBLPROPERTIES``) is kept."""
    return {key: value for key, value in table_properties(table).items()
            if key not in current or (key in table.enforced_properties and current[key] != value)}


def spark_column_type(table: TableDef, column: str) -> str:
    """The Spark SQL type of one of ``table``'s columns (for ``ALTER TABLE ... ADD COLUMN``)."""
    return _spark_type(table.schema.find_field(column).field_type)


def missing_optional_columns(table: TableDef, stored: Sequence[str]) -> list[str]:
    """The optional columns of ``table`` that a table created before them lacks, in schema order.
    Adding one is a metadata-only change: rows written before read it as null."""
    present = set(stored)
    return [f.name for f in table.schema.fields if not f.required and f.name not in present]


def partition_source(expression: str) -> tuple[str, bool]:
    """(source column, whether it is a day transform) of a Spark partition transform as
    ``partition_by`` writes them: ``symbol`` -> (symbol, False), ``days(event_time)`` -> (event_time, True)."""
    day = _DAYS.fullmatch(expression.replace(" ", ""))
    return (day.group(1), True) if day else (expression, False)


def partition_field_name(expression: str) -> str:
    """The name Iceberg gives the partition field of a Spark transform: ``symbol`` -> ``symbol``,
    ``days(event_time)`` -> ``event_time_day``."""
    column, is_day = partition_source(expression)
    return f"{column}_day" if is_day else column


def spec_evolution(table: TableDef, current: Sequence[str], specs: Sequence[Sequence[str]]) -> list[str]:
    """Spark ``ALTER TABLE`` clauses that give ``table`` both its specs: the append spec among the
    table's ``specs`` (field names) and ``partition_by`` as the ``current`` (default) one.

    A table created before the append spec existed (``symbol, event_time_day``) drops its extra fields
    and adds them back after the append spec's: Iceberg keeps the old spec for the files written with
    it, so nothing is rewritten. Empty when the table already has both.
    """
    if table.append_partition_by is None:
        return []
    wanted = [partition_field_name(e) for e in table.partition_by]
    append = [partition_field_name(e) for e in table.append_partition_by]
    if wanted[: len(append)] != append:
        raise ValueError(f"{table.name}: append_partition_by must be a prefix of partition_by")
    extra = [e for e in table.partition_by if e not in table.append_partition_by]
    has_append_spec = any(list(spec) == append for spec in specs)
    if has_append_spec and list(current) == wanted:
        return []
    drops = [] if has_append_spec else [f"DROP PARTITION FIELD {partition_field_name(e)}" for e in extra
                                         if partition_field_name(e) in current]
    return drops + [f"ADD PARTITION FIELD {e}" for e in extra]


def create_table_ddl(table: TableDef, qualified_name: str) -> str:
    """Spark SQL that creates ``table`` if it does not exist (idempotent). A table with an append spec
    is created with it; ``spec_evolution`` then adds the default spec's other fields."""
    columns = ",\n  ".join(
        f"`{f.name}` {_spark_type(f.field_type)}{' NOT NULL' if f.required else ''}"
        f" COMMENT '{f.doc.replace(chr(39), '')}'"
        for f in table.schema.fields
    )
    props = ", ".join(f"'{k}'='{v}'" for k, v in table_properties(table).items())
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified_name} (\n  {columns}\n) USING iceberg\n"
        f"PARTITIONED BY ({', '.join(table.append_partition_by or table.partition_by)})\n"
        f"COMMENT '{table.doc.replace(chr(39), '')}'\n"
        f"TBLPROPERTIES ({props})"
    )


def tables_named(names: Sequence[str]) -> list[TableDef]:
    """The tables of ``names`` (blanks ignored), in that order; ``ValueError`` naming any unknown one."""
    by_name = {table.name: table for table in ALL_TABLES}
    wanted = [name.strip() for name in names if name.strip()]
    unknown = sorted(set(wanted) - set(by_name))
    if unknown:
        raise ValueError(f"unknown tables {unknown}; known: {sorted(by_name)}")
    return [by_name[name] for name in wanted]


# Per table, the column whose newest value is the table's event time: age is now minus it, the
# same definition everywhere (the reader's ``table_ages``, ``lakehouse status``, the dashboard);
# for bars, the newest trade folded into a bar, never the start of an open window.
EVENT_TIME_COLUMN: dict[str, str] = {
    TRADES.name: "event_time",
    BARS_1M.name: "last_event_time",
    VENDOR_BARS.name: "bar_start",
    LATE_TRADES.name: "event_time",
    QUARANTINE.name: "quarantined_time",
    FEED_EVENTS.name: "start_time",
}
