"""Maintenance compacts what streaming appends leave behind, without changing a single row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lakehouse.maintenance import MaintenancePolicy, expire_older_than, file_stats, maintain
from lakehouse.settings import Settings


def test_compaction_merges_small_files_and_keeps_every_row(spark, settings: Settings) -> None:
    table = f"{settings.catalog.namespace}.maintenance_demo"
    qualified = f"{settings.catalog.name}.{table}"
    spark.sql(f"DROP TABLE IF EXISTS {qualified}")
    spark.sql(f"CREATE TABLE {qualified} (symbol string, n bigint) USING iceberg PARTITIONED BY (symbol)")
    for batch in range(8):  # eight micro-batch-like appends: eight small files per partition
        spark.sql(f"INSERT INTO {qualified} VALUES ('AAA', {batch}), ('BBB', {batch + 100})")
    rows_before = sorted(spark.table(qualified).collect())

    report = maintain(spark, settings.catalog.name, table,
                      MaintenancePolicy(snapshot_retention=timedelta(0), retain_last_snapshots=1))

    assert report.before.data_files == 16 and report.before.max_files_per_partition == 8
    assert report.after.data_files == 2 and report.after.max_files_per_partition == 1
    assert report.rewritten_files == 16 and report.added_files == 2
    assert report.expired_snapshots >= 8
    assert sorted(spark.table(qualified).collect()) == rows_before
    assert file_stats(spark, qualified).data_files == 2


def test_a_table_with_more_snapshots_than_allowed_keeps_only_the_newest(spark, settings: Settings) -> None:
    table = f"{settings.catalog.namespace}.maintenance_many_snapshots"
    qualified = f"{settings.catalog.name}.{table}"
    spark.sql(f"DROP TABLE IF EXISTS {qualified}")
    spark.sql(f"CREATE TABLE {qualified} (symbol string, n bigint) USING iceberg PARTITIONED BY (symbol)")
    for batch in range(8):  # all of them younger than the retention
        spark.sql(f"INSERT INTO {qualified} VALUES ('AAA', {batch})")
    rows_before = sorted(spark.table(qualified).collect())

    report = maintain(spark, settings.catalog.name, table, MaintenancePolicy(
        snapshot_retention=timedelta(hours=6), retain_last_snapshots=1, max_snapshots=3))

    # 8 appends, then compaction and the manifest rewrite commit one each: the newest 3 stay.
    kept = spark.sql(f"SELECT operation FROM {qualified}.snapshots ORDER BY committed_at").collect()
    assert [row.operation for row in kept] == ["append", "replace", "replace"]
    assert report.expired_snapshots == 7
    assert sorted(spark.table(qualified).collect()) == rows_before


def test_the_snapshot_cap_only_ever_expires_more_than_the_retention_would() -> None:
    now = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    retention = timedelta(hours=6)
    # Over the cap, its newest snapshots reach back one hour: everything before them goes.
    assert expire_older_than(now, retention, now - timedelta(hours=1)) == now - timedelta(hours=1)
    # Under the cap: the retention alone decides.
    assert expire_older_than(now, retention, None) == now - retention
    # Over the cap, but its newest snapshots span more than the retention: still the retention.
    assert expire_older_than(now, retention, now - timedelta(hours=8)) == now - retention
