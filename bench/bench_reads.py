"""Analyst reads: one symbol for one day vs a full-table scan, on the same 1-minute bars table.

Builds a throw-away embedded lakehouse with ``--symbols`` x ``--days`` sessions of 1-minute bars
(390 per symbol and day), written through pyiceberg in ``--commits-per-day`` commits per day, the
way streaming micro-batches land: so each (symbol, day) partition holds that many small files.
Then times, as the reading API runs them (median of ``--repeats``):

* ``Lakehouse.bars(symbol, day, day + 1 day)``: partition + statistics pruning, a few files;
* a full scan of the table (``table.scan().to_arrow()``), every file.

``--compact`` then runs Iceberg's ``rewrite_data_files`` through Spark (one file per partition)
and times both again.

    .venv/bin/python bench/bench_reads.py [--symbols 50] [--days 20] [--commits-per-day 4] [--compact]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from bench.common import load
from lakehouse.reading import Lakehouse
from lakehouse.reading.synthetic import append_rows, create_tables, session_open, synthetic_minute_bars
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings
from lakehouse.tables import BARS_1M

FIRST_DAY = date(2026, 1, 5)


def trading_days(count: int) -> list[date]:
    days, day = [], FIRST_DAY
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def write_bars(settings: Settings, symbols: list[str], days: list[date], commits_per_day: int) -> int:
    create_tables(settings, tables=(BARS_1M,))
    lake = Lakehouse(settings)
    rows = 0
    for day in days:
        bars = synthetic_minute_bars(symbols, day)
        edges = pd.date_range(session_open(day), periods=commits_per_day + 1,
                              end=session_open(day) + timedelta(minutes=390))
        for low, high in itertools.pairwise(edges):
            part = bars[(bars["window_start"] >= low) & (bars["window_start"] < high)]
            append_rows(lake.table(BARS_1M), _arrow(part))
        rows += len(bars)
    return rows


def _arrow(frame: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, schema=BARS_1M.schema.as_arrow(), preserve_index=False)


def median_seconds(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    run()  # warm-up: imports, catalog connection, OS file cache
    timings, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), result


def measure(settings: Settings, symbol: str, day: date, repeats: int) -> dict[str, float | int]:
    lake = Lakehouse(settings)
    table = lake.table(BARS_1M)
    point_s, point = median_seconds(lambda: lake.bars(symbol, day, day + timedelta(days=1)), repeats)
    scan_s, everything = median_seconds(lambda: lake.table(BARS_1M).scan().to_arrow(), max(1, repeats // 2))
    files = sum(1 for _ in table.scan().plan_files())
    return {
        "data_files": files,
        "one_symbol_day_rows": len(point),
        "one_symbol_day_s": round(point_s, 4),
        "full_scan_rows": everything.num_rows,
        "full_scan_s": round(scan_s, 4),
        "ratio": round(scan_s / point_s, 1),
    }


def describe(when: str, figures: dict[str, float | int]) -> str:
    """One ``label: figures`` line, the form ``bench.run_all`` turns into a table row."""
    return (f"{when}: {figures['data_files']:,} data files; one symbol-day {figures['one_symbol_day_rows']:,} "
            f"rows in {figures['one_symbol_day_s']:.3f} s, full scan {figures['full_scan_rows']:,} rows in "
            f"{figures['full_scan_s']:.2f} s ({figures['ratio']}x)")


COMPACT_SCRIPT = """
import json, sys, time
from lakehouse.settings import load_settings
from lakehouse.spark import build_spark_session
settings = load_settings(environ=json.loads(sys.argv[1]))
spark = build_spark_session(settings, "bench-compaction")
try:
    started = time.perf_counter()
    spark.sql(f"CALL {settings.catalog.name}.system.rewrite_data_files(table => '{sys.argv[2]}', "
              "options => map('min-input-files', '2'))").show(truncate=False)
    print("SECONDS", time.perf_counter() - started)
finally:
    spark.stop()
"""


def compact(environ: dict[str, str], settings: Settings) -> float:
    """Compact with Spark in a child process, as a scheduled maintenance job would run: its own JVM,
    which exits with it, and no pyiceberg connection of this process on the SQLite catalog."""
    table = f"{settings.catalog.namespace}.{BARS_1M.name}"
    done = subprocess.run([sys.executable, "-c", COMPACT_SCRIPT, json.dumps(environ), table],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rewrite_data_files failed:\n{done.stderr[-4000:]}")
    return float(done.stdout.rsplit("SECONDS", 1)[1].split()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--commits-per-day", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compact", action="store_true", help="also measure after Spark rewrite_data_files")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)

    symbols = [f"SYM{i:03d}" for i in range(args.symbols)]
    days = trading_days(args.days)
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as state:
        environ = {
            "LAKEHOUSE__LOCAL__STATE_DIR": state,
            "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state}/catalog.db",
            "LAKEHOUSE__CATALOG__WAREHOUSE": f"{state}/warehouse",
        }
        settings = load_settings(environ=environ)
        started = time.perf_counter()
        rows = write_bars(settings, symbols, days, args.commits_per_day)
        print(f"wrote {rows:,} bars ({args.symbols} symbols x {args.days} days) in "
              f"{args.days * args.commits_per_day} commits, {time.perf_counter() - started:.1f} s")
        target_symbol, target_day = symbols[len(symbols) // 2], days[len(days) // 2]
        results = {"before_compaction": measure(settings, target_symbol, target_day, args.repeats)}
        print(describe("before compaction", results["before_compaction"]))
        if args.compact:
            print(f"rewrite_data_files (Spark, one file per partition): {compact(environ, settings):.1f} s")
            results["after_compaction"] = measure(settings, target_symbol, target_day, args.repeats)
            print(describe("after compaction", results["after_compaction"]))
        ratios = [f"{results[key]['ratio']}x {key.replace('_', ' ')}" for key in results]
        ratio = min(results[key]["ratio"] for key in results)
        print(f"ratio: full scan / one symbol-day = {', '.join(ratios)} "
              f"(target >= 20x: {'met' if ratio >= 20 else 'not met'}) ({load()})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
