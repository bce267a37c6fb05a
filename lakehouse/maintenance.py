"""Table maintenance: compaction, snapshot expiry and orphan clean-up, safe beside running streams.

Streaming appends leave many small files and snapshots. These Iceberg procedures fix that without
stopping the streams: compaction commits a ``replace`` snapshot (which Iceberg's streaming reader
skips), and only snapshots older than the retention are expired, so a downstream stream (bars read
the trades table) never loses a snapshot it has not read yet, unless the table holds more than
``max_snapshots``: every snapshot is a part of the table's metadata file, which each commit rewrites
and each reader parses, so a 1-second trigger's 21,600 snapshots in 6 hours (18 MiB) made a
pyiceberg table load take 0.7 s and a Spark append twice as long
(docs/performance.md#snapshot-history).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from lakehouse.watermarks import from_epoch_micros

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class MaintenancePolicy:
    snapshot_retention: timedelta = timedelta(hours=6)
    retain_last_snapshots: int = 20
    # An hour of commits at a 1 s trigger (5 at the default 5 s): a 3 MiB metadata file.
    max_snapshots: int = 3_600
    orphan_age: timedelta = timedelta(days=1)  # younger files may belong to a commit in flight
    target_file_size_bytes: int = 128 * 1024 * 1024
    min_input_files: int = 2


@dataclass(frozen=True)
class FileStats:
    data_files: int
    partitions: int
    max_files_per_partition: int
    bytes: int

    @property
    def files_per_partition(self) -> float:
        return self.data_files / self.partitions if self.partitions else 0.0


@dataclass(frozen=True)
class MaintenanceReport:
    table: str
    before: FileStats
    after: FileStats
    rewritten_files: int
    added_files: int
    expired_snapshots: int
    orphan_files_removed: int

    def describe(self) -> str:
        return (
            f"{self.table}: data files {self.before.data_files} -> {self.after.data_files} "
            f"({self.before.files_per_partition:.1f} -> {self.after.files_per_partition:.1f} per partition, "
            f"max {self.before.max_files_per_partition} -> {self.after.max_files_per_partition}); "
            f"rewrote {self.rewritten_files} into {self.added_files}; expired {self.expired_snapshots} snapshots; "
            f"removed {self.orphan_files_removed} orphan files"
        )


def file_stats(spark: SparkSession, table: str) -> FileStats:
    row = spark.sql(
        f"SELECT count(*) AS files, count(DISTINCT partition) AS partitions, "
        f"coalesce(sum(file_size_in_bytes), 0) AS bytes FROM {table}.data_files"
    ).first()
    busiest = spark.sql(
        f"SELECT coalesce(max(n), 0) AS n FROM (SELECT count(*) AS n FROM {table}.data_files GROUP BY partition)"
    ).first()
    return FileStats(int(row.files), int(row.partitions), int(busiest.n), int(row.bytes))


def _sql_timestamp(moment: datetime) -> str:
    # To the microsecond: a snapshot committed earlier in the same second is older, too.
    return f"TIMESTAMP '{moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def expire_older_than(now: datetime, retention: timedelta, oldest_allowed: datetime | None) -> datetime:
    """The ``older_than`` of ``expire_snapshots``: the retention's start, or ``oldest_allowed`` (the
    commit time of the oldest of the newest ``max_snapshots``, for a table holding more) if later."""
    cutoff = now - retention
    return cutoff if oldest_allowed is None else max(cutoff, oldest_allowed)


def _oldest_of_newest(spark: SparkSession, qualified: str, count: int) -> datetime | None:
    micros = spark.sql(
        f"SELECT unix_micros(min(committed_at)) AS t FROM "
        f"(SELECT committed_at FROM {qualified}.snapshots ORDER BY committed_at DESC LIMIT {count})"
    ).first().t
    return None if micros is None else from_epoch_micros(micros)


def maintain(spark: SparkSession, catalog: str, table: str, policy: MaintenancePolicy,
             now: datetime | None = None) -> MaintenanceReport:
    """Compact, expire and clean one table (``namespace.table`` inside ``catalog``)."""
    now = now or datetime.now(UTC)
    qualified = f"{catalog}.{table}"
    before = file_stats(spark, qualified)
    rewrite = spark.sql(
        f"CALL {catalog}.system.rewrite_data_files(table => '{table}', options => map("
        f"'min-input-files', '{policy.min_input_files}', "
        f"'target-file-size-bytes', '{policy.target_file_size_bytes}', "
        f"'partial-progress.enabled', 'true', 'max-concurrent-file-group-rewrites', '2'))"
    ).first()
    spark.sql(f"CALL {catalog}.system.rewrite_manifests(table => '{table}')").collect()
    snapshots_before = spark.table(f"{qualified}.snapshots").count()
    over_the_cap = snapshots_before > policy.max_snapshots
    oldest_allowed = _oldest_of_newest(spark, qualified, policy.max_snapshots) if over_the_cap else None
    older_than = expire_older_than(now, policy.snapshot_retention, oldest_allowed)
    spark.sql(
        f"CALL {catalog}.system.expire_snapshots(table => '{table}', "
        f"older_than => {_sql_timestamp(older_than)}, "
        f"retain_last => {policy.retain_last_snapshots})"
    ).collect()
    orphans = spark.sql(
        f"CALL {catalog}.system.remove_orphan_files(table => '{table}', "
        f"older_than => {_sql_timestamp(now - policy.orphan_age)})"
    ).collect()
    return MaintenanceReport(
        table=qualified,
        before=before,
        after=file_stats(spark, qualified),
        rewritten_files=int(rewrite.rewritten_data_files_count),
        added_files=int(rewrite.added_data_files_count),
        expired_snapshots=snapshots_before - spark.table(f"{qualified}.snapshots").count(),
        orphan_files_removed=len(orphans),
    )
