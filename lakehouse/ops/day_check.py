"""Check a rebuilt day: do the ``bars_1m`` of a UTC day agree with the eligible trades stored for it?

Run by the daily DAGs after ``rebuild_bars``, and usable by hand:

    python -m lakehouse.ops.day_check --day 2026-03-02 [--symbol AAPL ...]    # exit 1 on a mismatch

Independent of the Spark code that built the bars: pyiceberg reads both tables and pyarrow groups
the trades by symbol and minute. Checked per (symbol, minute): a bar exists exactly where eligible
trades exist, with their count, their volume, and the high and low of their prices. (Open and
close depend on the tie-breaking order of trades in one millisecond, which this check does not
re-derive.)
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from lakehouse.settings import Settings, load_settings
from lakehouse.times import from_epoch_micros

MINUTE_US = 60_000_000


@dataclass(frozen=True)
class MinuteFigures:
    trade_count: int
    volume: float
    high: float
    low: float


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def differences(expected: dict[tuple[str, int], MinuteFigures], actual: dict[tuple[str, int], MinuteFigures],
                limit: int = 10) -> list[str]:
    """What differs between bars computed from trades (``expected``) and stored bars, keyed by
    (symbol, minute start in epoch microseconds); at most ``limit`` lines."""
    problems = []
    for key in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(key), actual.get(key)
        at = from_epoch_micros(key[1]).strftime("%Y-%m-%d %H:%MZ")
        if want is None:
            problems.append(f"{key[0]} {at}: a bar without eligible trades")
        elif got is None:
            problems.append(f"{key[0]} {at}: {want.trade_count} eligible trades but no bar")
        elif not (want.trade_count == got.trade_count and _close(want.volume, got.volume)
                  and _close(want.high, got.high) and _close(want.low, got.low)):
            problems.append(f"{key[0]} {at}: trades say {want}, the bar says {got}")
        if len(problems) >= limit:
            break
    return problems


def _utc_day_filter(column: str, day: date, symbols: Sequence[str]) -> str:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    condition = f"{column} >= '{start.isoformat()}' and {column} < '{end.isoformat()}'"
    if symbols:
        condition += " and symbol in (" + ", ".join(f"'{s}'" for s in symbols) + ")"
    return condition


def check_day(settings: Settings, day: date, symbols: Sequence[str] = ()) -> tuple[int, list[str]]:
    """(bars checked, differences) for the UTC ``day``."""
    import pyarrow.compute as pc

    from lakehouse.catalog import load_table
    from lakehouse.tables import BARS_1M, TRADES

    trades = load_table(settings, TRADES).scan(
        row_filter=_utc_day_filter("event_time", day, symbols) + " and bar_eligible = true",
        selected_fields=("symbol", "event_time", "price", "volume"),
    ).to_arrow()
    minute = pc.multiply(pc.divide(pc.cast(trades["event_time"], "int64"), MINUTE_US), MINUTE_US)
    grouped = trades.append_column("minute", minute).group_by(["symbol", "minute"]).aggregate(
        [("price", "count"), ("volume", "sum"), ("price", "max"), ("price", "min")])
    expected = {
        (row["symbol"], row["minute"]): MinuteFigures(row["price_count"], row["volume_sum"], row["price_max"],
                                                      row["price_min"])
        for row in grouped.to_pylist()
    }
    bars = load_table(settings, BARS_1M).scan(
        row_filter=_utc_day_filter("window_start", day, symbols),
        selected_fields=("symbol", "window_start", "trade_count", "volume", "high", "low"),
    ).to_arrow()
    starts = pc.cast(bars["window_start"], "int64").to_pylist()
    actual = {
        (row["symbol"], start): MinuteFigures(row["trade_count"], row["volume"], row["high"], row["low"])
        for row, start in zip(bars.to_pylist(), starts, strict=True)
    }
    return len(actual), differences(expected, actual)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehouse.ops.day_check", description=__doc__.splitlines()[0])
    parser.add_argument("--day", type=date.fromisoformat, action="append", required=True, help="UTC day, YYYY-MM-DD")
    parser.add_argument("--symbol", action="append", default=[], help="only this symbol (repeatable)")
    parser.add_argument("--config", type=Path, default=None, help="settings TOML (default conf/lakehouse.toml)")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    failed = False
    for day in args.day:
        checked, problems = check_day(settings, day, args.symbol)
        print(f"{day}: {checked} bars checked against the stored trades, {len(problems)} differences", flush=True)
        for problem in problems:
            print(f"  {problem}", flush=True)
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
