"""A table's snapshot history: what a long trading day of commits costs each commit and each reader.

Every snapshot is an entry of the table's metadata file, which each commit rewrites and each table
load parses. At a 1 s trigger the raw-trades job commits 21,600 snapshots in 6 hours, the
retention ``maintenance`` keeps by age. One run, one JVM: the same 5,000-row, 50-partition append
and the same table loads (Spark, pyiceberg) against the trades table with its few snapshots and
against a copy of it registered with ``--history`` snapshots of history in front (copies of its
newest snapshot's entry, all pointing at the same real manifest list, so only the metadata
grows). The ratio is the long history's median against the short one's.

    .venv/bin/python -m bench.profile_snapshot_history [--history 21600] [--repeats 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import describe_machine, lakehouse_settings, load, median, write_history_metadata
from lakehouse.catalog import load_catalog, spark_table_name
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.tables import TRADES
from lakehouse.trades import CLUSTERED_WRITE_OPTIONS


def timed(action: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``action`` over ``repeats`` runs after one untimed run."""
    action()
    took = []
    for _ in range(repeats):
        started = time.monotonic()
        action()
        took.append(time.monotonic() - started)
    return median(took)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=21_600, help="snapshots of history: 6 h of 1 s commits")
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args(argv)
    from pyspark.sql import functions as F

    with tempfile.TemporaryDirectory(prefix="bench-history-") as state:
        settings = lakehouse_settings(state)
        spark = build_spark_session(settings, "bench-snapshot-history")
        ensure_tables(spark, settings, (TRADES,))
        print(describe_machine())
        catalog = load_catalog(settings)
        namespace = settings.catalog.namespace
        short = spark_table_name(settings, TRADES)
        batch = spark.range(5_000).select(
            F.expr("uuid()").alias("trade_id"), F.lit("finnhub").alias("source"),
            F.concat(F.lit("S"), (F.col("id") % 50).cast("string")).alias("symbol"),
            F.lit(1.0).alias("price"), F.lit(1.0).alias("volume"), F.current_timestamp().alias("event_time"),
            F.array().cast("array<string>").alias("conditions"), F.lit("X").alias("venue"),
            F.current_timestamp().alias("received_time"), F.current_timestamp().alias("ingested_time"),
            F.lit(0).alias("kafka_partition"), F.col("id").alias("kafka_offset"), F.lit(True).alias("bar_eligible"),
        ).select(*TRADES.column_names).repartition(2, "symbol").cache()
        batch.count()

        def append(table: str) -> Callable[[], None]:
            def run() -> None:
                writer = batch.writeTo(table)
                for key, value in CLUSTERED_WRITE_OPTIONS.items():
                    writer = writer.option(key, value)
                writer.append()
            return run

        def measure(table: str, identifier: str) -> dict[str, float]:
            return {
                "append": timed(append(table), args.repeats),
                "Spark table load": timed(lambda: spark.table(table).schema, args.repeats),
                "pyiceberg table load": timed(lambda: catalog.load_table(identifier).current_snapshot(), args.repeats),
            }

        for _ in range(3):  # a few snapshots to start from, and a warm JVM
            append(short)()
        few = measure(short, f"{namespace}.{TRADES.name}")
        long_location = write_history_metadata(settings, TRADES, args.history)
        spark.sql(f"CALL {settings.catalog.name}.system.register_table("
                  f"table => '{namespace}.trades_history', metadata_file => '{long_location}')")
        many = measure(f"{settings.catalog.name}.{namespace}.trades_history", f"{namespace}.trades_history")
        size_mib = Path(long_location).stat().st_size / 2**20
        snapshots_few = len(catalog.load_table(f"{namespace}.{TRADES.name}").metadata.snapshots)
        print(f"trades table with {snapshots_few} snapshots, and with {args.history:,} more of history "
              f"(metadata file {size_mib:.1f} MiB); median of {args.repeats}:")
        for what in few:
            print(f"  {what}: {few[what]:.3f} s -> {many[what]:.3f} s ({many[what] / few[what]:.1f}x)")
        print(f"ratio: append with {args.history:,} snapshots / with {snapshots_few} = "
              f"{many['append'] / few['append']:.2f}; pyiceberg load {many['pyiceberg table load']:.2f} s ({load()})")
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
