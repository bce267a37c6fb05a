"""The trades of bars that can still change, kept in memory between bars micro-batches.

Recomputing a bar from all its trades keeps it exact and makes replays harmless, but reading those
trades back from the trades table costs one small file per symbol per raw micro-batch: 6-17 s per
bars batch at 5,000 trades/s (``bench/bench_freshness.py``). The bars job instead keeps every
eligible on-time trade it has streamed, per micro-batch, until all of that batch's windows are past
the watermark, and reads the table only for a window it has not seen in this process (the first
batch after a start, or a window whose earlier trades predate this process).

Nothing here decides what a bar is: the job still recomputes whole bars with
``lakehouse.bars.bars_from_trades``, from these trades deduplicated on ``trade_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce
from typing import TYPE_CHECKING

from lakehouse.bars import BAR_SECONDS
from lakehouse.watermarks import to_epoch_micros

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

BAR_MICROS = BAR_SECONDS * 1_000_000
# (symbol, window_start as epoch microseconds)
WindowKey = tuple[str, int]
COLUMNS = ("trade_id", "symbol", "price", "volume", "event_time", "kafka_partition", "kafka_offset", "window_start")


@dataclass
class _Held:
    trades: DataFrame
    newest_window_end: datetime


@dataclass
class OpenWindowTrades:
    """Cached trade frames plus the windows whose every trade streamed so far is among them."""

    held: list[_Held] = field(default_factory=list)
    complete: set[WindowKey] = field(default_factory=set)

    def missing(self, windows: list[WindowKey]) -> list[WindowKey]:
        """The windows whose trades must be read from the table before recomputing them."""
        return [key for key in windows if key not in self.complete]

    def add(self, trades: DataFrame, newest_window_end: datetime | None) -> None:
        """Hold ``trades`` (``COLUMNS``, eligible, on time), materialised without their lineage."""
        if newest_window_end is not None:
            self.held.append(_Held(trades.select(*COLUMNS).localCheckpoint(eager=True), newest_window_end))

    def mark_complete(self, windows: list[WindowKey]) -> None:
        self.complete.update(windows)

    def trades(self) -> DataFrame | None:
        """Every held trade (copies of a trade possible: dedupe on ``trade_id``)."""
        frames = [held.trades for held in self.held]
        return reduce(lambda a, b: a.unionByName(b), frames) if frames else None

    def close_through(self, watermark: datetime | None) -> None:
        """Forget windows ending at or before ``watermark`` (final: later trades for them are late)."""
        if watermark is None:
            return
        cutoff_us = to_epoch_micros(watermark)
        self.held = [held for held in self.held if held.newest_window_end > watermark]
        self.complete = {key for key in self.complete if key[1] + BAR_MICROS > cutoff_us}
