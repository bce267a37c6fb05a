"""Raw-trades job throughput: Kafka -> parse -> dedupe -> Iceberg on local[2], vs the engine ceiling.

One run, one Spark session, one fresh KRaft broker:

1. pre-load the trades topic with ``--messages`` Trade messages over ``--symbols`` symbols (written
   by Spark's own Kafka sink);
2. the engine ceiling: the rate source -> the same JSON -> ``from_json`` -> Parquet partitioned by
   symbol, in ``--ceiling-batch``-row micro-batches (no Kafka, no dedupe, no Iceberg);
3. the raw-trades job itself (``lakehouse.raw_trades_stream.start``, unchanged) from the earliest offset with
   ``maxOffsetsPerTrigger`` = each of ``--batch-sizes`` until it has caught up, on a fresh table and
   checkpoint each time; sustained trades/s = rows / summed batch time, first batch excluded; each
   size runs once per ``--parsers``: by default the job as shipped (the model judging what leaves
   the fast path) and the job with the Spark-only ``from_json`` parser it replaced
   (``bench/from_json_parser.py``); ``two caches`` is the model judge before its fast-path count
   (``bench/two_cache_parser.py``). Prints the ratio of the shipped job to each;
4. offered rates: with a ``--offered-trigger`` s trigger and ``maxOffsetsPerTrigger`` = rate x
   trigger, a batch arrives every trigger exactly as a feed at that rate would deliver it; the job
   keeps up while a batch takes no longer than the trigger, otherwise the Kafka lag grows.

    .venv/bin/python -m bench.bench_raw_trades [--messages 3000000] [--batch-sizes 250000,500000,1000000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    describe_machine,
    lakehouse_settings,
    load,
    local_broker,
    median,
    publish_with_spark,
    require_fast_path,
    trade_messages,
)
from lakehouse.catalog import spark_table_name
from lakehouse.local.kafka_broker import ensure_topics
from lakehouse.settings import Settings
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.tables import QUARANTINE, TRADES

START_MS = 1_772_000_000_000  # 2026-02-25 06:13 UTC; only the spread of event times matters
TARGET_TRADES_PER_S = 100_000
# The issue states its target against this ceiling ("about 290,000 rows/s" on its machine): as a
# fraction of the ceiling, the target is 0.34. This machine's ceiling is measured in the same run.
STATED_CEILING_ROWS_PER_S = 290_000


def batch_figures(progress: list[dict], skip_first: int = 1) -> tuple[int, float, list[float]]:
    """(rows, seconds, per-batch rows/s) over the batches with data, the first ``skip_first`` left out."""
    batches = [p for p in progress if p["numInputRows"]]
    batches = batches[skip_first:] if len(batches) > skip_first else batches
    rows = sum(p["numInputRows"] for p in batches)
    seconds = sum(p["durationMs"]["triggerExecution"] for p in batches) / 1000
    rates = [p["numInputRows"] / (p["durationMs"]["triggerExecution"] / 1000) for p in batches]
    return rows, seconds, rates


def ceiling(spark, state: str, batch_rows: int, batches: int, symbols: int) -> float:
    """rows/s of rate source -> JSON -> from_json -> Parquet partitioned by symbol (first batch left out)."""
    from pyspark.sql import functions as F

    from lakehouse.messages import Trade
    from lakehouse.parsing import spark_json_schema

    out = f"{state}/ceiling"
    source = (spark.readStream.format("rate-micro-batch").option("rowsPerBatch", batch_rows)
              .option("numPartitions", 2).load())
    symbol = F.concat(F.lit("SYM"), F.lpad((F.col("value") % symbols).cast("string"), 2, "0"))
    json = F.to_json(F.struct(
        F.lit(1).alias("schema_version"), F.lit("finnhub").alias("source"), symbol.alias("symbol"),
        (F.lit(100.0) + (F.col("value") % 400) / 4).alias("price"),
        ((F.col("value") * 7) % 300 + 1).cast("double").alias("volume"),
        (F.lit(START_MS) + F.col("value")).alias("event_time_ms"), F.array(F.lit("1")).alias("conditions"),
        F.lit(None).cast("string").alias("venue"), (F.lit(START_MS) + F.col("value")).alias("received_time_ms"),
        F.md5(F.col("value").cast("string")).alias("trade_id"),
    ))
    parsed = source.select(F.from_json(json, spark_json_schema(Trade)).alias("m")).select("m.*")
    query = (parsed.writeStream.format("parquet").partitionBy("symbol").option("path", out)
             .option("checkpointLocation", f"{state}/ceiling-checkpoint").trigger(processingTime="0 seconds").start())
    while len([p for p in query.recentProgress if p["numInputRows"]]) < batches:
        time.sleep(0.5)
    query.stop()
    rows, seconds, _ = batch_figures(query.recentProgress)
    shutil.rmtree(out, ignore_errors=True)
    return rows / seconds


def fresh_tables(spark, settings: Settings) -> None:
    for table in (TRADES, QUARANTINE):
        spark.sql(f"DROP TABLE IF EXISTS {spark_table_name(settings, table)} PURGE")
    ensure_tables(spark, settings, (TRADES, QUARANTINE))


def run_raw_job(spark, settings: Settings, run: str, stop_after_batches: int | None = None,
                parse=None, dedupe_every_batch: bool = False) -> list[dict]:
    """Start the raw-trades job on a fresh table and checkpoint; return its progress reports."""
    from lakehouse import raw_trades_stream
    from lakehouse.messages import Trade
    from lakehouse.parsing import MessageParser

    settings = settings.with_streaming(checkpoint_dir=f"{settings.streaming.checkpoint_dir}/{run}")
    fresh_tables(spark, settings)
    parse = parse or MessageParser(Trade)
    query = raw_trades_stream.start(spark, settings, parse, dedupe_every_batch)
    try:
        if stop_after_batches is None:
            query.processAllAvailable()
        else:
            while len([p for p in query.recentProgress if p["numInputRows"]]) < stop_after_batches:
                if not query.isActive:
                    raise RuntimeError(f"raw job failed: {query.exception()}")
                time.sleep(0.5)
    finally:
        progress = list(query.recentProgress)
        query.stop()
    require_fast_path(parse)
    return progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3_000_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=4, help="Kafka partitions of the trades topic")
    parser.add_argument("--batch-sizes", default="250000,500000,1000000")
    parser.add_argument("--ceiling-batch", type=int, default=750_000)
    parser.add_argument("--ceiling-batches", type=int, default=5)
    parser.add_argument("--offered-rates", default="10000,20000,40000,80000")
    parser.add_argument("--offered-trigger", type=float, default=5.0)
    parser.add_argument("--offered-batches", type=int, default=4)
    parser.add_argument("--parsers", default="model judge,from_json (old)",
                        help="variants compared per batch size: model judge (the job as shipped), from_json (old), "
                             "two caches (the model judge before its fast-path count), dedupe every batch (the "
                             "dedupe's shuffle even in a batch without copies of a trade)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s]
    rates = [int(s) for s in args.offered_rates.split(",") if s]

    with (
        tempfile.TemporaryDirectory(prefix="bench-raw-", ignore_cleanup_errors=True) as state,
        local_broker() as broker,
    ):
        settings = lakehouse_settings(state, broker.bootstrap_servers)
        topic = settings.kafka.trades_topic
        ensure_topics(broker.bootstrap_servers, [topic], args.partitions)
        spark = build_spark_session(settings, "bench-raw-trades")
        print(describe_machine())
        started = time.perf_counter()
        # One hour of trades: event times ~1.2 ms apart for 3M trades.
        publish_with_spark(spark, trade_messages(spark, args.messages, args.symbols, START_MS, 3_600_000),
                           broker.bootstrap_servers, topic)
        print(f"data: {args.messages:,} Trade messages (~300 bytes JSON), {args.symbols} symbols, "
              f"{args.partitions} Kafka partitions; pre-loaded in {time.perf_counter() - started:.1f} s")

        top = ceiling(spark, state, args.ceiling_batch, args.ceiling_batches, args.symbols)
        print(f"ceiling: rate -> JSON -> from_json -> Parquet by symbol, {args.ceiling_batch:,}-row batches: "
              f"{top:,.0f} rows/s ({load()})")

        from bench.from_json_parser import FromJsonParser
        from bench.two_cache_parser import TwoCacheParser
        from lakehouse.messages import Trade

        best = 0.0
        # name: (parser, dedupe by shuffle in every batch)
        known = {"model judge": (None, False), "from_json (old)": (FromJsonParser(Trade), False),
                 "two caches": (TwoCacheParser(Trade), False), "dedupe every batch": (None, True)}
        parsers = {name: known[name] for name in args.parsers.split(",") if name}
        for run, size in enumerate(sizes):  # a size may repeat: each run has a checkpoint of its own
            rates_by_parser = {}
            for name, (parse, dedupe_every_batch) in parsers.items():
                progress = run_raw_job(
                    spark, settings.with_streaming(trigger_seconds=0.0, max_offsets_per_trigger=size),
                    f"run-{run}-size-{size}-{name.split()[0]}-{name.split()[-1]}", parse=parse,
                    dedupe_every_batch=dedupe_every_batch,
                )
                rows, seconds, per_batch = batch_figures(progress)
                stored = spark.table(spark_table_name(settings, TRADES)).count()
                assert stored == args.messages, f"stored {stored} of {args.messages} trades"
                rate = rates_by_parser[name] = rows / seconds
                if name == "model judge":
                    best = max(best, rate)
                print(f"raw job ({name}), maxOffsetsPerTrigger {size:>9,}: {rate:9,.0f} trades/s sustained "
                      f"(median batch {median(per_batch):,.0f}/s over {len(per_batch)} batches), "
                      f"{rate / top:.0%} of ceiling ({load()})")
            for other in [name for name in rates_by_parser if name != "model judge"]:
                print(f"{size:,}-row batches, model judge / {other}: "
                      f"{rates_by_parser['model judge'] / rates_by_parser[other]:.2f}")

        for rate in rates:
            batch = int(rate * args.offered_trigger)
            progress = run_raw_job(
                spark,
                settings.with_streaming(trigger_seconds=args.offered_trigger, max_offsets_per_trigger=batch),
                f"rate-{rate}", stop_after_batches=args.offered_batches,
            )
            batches = [p for p in progress if p["numInputRows"]][1:]
            took = median([p["durationMs"]["triggerExecution"] / 1000 for p in batches])
            keeps_up = took <= args.offered_trigger
            achieved = rate if keeps_up else batch / took
            print(f"offered {rate:>9,} trades/s (trigger {args.offered_trigger:g} s, {batch:,}-row batches): "
                  f"median batch {took:.2f} s -> {'keeps up' if keeps_up else 'falls behind'}, "
                  f"{achieved:,.0f} trades/s ({load()})")
        target_fraction = TARGET_TRADES_PER_S / STATED_CEILING_ROWS_PER_S
        print(f"ratio: best raw job / ceiling = {best / top:.2f} ({best:,.0f} / {top:,.0f} rows/s; "
              f"target >= {TARGET_TRADES_PER_S:,} trades/s: {'met' if best >= TARGET_TRADES_PER_S else 'NOT met'}; "
              f"as a fraction of the ceiling, {TARGET_TRADES_PER_S:,} / {STATED_CEILING_ROWS_PER_S:,} = "
              f"{target_fraction:.2f}: {'met' if best / top >= target_fraction else 'NOT met'})")
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
