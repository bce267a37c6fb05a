"""Maintenance compacts what streaming appends leave behind, without changing a single row."""

from __future__ import annotations

from datetime import timedelta

from lakehouse.maintenance import MaintenancePolicy, file_stats, maintain
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
