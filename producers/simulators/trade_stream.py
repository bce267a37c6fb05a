"""Deterministic US-equity trade streams for the Finnhub simulator (and recorded JSONL replays).

A stream is per symbol: trade ``k`` of a symbol is the same on every run for the same seed, so a
test can compute exactly what Kafka must contain. Items use Finnhub's own field names.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TradeItem = dict[str, Any]  # {"s", "p", "t", "v", "c"} as Finnhub sends it

DEFAULT_START_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def _symbol_seed(symbol: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{symbol}".encode()).digest()[:8], "big")


def generated_trades(symbol: str, seed: int = 7, start_ms: int = DEFAULT_START_MS) -> Iterator[TradeItem]:
    """An endless random walk of trades for one symbol; 1-3 trades can share a millisecond."""
    rng = random.Random(_symbol_seed(symbol, seed))
    price = round(50 + rng.random() * 400, 2)
    event_ms = start_ms + rng.randrange(1000)
    while True:
        event_ms += rng.choice((0, 0, 1, 3, 17, 120))
        price = max(0.01, round(price * (1 + rng.gauss(0, 0.0005)), 2))
        conditions = rng.choice(([], ["1"], ["1", "12"], ["24"]))
        yield {"s": symbol, "p": price, "t": event_ms, "v": rng.choice((1, 5, 10, 100, 250)), "c": conditions}


def recorded_trades(path: Path) -> dict[str, list[TradeItem]]:
    """Load a recording: one JSON trade item per line, or whole ``{"type":"trade","data":[...]}`` frames."""
    by_symbol: dict[str, list[TradeItem]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        items = record.get("data", []) if record.get("type") == "trade" else [record]
        for item in items:
            by_symbol.setdefault(str(item["s"]), []).append(item)
    return by_symbol
