"""A data file's fixed cost in the trades append, by Parquet codec: the same rows into 50 and into
2,000 symbol partitions, each codec in turn, alternating, in one session.

The raw-trades job writes one data file per symbol-day a micro-batch touches, so at thousands of
symbols the batch pays a per-file cost many times. This measures that cost for the codecs a Spark
append can ask for (the ``compression-codec`` write option): seconds per append at 50 and at
``--symbols`` partitions, and the per-file cost as (many - few) / (files difference). A codec may
name a level (``zstd:1``: the ``compression-level`` write option). The rows are
already clustered by symbol and sorted (what the job's dedupe hands the append), and written with
the job's own ``CLUSTERED_WRITE_OPTIONS`` but for the codec.

    .venv/bin/python -m bench.bench_file_cost [--rows 20000] [--symbols 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import describe_machine, lakehouse_settings, load, median
from lakehouse.catalog import spark_table_name
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.tables import TRADES
from lakehouse.trades import CLUSTERED_WRITE_OPTIONS

START_MS = 1_772_000_000_000
FEW_SYMBOLS = 50


def trades(spark, table: str, rows: int, symbols: int):
    """``rows`` trades over ``symbols`` symbols in the table's schema, clustered and sorted, cached."""
    from pyspark.sql import functions as F

    time_of = F.timestamp_millis(F.lit(START_MS) + F.col("id"))
    columns = {
        "trade_id": F.md5(F.col("id").cast("string")), "source": F.lit("finnhub"),
        "symbol": F.concat(F.lit("Z"), F.lpad((F.col("id") % symbols).cast("string"), 5, "0")),
        "price": F.lit(100.0) + F.col("id") % 400 / 4, "volume": F.lit(3.0), "event_time": time_of,
        "conditions": F.array(F.lit("1")), "venue": F.lit(None).cast("string"), "received_time": time_of,
        "ingested_time": F.current_timestamp(), "kafka_partition": F.lit(0), "kafka_offset": F.col("id"),
        "bar_eligible": F.lit(True),
    }
    schema = spark.table(table).schema
    frame = spark.range(rows, numPartitions=2).select(
        *[columns[f.name].cast(f.dataType).alias(f.name) for f in schema])
    return frame.repartition(2, "symbol").sortWithinPartitions("symbol", "event_time").cache()


def codec_options(codec: str) -> dict[str, str]:
    """The write options of ``codec`` as the command line names it (``zstd`` or ``zstd:1``)."""
    name, _, level = codec.partition(":")
    return {"compression-codec": name, **({"compression-level": level} if level else {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--symbols", type=int, default=2_000)
    parser.add_argument("--codecs", default="zstd,snappy,uncompressed")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    codecs = [c for c in args.codecs.split(",") if c]

    with tempfile.TemporaryDirectory(prefix="bench-file-cost-", ignore_cleanup_errors=True) as state:
        settings = lakehouse_settings(state)
        spark = build_spark_session(settings, "bench-file-cost")
        print(describe_machine())
        ensure_tables(spark, settings, (TRADES,))
        table = spark_table_name(settings, TRADES)
        print(f"data: {args.rows:,} trades per append into {FEW_SYMBOLS} and {args.symbols:,} symbol partitions "
              f"(one closed day), {args.rounds} rounds, codecs alternating within each round")
        took: dict[tuple[int, str], list[float]] = {}
        sizes: dict[tuple[int, str], int] = {}
        for symbols in (FEW_SYMBOLS, args.symbols):
            frame = trades(spark, table, args.rows, symbols)
            frame.count()
            for _ in range(args.rounds):
                for codec in codecs:
                    writer = frame.writeTo(table)
                    for key, value in {**CLUSTERED_WRITE_OPTIONS, **codec_options(codec)}.items():
                        writer = writer.option(key, value)
                    started = time.perf_counter()
                    writer.append()
                    took.setdefault((symbols, codec), []).append(time.perf_counter() - started)
                    sizes[(symbols, codec)] = int(spark.sql(
                        f"SELECT summary['added-files-size'] FROM {table}.snapshots "
                        "ORDER BY committed_at DESC LIMIT 1").first()[0])
            frame.unpersist()
            for codec in codecs:
                runs = ", ".join(f"{s:.2f}" for s in took[(symbols, codec)])
                print(f"append into {symbols:,} partitions, {codec}: median {median(took[(symbols, codec)]):.2f} s "
                      f"({runs}), {sizes[(symbols, codec)] / 2**20:.2f} MiB written ({load()})")
        per_file = {}
        for codec in codecs:
            extra = median(took[(args.symbols, codec)]) - median(took[(FEW_SYMBOLS, codec)])
            per_file[codec] = extra / (args.symbols - FEW_SYMBOLS)
            print(f"per data file, {codec}: {per_file[codec] * 1000:.1f} ms")
        spark.stop()
    base = codecs[0]
    print("ratio: per-file cost / " + base + " = " + ", ".join(
        f"{codec} {per_file[codec] / per_file[base]:.2f}" for codec in codecs) + f" ({load()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
