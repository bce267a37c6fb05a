"""vnstock rows -> Trade / VendorBar messages, and "what is new since the high-water mark". Pure.

Rows arrive as plain dicts (the source adapter turns vnstock's DataFrames into them) with
``time_ms`` already in UTC epoch milliseconds. Prices stay in vnstock's unit for VCI: thousands of
VND (95.4 = 95,400 VND). A row that fails validation becomes a quarantine record, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from lakehouse.messages import BarInterval, Source, Trade, VendorBar, trade_id
from producers.quarantine import QuarantinedInput, quarantined
from producers.vnstock_feed.trading_hours import day_close, local_date

INTERVAL_MS = {
    BarInterval.MINUTE_1: 60_000,
    BarInterval.MINUTE_5: 300_000,
    BarInterval.MINUTE_15: 900_000,
    BarInterval.MINUTE_30: 1_800_000,
    BarInterval.HOUR_1: 3_600_000,
}


@dataclass
class Converted:
    trades: list[Trade] = field(default_factory=list)
    bars: list[VendorBar] = field(default_factory=list)
    quarantined: list[QuarantinedInput] = field(default_factory=list)


def _raw(row: dict[str, Any]) -> str:
    """What the quarantine keeps: the vendor's own record when the source kept it (``raw``)."""
    return json.dumps(row.get("raw", row), default=str)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def trades_from_rows(symbol: str, rows: Iterable[dict[str, Any]], received_ms: int) -> Converted:
    """Intraday rows {time_ms, price, volume, match_type, id} -> trades keyed by VCI's own trade id."""
    out = Converted()
    for row in rows:
        try:
            vendor_id = str(row["id"])
            if not vendor_id or vendor_id in ("nan", "None"):
                raise ValueError("trade has no vendor id")
            match_type = row.get("match_type")
            out.trades.append(
                Trade(
                    source=Source.VNSTOCK,
                    symbol=symbol,
                    price=float(row["price"]),
                    volume=float(row["volume"]),
                    event_time_ms=int(row["time_ms"]),
                    conditions=[str(match_type)] if match_type else [],
                    received_time_ms=received_ms,
                    trade_id=trade_id(
                        Source.VNSTOCK,
                        symbol,
                        int(row["time_ms"]),
                        float(row["price"]),
                        float(row["volume"]),
                        vendor_id=vendor_id,
                    ),
                )
            )
        except (KeyError, ValueError, TypeError, ArithmeticError, ValidationError) as exc:  # never raise on a row
            out.quarantined.append(
                quarantined(Source.VNSTOCK, _raw(row), f"invalid intraday trade: {_reason(exc)}", received_ms)
            )
    return out


def bars_from_rows(
    symbol: str, interval: BarInterval, rows: Iterable[dict[str, Any]], received_ms: int
) -> Converted:
    """History rows {time_ms, open, high, low, close, volume} -> vendor bars."""
    out = Converted()
    for row in rows:
        try:
            if "error" in row:  # the source could not read a field of this bar
                raise ValueError(row["error"])
            out.bars.append(
                VendorBar(
                    source=Source.VNSTOCK,
                    symbol=symbol,
                    interval=interval,
                    bar_start_ms=int(row["time_ms"]),
                    open=float(row["open"]),
                    high=float(row["high"]),
                    low=float(row["low"]),
                    close=float(row["close"]),
                    volume=float(row["volume"]),
                    received_time_ms=received_ms,
                )
            )
        except (KeyError, ValueError, TypeError, ArithmeticError, ValidationError) as exc:  # never raise on a row
            out.quarantined.append(
                quarantined(Source.VNSTOCK, _raw(row), f"invalid {interval} bar: {_reason(exc)}", received_ms)
            )
    return out


def bar_is_final(interval: BarInterval, bar_start_ms: int, now_ms: int) -> bool:
    """A bar is published once it can no longer change: its interval is over (daily: after 15:00 VN)."""
    if interval == BarInterval.DAY_1:
        return now_ms >= int(day_close(local_date(bar_start_ms)).timestamp() * 1000)
    return now_ms >= bar_start_ms + INTERVAL_MS[interval]


@dataclass(frozen=True)
class TradeMark:
    """Newest trade time published for a symbol, and the trade ids published at exactly that time.

    Several trades share one second in VCI's data, so the time alone cannot say whether a trade
    at the mark was already published; the ids at the mark can.
    """

    time_ms: int = -1
    ids_at_time: frozenset[str] = frozenset()


def new_trades(trades: list[Trade], mark: TradeMark) -> tuple[list[Trade], TradeMark]:
    """Trades newer than ``mark`` (oldest first, each once) and the mark after publishing them."""
    fresh: dict[str, Trade] = {}
    for trade in sorted(trades, key=lambda t: t.event_time_ms):
        at = trade.event_time_ms
        if at < mark.time_ms or (at == mark.time_ms and trade.trade_id in mark.ids_at_time):
            continue
        fresh.setdefault(trade.trade_id, trade)
    selected = list(fresh.values())
    if not selected:
        return [], mark
    newest = max(t.event_time_ms for t in selected)
    ids = {t.trade_id for t in selected if t.event_time_ms == newest}
    if newest == mark.time_ms:
        ids |= mark.ids_at_time
    return selected, TradeMark(newest, frozenset(ids))


def new_final_bars(bars: list[VendorBar], last_start_ms: int, now_ms: int) -> list[VendorBar]:
    """Final bars starting after ``last_start_ms``, oldest first, one per start time.

    Stops at the first bar that is not final yet, so the mark never skips past a bar still forming.
    """
    by_start = {b.bar_start_ms: b for b in bars if b.bar_start_ms > last_start_ms}
    selected = []
    for start in sorted(by_start):
        if not bar_is_final(by_start[start].interval, start, now_ms):
            break
        selected.append(by_start[start])
    return selected
