"""Rebuilding closed days' bars: recompute ``bars_1m`` for whole UTC days from the ``trades`` table.

The streaming bars job closes a window once the allowed lateness has passed and records the trades
that arrive after that in ``late_trades`` instead of changing a closed bar. This batch job is the
correction (and the backfill for days streamed before the bars job ran): it recomputes every bar of
the given days from all the stored eligible trades, late ones included, and replaces those days'
bars in one Iceberg commit. ``bars_1m`` is partitioned by (day, symbol), so the replacement drops
whole files: readers see the old day or the new one, never a mix, and a re-run is harmless. The
bars the bars stream wrote by day (closed bars no fold has moved yet, and the open bars it still
holds of a day the clock has closed: a session's last minutes, until its next trade) sit in
day-only files of many symbols; a fold of those days moves them first (``lakehouse.fold``), so a
rebuild of some symbols drops whole files too. The stream then finds its open-bars file gone and
writes those bars again by key, from the same trades (none of them can be late).

Only days that are over (their last window closed by the allowed lateness) are accepted: the
streaming job owns the current day.
``jobs/rebuild_bars.py`` runs it from the command line.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from lakehouse import bars
from lakehouse.catalog import spark_table_name
from lakehouse.iceberg_writes import CATALOG_BUSY_MARKERS, with_commit_retry
from lakehouse.settings import Settings
from lakehouse.tables import BARS_1M, TRADES

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

REBUILD_PROPERTY = "lakehouse.rebuild"


@dataclass(frozen=True)
class RebuildReport:
    days: tuple[date, ...]
    bars_written: int
    bars_replaced: int


def day_span(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def open_days(days: Sequence[date], now: datetime, allowed_lateness_seconds: float) -> list[date]:
    """The days whose last window can still change in the streaming job (not rebuildable yet)."""
    return [d for d in days if day_span(d)[1] + timedelta(seconds=allowed_lateness_seconds) > now]


def _in_days(column: str, days: Sequence[date], symbols: Sequence[str]) -> Column:
    """``column`` inside one of ``days`` (and ``symbol`` one of ``symbols``, if any): ranges Iceberg
    can prune files with, and aligned to the tables' day partitions."""
    from pyspark.sql import functions as F

    condition = None
    for day in sorted(set(days)):
        start, end = day_span(day)
        in_day = (F.col(column) >= F.lit(start)) & (F.col(column) < F.lit(end))
        condition = in_day if condition is None else condition | in_day
    if condition is None:
        raise ValueError("no day to rebuild")
    return condition & F.col("symbol").isin(list(symbols)) if symbols else condition


def bars_of_days(
    spark: SparkSession, settings: Settings, days: Sequence[date], symbols: Sequence[str] = ()
) -> DataFrame:
    """The 1-minute bars of ``days`` (UTC) computed from every stored eligible trade."""
    trades = spark.table(spark_table_name(settings, TRADES)).where(_in_days("event_time", days, symbols))
    return bars.bars_from_trades(bars.eligible_trades(trades))


def _fold_days(spark: SparkSession, table: str, days: Sequence[date]) -> None:
    """Fold the day-only files of ``days`` into day-symbol files; a fold that lost a race with
    compaction or the stream (it commits nothing then) is tried again."""
    from lakehouse.fold import fold_appended_files

    with_commit_retry(lambda: fold_appended_files(spark, table, BARS_1M, days=sorted(set(days))), table,
                      retried=(*CATALOG_BUSY_MARKERS, "ValidationException"))


def rebuild_days(
    spark: SparkSession, settings: Settings, days: Sequence[date], symbols: Sequence[str] = ()
) -> RebuildReport:
    """Replace the ``bars_1m`` rows of ``days`` (and ``symbols``, if given) with recomputed bars, in
    one commit; a bar whose trades are all gone (none eligible any more) is removed with its day."""
    table = spark_table_name(settings, BARS_1M)
    _fold_days(spark, table, days)
    rebuild = uuid.uuid4().hex  # names this commit among the streaming job's
    writer = bars_of_days(spark, settings, days, symbols).writeTo(table)
    writer = writer.option(f"snapshot-property.{REBUILD_PROPERTY}", rebuild)
    # Replacing whole days is idempotent, so a commit the catalog refused while busy is simply retried.
    with_commit_retry(lambda: writer.overwrite(_in_days("window_start", days, symbols)), table)
    commit = spark.sql(
        f"SELECT summary FROM {table}.snapshots WHERE summary['{REBUILD_PROPERTY}'] = '{rebuild}'"
    ).first()
    counts = commit["summary"] if commit else {}
    return RebuildReport(
        days=tuple(sorted(set(days))),
        bars_written=int(counts.get("added-records", 0)),
        bars_replaced=int(counts.get("deleted-records", 0)),
    )
