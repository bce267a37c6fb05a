"""High-water marks of the vnstock producer, persisted so a restart publishes nothing twice.

One small JSON file under the state directory, replaced atomically (write, fsync, rename), written
only after Kafka acknowledged everything up to the marks. A crash between the acknowledgement and
the write re-sends at most one poll's worth, which the deterministic ids let the jobs recognise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lakehouse.messages import BarInterval
from producers.vnstock_feed.convert import TradeMark


class HighWaterMarks:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.trades: dict[str, TradeMark] = {}
        self.bars: dict[str, int] = {}  # "SYMBOL|interval" -> newest published bar_start_ms
        if path.exists():
            saved = json.loads(path.read_text())
            self.trades = {
                s: TradeMark(m["time_ms"], frozenset(m["ids_at_time"])) for s, m in saved["trades"].items()
            }
            self.bars = {k: int(v) for k, v in saved["bars"].items()}

    @staticmethod
    def bar_key(symbol: str, interval: BarInterval) -> str:
        return f"{symbol}|{interval.value}"

    def trade_mark(self, symbol: str) -> TradeMark:
        return self.trades.get(symbol, TradeMark())

    def bar_mark(self, symbol: str, interval: BarInterval) -> int:
        return self.bars.get(self.bar_key(symbol, interval), -1)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "trades": {
                s: {"time_ms": m.time_ms, "ids_at_time": sorted(m.ids_at_time)}
                for s, m in self.trades.items()
            },
            "bars": self.bars,
        }
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w") as out:
            json.dump(payload, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
