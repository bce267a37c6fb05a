"""Bars job figures: throughput on one large appended batch, and window-end -> bar-readable delay.

    .venv/bin/python bench/bars_bench.py throughput --trades 500000 --symbols 50
    .venv/bin/python bench/bars_bench.py latency --minutes 3

Runs in a throw-away catalog under /tmp; the raw-trades job is simulated by Spark appends.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime

from lakehouse.bars_stream import start_bars_query
from lakehouse.catalog import spark_table_name
from lakehouse.settings import load_settings
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.tables import BARS_1M, LATE_TRADES, TRADES


def settings_for(state: str, trigger: float, lateness: float):
    return load_settings(
        environ={
            "LAKEHOUSE__LOCAL__STATE_DIR": state,
            "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state}/catalog.db",
            "LAKEHOUSE__CATALOG__WAREHOUSE": f"{state}/warehouse",
            "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": f"{state}/checkpoints",
            "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": str(trigger),
            "LAKEHOUSE__STREAMING__ALLOWED_LATENESS_SECONDS": str(lateness),
        }
    )


def synthetic_trades(spark, rows: int, symbols: int, start_us: int, span_seconds: int, seed: int):
    """``rows`` trades spread over ``span_seconds`` from ``start_us``, built inside Spark."""
    from pyspark.sql import functions as F

    odd_lot = F.rand(seed + 3) < 0.2
    return spark.range(rows).select(
        F.concat(F.lit(f"bench-{seed}-"), F.col("id").cast("string")).alias("trade_id"),
        F.lit("finnhub").alias("source"),
        F.concat(F.lit("SYM"), (F.col("id") % symbols).cast("string")).alias("symbol"),
        (F.lit(100.0) + F.floor(F.rand(seed) * 400) / 4).alias("price"),
        F.floor(F.rand(seed + 1) * 300).alias("volume").cast("double"),
        F.timestamp_micros(F.lit(start_us) + (F.rand(seed + 2) * span_seconds * 1e6).cast("long")).alias(
            "event_time"
        ),
        F.when(odd_lot, F.array(F.lit("1"), F.lit("12"))).otherwise(F.array(F.lit("1"))).alias("conditions"),
        F.lit(None).cast("string").alias("venue"),
        F.current_timestamp().alias("received_time"),
        F.current_timestamp().alias("ingested_time"),
        (F.col("id") % symbols % 4).cast("int").alias("kafka_partition"),  # keyed by symbol
        F.col("id").alias("kafka_offset"),
        (~odd_lot).alias("bar_eligible"),
    )


def throughput(args: argparse.Namespace) -> None:
    state = tempfile.mkdtemp(prefix="bars-bench-")
    settings = settings_for(state, 0, 60)
    spark = build_spark_session(settings, "bars-bench")
    ensure_tables(spark, settings, (TRADES, BARS_1M, LATE_TRADES))
    start_us = int(datetime(2024, 3, 4, 14, 30, tzinfo=UTC).timestamp() * 1e6)
    trades = spark_table_name(settings, TRADES)
    synthetic_trades(spark, args.trades, args.symbols, start_us, args.span_minutes * 60, 1).writeTo(trades).append()
    query = start_bars_query(spark, settings)
    started = time.monotonic()
    query.processAllAvailable()
    first = time.monotonic() - started
    progress = [p for p in query.recentProgress if p["numInputRows"]]
    batch_ms = progress[-1]["durationMs"]["addBatch"]
    # A second, incremental batch: 10% more trades over the last minutes (the steady-state case).
    synthetic_trades(spark, args.trades // 10, args.symbols, start_us + (args.span_minutes - 2) * 60_000_000,
                     120, 2).writeTo(trades).append()
    started = time.monotonic()
    query.processAllAvailable()
    second = time.monotonic() - started
    query.stop()
    bars = spark.table(spark_table_name(settings, BARS_1M)).count()
    print(f"initial batch: {args.trades} trades, {args.symbols} symbols -> {bars} bars; "
          f"foreachBatch {batch_ms / 1000:.1f} s ({args.trades / (batch_ms / 1000):,.0f} trades/s), "
          f"wall incl. query start {first:.1f} s")
    print(f"incremental batch: {args.trades // 10} trades in {second:.1f} s wall "
          f"({args.trades // 10 / second:,.0f} trades/s)")
    spark.stop()


def latency(args: argparse.Namespace) -> None:
    """Demo configuration: trades stamped 'now' appended every 5 s (the raw job's trigger); the bars
    job on a 5 s trigger; measure when each closed window's final bar is readable."""
    from pyspark.sql import functions as F

    state = tempfile.mkdtemp(prefix="bars-latency-")
    settings = settings_for(state, 5, 60)
    spark = build_spark_session(settings, "bars-latency")
    ensure_tables(spark, settings, (TRADES, BARS_1M, LATE_TRADES))
    trades, bars_table = spark_table_name(settings, TRADES), spark_table_name(settings, BARS_1M)
    query = start_bars_query(spark, settings)
    expected: dict[int, int] = {}  # window start (us) -> trades appended in it
    seen: dict[int, float] = {}
    deadline = time.time() + args.minutes * 60
    seed = 10
    while time.time() < deadline:
        now_us = int(time.time() * 1e6)
        n = 200
        synthetic_trades(spark, n, 5, now_us - 2_000_000, 2, seed).withColumn(
            "conditions", F.array(F.lit("1"))
        ).writeTo(trades).append()
        rows = spark.sql(
            f"SELECT unix_micros(window_start) AS ws, trade_count FROM {bars_table} WHERE symbol = 'SYM0'"
        ).collect()
        expected_now = {
            r["ws"]: r["trade_count"] for r in spark.sql(
                f"SELECT unix_micros(window(event_time, '1 minute').start) AS ws, count(*) AS trade_count "
                f"FROM {trades} WHERE symbol = 'SYM0' GROUP BY 1"
            ).collect()
        }
        expected.update(expected_now)
        for r in rows:
            end = (r["ws"] + 60_000_000) / 1e6
            if r["ws"] not in seen and time.time() > end and r["trade_count"] == expected.get(r["ws"]):
                seen[r["ws"]] = time.time() - end
        seed += 1
        time.sleep(5)
    query.stop()
    for ws, delay in sorted(seen.items()):
        print(f"window {datetime.fromtimestamp(ws / 1e6, UTC):%H:%M} final bar readable {delay:.1f} s after its end")
    spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--trades", type=int, default=500_000)
    t.add_argument("--symbols", type=int, default=50)
    t.add_argument("--span-minutes", type=int, default=60)
    lat = sub.add_parser("latency")
    lat.add_argument("--minutes", type=float, default=3)
    args = parser.parse_args()
    (throughput if args.command == "throughput" else latency)(args)


if __name__ == "__main__":
    main()
