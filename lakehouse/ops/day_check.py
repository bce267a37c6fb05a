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
from typing import TYPE_CHECKING

from pyiceberg.exceptions import NoSuchTableError

from lakehouse.bars_rebuild import open_days
from lakehouse.settings import Settings, SettingsError, load_settings
from lakehouse.times import from_epoch_micros

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression

    from lakehouse.tables import TableDef

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


def _utc_day_filter(table: TableDef, day: date, symbols: Sequence[str]) -> BooleanExpression:
    """The table's time column within the UTC ``day`` (and ``symbol`` one of ``symbols``, if any):
    the reading API's typed filter, so a symbol is a value, never text pasted into a filter."""
    from lakehouse.reading import row_filter

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return row_filter(table, list(symbols), start, start + timedelta(days=1))


def check_day(settings: Settings, day: date, symbols: Sequence[str] = ()) -> tuple[int, list[str]]:
    """(bars checked, differences) for the UTC ``day``."""
    import pyarrow.compute as pc
    from pyiceberg.expressions import And, EqualTo

    from lakehouse.catalog import load_table
    from lakehouse.tables import BARS_1M, TRADES

    trades = load_table(settings, TRADES).scan(
        row_filter=And(_utc_day_filter(TRADES, day, symbols), EqualTo("bar_eligible", True)),
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
        row_filter=_utc_day_filter(BARS_1M, day, symbols),
        selected_fields=("symbol", "window_start", "trade_count", "volume", "high", "low"),
    ).to_arrow()
    starts = pc.cast(bars["window_start"], "int64").to_pylist()
    actual = {
        (row["symbol"], start): MinuteFigures(row["trade_count"], row["volume"], row["high"], row["low"])
        for row, start in zip(bars.to_pylist(), starts, strict=True)
    }
    return len(actual), differences(expected, actual)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when every day checked agrees; 1 on a difference, or on a day with neither eligible
    trades nor bars (nothing was checked: an exchange holiday, or not the day or lakehouse meant;
    ``--allow-empty`` accepts it); 2 when a day cannot be checked (not over yet, no table, bad
    settings), said in one line."""
    parser = argparse.ArgumentParser(prog="python -m lakehouse.ops.day_check", description=__doc__.splitlines()[0])
    parser.add_argument("--day", type=date.fromisoformat, action="append", required=True, help="UTC day, YYYY-MM-DD")
    parser.add_argument("--symbol", action="append", default=[], help="only this symbol (repeatable)")
    parser.add_argument("--allow-empty", action="store_true",
                        help="a day without trades or bars passes (by default it fails: nothing was checked)")
    parser.add_argument("--config", type=Path, default=None, help="settings TOML (default conf/lakehouse.toml)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        print(f"day_check: {error}", file=sys.stderr, flush=True)
        return 2
    still_open = open_days(args.day, datetime.now(UTC), settings.streaming.allowed_lateness_seconds)
    if still_open:
        print(f"day_check: not over yet (the streaming bars job still owns them): {', '.join(map(str, still_open))}",
              file=sys.stderr, flush=True)
        return 2
    failed = False
    for day in args.day:
        try:
            checked, problems = check_day(settings, day, args.symbol)
        except NoSuchTableError as error:
            print(f"day_check: no table to check ({error}); the streaming jobs create them on their first run",
                  file=sys.stderr, flush=True)
            return 2
        print(f"{day}: {checked} bars checked against the stored trades, {len(problems)} differences", flush=True)
        for problem in problems:
            print(f"  {problem}", flush=True)
        if not checked and not problems:
            which = f" of {', '.join(args.symbol)}" if args.symbol else ""
            print(f"  nothing to check: no eligible trades and no bars{which} on {day} (an exchange holiday, or "
                  f"not the day or lakehouse meant){'' if args.allow_empty else '; --allow-empty accepts it'}",
                  flush=True)
            failed = failed or not args.allow_empty
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
