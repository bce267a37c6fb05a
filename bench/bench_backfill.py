"""Backfill: recompute a day of 1-minute bars from the raw trades table, Spark vs DuckDB.

Writes ``--trades`` synthetic trades for one trading day (6.5 h, ``--symbols`` symbols) into a fresh
``trades`` table, then, after one warm-up round (JIT, page cache; printed, not counted), ``--repeats``
times each, computes the same bars:

* Spark batch: the bars of ``lakehouse.bars_rebuild`` (``bars_of_days``: ``eligible_trades`` +
  ``bars_from_trades``, the library code the streaming bars job uses) over the Iceberg table, written
  to Parquet;
* DuckDB: the same bar maths in SQL over the same Parquet data files (listed by pyiceberg's
  ``plan_files``), written to Parquet.

Both results are checked equal (bar count, volume and trade-count sums). Ratio = Spark / DuckDB.
The job itself (``rebuild_days``: the same bars replacing the day in ``bars_1m``, one Iceberg commit)
is timed once after them.

The default day is 20M trades: about 850 trades/s averaged over the session across 50 symbols, a
sixth of the 5,000/s of a busy open that the freshness benchmark offers. Spark pays ~0.8 s per query
(planning, three stages) that DuckDB does not, so a small day (``--trades 5000000``) shows a larger
ratio (docs/performance.md#the-backfill-rebuild_bars).

    .venv/bin/python -m bench.bench_backfill [--trades 20000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import describe_machine, lakehouse_settings, load, median
from lakehouse.catalog import load_table, spark_table_name
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.tables import BARS_1M, TRADES

DAY_OPEN = datetime(2026, 2, 25, 14, 30, tzinfo=UTC)


def duckdb_bars_sql(files: list[str], out: str) -> str:
    """The bar maths of ``lakehouse.bars.bars_from_trades`` for DuckDB (eligible: the stored ``bar_eligible``)."""
    listing = ", ".join(f"'{f}'" for f in files)
    return f"""
    COPY (
      SELECT symbol,
             time_bucket(INTERVAL 1 MINUTE, event_time) AS window_start,
             time_bucket(INTERVAL 1 MINUTE, event_time) + INTERVAL 1 MINUTE AS window_end,
             arg_min(price, (event_time, kafka_partition, kafka_offset, trade_id)) AS open,
             max(price) AS high, min(price) AS low,
             arg_max(price, (event_time, kafka_partition, kafka_offset, trade_id)) AS close,
             sum(volume) AS volume, count(*) AS trade_count,
             CASE WHEN sum(volume) != 0 THEN sum(price * volume) / sum(volume) END AS vwap,
             now() AS updated_time,
             max(event_time) AS last_event_time
      FROM read_parquet([{listing}])
      WHERE bar_eligible
      GROUP BY ALL
    ) TO '{out}' (FORMAT parquet)
    """


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=20_000_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import duckdb

    from bench.bars_bench import synthetic_trades
    from lakehouse.bars_rebuild import bars_of_days, rebuild_days

    with tempfile.TemporaryDirectory(prefix="bench-backfill-", ignore_cleanup_errors=True) as state:
        settings = lakehouse_settings(state)
        spark = build_spark_session(settings, "bench-backfill")
        ensure_tables(spark, settings, (TRADES, BARS_1M))
        print(describe_machine())
        name = spark_table_name(settings, TRADES)
        start_us = int(DAY_OPEN.timestamp() * 1e6)
        started = time.perf_counter()
        synthetic_trades(spark, args.trades, args.symbols, start_us, 390 * 60, 1).writeTo(name).append()
        files = [task.file.file_path.removeprefix("file:") for task in load_table(settings, TRADES).scan().plan_files()]
        size = sum(Path(f).stat().st_size for f in files)
        print(f"data: {args.trades:,} trades, {args.symbols} symbols, one 6.5 h session; {len(files)} Parquet "
              f"files, {size / 2**20:.0f} MiB; written in {time.perf_counter() - started:.0f} s")

        spark_times, duck_times = [], []
        spark_out, duck_out = f"{state}/spark-bars", f"{state}/duck-bars.parquet"
        connection = duckdb.connect()
        connection.execute("SET threads = 2")
        for round_ in range(args.repeats + 1):
            started = time.perf_counter()
            bars_of_days(spark, settings, [DAY_OPEN.date()]).write.mode("overwrite").parquet(spark_out)
            spark_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            connection.execute(duckdb_bars_sql(files, duck_out))
            duck_times.append(time.perf_counter() - started)
            if round_ == 0:
                print(f"warm-up round (not counted): Spark {spark_times.pop():.2f} s, DuckDB {duck_times.pop():.2f} s")
        check = "SELECT count(*), sum(volume), sum(trade_count), sum(open), sum(close) FROM read_parquet('{}')"
        spark_sum = connection.execute(check.format(f"{spark_out}/*.parquet")).fetchone()
        duck_sum = connection.execute(check.format(duck_out)).fetchone()
        assert spark_sum[0] == duck_sum[0] and spark_sum[2] == duck_sum[2], (spark_sum, duck_sum)
        assert all(abs(a - b) < 1e-6 * max(1.0, abs(b)) for a, b in zip(spark_sum[3:], duck_sum[3:], strict=True)), \
            (spark_sum, duck_sum)
        assert abs(spark_sum[1] - duck_sum[1]) < 1e-6 * max(1.0, duck_sum[1]), (spark_sum, duck_sum)
        started = time.perf_counter()
        report = rebuild_days(spark, settings, [DAY_OPEN.date()])
        job_seconds = time.perf_counter() - started
        assert report.bars_written == spark_sum[0], (report, spark_sum)
        s, d = median(spark_times), median(duck_times)
        print(f"bars: {spark_sum[0]:,} (both engines agree on count, volume, trade count, open, close)")
        print(f"Spark batch (lakehouse.bars_rebuild's bars over Iceberg): median {s:.2f} s of {args.repeats} "
              f"({args.trades / s:,.0f} trades/s)")
        print(f"DuckDB 2 threads (same maths over the same files): median {d:.2f} s ({args.trades / d:,.0f} trades/s)")
        print(f"the job end to end (the day's bars replaced in bars_1m, one commit): {job_seconds:.2f} s")
        print(f"ratio: Spark / DuckDB = {s / d:.2f}x (target <= 2x: {'met' if s / d <= 2 else 'NOT met'}) ({load()})")
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
