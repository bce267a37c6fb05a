"""Idempotent upserts from micro-batches: MERGE on a table's key, newest copy of a key wins.

MERGE with update-on-match is idempotent by itself, so a micro-batch replayed after a crash leaves
the table as it was; no batch marker is needed for these small, keyed tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakehouse.iceberg_writes import with_commit_retry
from lakehouse.tables import TableDef

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def latest_per_key(rows: DataFrame, key: tuple[str, ...], order_by: str) -> DataFrame:
    """One row per key (MERGE rejects two source rows for one target row): the greatest ``order_by``."""
    from pyspark.sql import functions as F

    columns = [c for c in rows.columns]
    latest = F.max_by(F.struct(*columns), F.col(order_by))
    return rows.groupBy(*key).agg(latest.alias("r")).select("r.*")


def merge_sql(table: TableDef, target: str, source_view: str) -> str:
    on = " AND ".join(f"t.`{c}` = s.`{c}`" for c in table.key)
    return (
        f"MERGE INTO {target} t USING {source_view} s ON {on} "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )


def upsert(rows: DataFrame, table: TableDef, target: str, order_by: str) -> None:
    """MERGE ``rows`` (already in the table's shape) into ``target`` on ``table.key``."""
    view = f"upsert_{table.name}"
    latest_per_key(rows, table.key, order_by).createOrReplaceTempView(view)
    with_commit_retry(lambda: rows.sparkSession.sql(merge_sql(table, target, view)), target)
