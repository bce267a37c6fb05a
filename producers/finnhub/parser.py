"""Turn one Finnhub WebSocket frame into Trade messages and quarantine records. Pure: no I/O, no clock.

Finnhub frames (https://finnhub.io/docs/api/websocket-trades):
    {"type":"trade","data":[{"s":"AAPL","p":189.5,"t":1700000000123,"v":100,"c":["1","12"]}, ...]}
    {"type":"ping"}
    {"type":"error","msg":"..."}
``t`` is UTC epoch milliseconds, ``v`` may be 0 (e.g. for some indices), ``c`` may be missing or null.

One bad item never spoils the rest of its frame: valid items become trades, each bad one becomes a
quarantine record with its own raw text and reason. No input makes this module raise.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from lakehouse.messages import Source, Trade, trade_id
from producers.quarantine import QuarantinedInput, quarantined

FrameKind = Literal["trade", "ping", "error", "other", "invalid"]


@dataclass(frozen=True)
class ParsedFrame:
    kind: FrameKind
    trades: list[Trade] = field(default_factory=list)
    quarantined: list[QuarantinedInput] = field(default_factory=list)
    error_message: str | None = None  # the text of an ``error`` frame


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"'{name}' must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"'{name}' must be finite, got {value!r}")
    return float(value)


def _epoch_ms(value: Any) -> int:
    number = _number(value, "t")
    if number != int(number):
        raise ValueError(f"'t' must be whole epoch milliseconds, got {value!r}")
    return int(number)


def _conditions(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(c, str | int) and not isinstance(c, bool) for c in value
    ):
        raise ValueError(f"'c' must be a list of condition codes, got {value!r}"[:300])
    return [str(c) for c in value]


def _item_fields(item: Any) -> tuple[str, float, int, float, list[str]]:
    if not isinstance(item, dict):
        raise ValueError(f"trade item must be an object, got {type(item).__name__}")
    missing = [k for k in ("s", "p", "t", "v") if k not in item]
    if missing:
        raise ValueError(f"trade item lacks {', '.join(missing)}")
    symbol = item["s"]
    if not isinstance(symbol, str):
        raise ValueError(f"'s' must be a string, got {type(symbol).__name__}")
    return (
        symbol,
        _number(item["p"], "p"),
        _epoch_ms(item["t"]),
        _number(item["v"], "v"),
        _conditions(item.get("c")),
    )


def _raw(item: Any) -> str:
    try:
        return json.dumps(item, allow_nan=True)
    except (TypeError, ValueError):
        return repr(item)


def parse_frame(raw: str | bytes, received_time_ms: int) -> ParsedFrame:
    """Parse one frame. Look-alike trades within a frame get increasing ordinals, hence distinct ids."""

    def reject(reason: str, text: str | bytes = raw) -> QuarantinedInput:
        return quarantined(Source.FINNHUB, text, reason, received_time_ms)

    try:
        frame = json.loads(raw)
    except (ValueError, TypeError, RecursionError) as exc:
        return ParsedFrame("invalid", quarantined=[reject(f"not valid JSON: {exc}"[:500])])
    if not isinstance(frame, dict):
        return ParsedFrame(
            "invalid", quarantined=[reject(f"frame is a JSON {type(frame).__name__}, not an object")]
        )
    kind = frame.get("type")
    if kind == "ping":
        return ParsedFrame("ping")
    if kind == "error":
        return ParsedFrame("error", error_message=str(frame.get("msg", ""))[:500])
    if kind != "trade":
        return (
            ParsedFrame("other")
            if isinstance(kind, str)
            else ParsedFrame("invalid", quarantined=[reject("frame has no string 'type'")])
        )
    items = frame.get("data")
    if not isinstance(items, list):
        return ParsedFrame("invalid", quarantined=[reject("trade frame has no 'data' list")])

    trades: list[Trade] = []
    rejected: list[QuarantinedInput] = []
    seen: Counter[tuple[str, int, float, float, tuple[str, ...]]] = Counter()
    for item in items:
        try:
            symbol, price, event_ms, volume, conditions = _item_fields(item)
            look_alike = (symbol, event_ms, price, volume, tuple(sorted(conditions)))
            ordinal = seen[look_alike]
            trades.append(
                Trade(
                    source=Source.FINNHUB,
                    symbol=symbol,
                    price=price,
                    volume=volume,
                    event_time_ms=event_ms,
                    conditions=conditions,
                    received_time_ms=received_time_ms,
                    trade_id=trade_id(Source.FINNHUB, symbol, event_ms, price, volume, conditions, ordinal),
                )
            )
            seen[look_alike] += 1
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            rejected.append(reject(f"invalid trade item: {problems}"[:500], _raw(item)))
        except (ValueError, TypeError, OverflowError) as exc:
            rejected.append(reject(f"invalid trade item: {exc}"[:500], _raw(item)))
    return ParsedFrame("trade", trades=trades, quarantined=rejected)


def newest_event_ms(trades: list[Trade]) -> int | None:
    return max((t.event_time_ms for t in trades), default=None)
