"""Open bars: what the bars job keeps of each window still inside the allowed lateness.

A bar is a monoid over its trades: high/low are max/min, volume, trade count and notional
(``sum(price * volume)``) are sums, and open/close are the prices of the trades with the smallest and
largest order key (``lakehouse.bars.exact_order_key``: event time, Kafka partition, offset; unique
per trade). So the bar of "everything so far" plus the partial bar of a micro-batch's new trades is
the bar of all of them, exactly, as long as every trade is counted once: the trades table is
deduplicated by contract and each of its appends reaches the bars job in exactly one micro-batch.
Keeping the open bars lets a micro-batch cost what its own trades cost, instead of re-reading every
trade of every window it touches.

Pure: no Spark. The bars job collects partial bars, combines them here and persists the result per
micro-batch in its checkpoint (``lakehouse.bars_progress``) so a replayed batch starts from the same
open bars.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

MICROS_PER_SECOND = 1_000_000

BarKey = tuple[str, int]  # (symbol, window start in epoch microseconds)


@dataclass(frozen=True)
class OpenBar:
    """One window's bar with the order keys of its opening and closing trades."""

    symbol: str
    window_start_us: int
    window_seconds: int
    open: float
    open_key: int
    high: float
    low: float
    close: float
    close_key: int
    volume: float
    trade_count: int
    notional: float  # sum(price * volume): VWAP = notional / volume
    updated_us: int | None = None  # when the job last changed it (epoch microseconds)

    @property
    def key(self) -> BarKey:
        return (self.symbol, self.window_start_us)

    @property
    def window_end_us(self) -> int:
        return self.window_start_us + self.window_seconds * MICROS_PER_SECOND

    @property
    def vwap(self) -> float | None:
        return self.notional / self.volume if self.volume != 0 else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, fields: Mapping[str, Any]) -> OpenBar:
        return cls(**fields)


def combine(earlier: OpenBar, later: OpenBar) -> OpenBar:
    """The bar of both bars' trades (same symbol and window; disjoint sets of trades)."""
    if earlier.key != later.key:
        raise ValueError(f"cannot combine bars of different windows: {earlier.key} and {later.key}")
    first = earlier if earlier.open_key <= later.open_key else later
    last = earlier if earlier.close_key >= later.close_key else later
    return replace(
        earlier,
        open=first.open,
        open_key=first.open_key,
        high=max(earlier.high, later.high),
        low=min(earlier.low, later.low),
        close=last.close,
        close_key=last.close_key,
        volume=earlier.volume + later.volume,
        trade_count=earlier.trade_count + later.trade_count,
        notional=earlier.notional + later.notional,
    )


def apply_partials(
    open_bars: Mapping[BarKey, OpenBar], partials: Iterable[OpenBar]
) -> tuple[dict[BarKey, OpenBar], list[OpenBar]]:
    """(open bars after this batch, the bars it changed): each partial joins its window's bar."""
    after = dict(open_bars)
    changed: list[OpenBar] = []
    for partial in partials:
        known = after.get(partial.key)
        bar = partial if known is None else combine(known, partial)
        after[partial.key] = bar
        changed.append(bar)
    return after, changed


def still_open(open_bars: Mapping[BarKey, OpenBar], watermark_us: int | None) -> dict[BarKey, OpenBar]:
    """The bars a later trade may still change: those whose window ends after the watermark."""
    if watermark_us is None:
        return dict(open_bars)
    return {key: bar for key, bar in open_bars.items() if bar.window_end_us > watermark_us}


def first_window_after(event_us: int, window_seconds: int) -> int:
    """The start of the first window that begins after ``event_us`` (epoch microseconds)."""
    length = window_seconds * MICROS_PER_SECOND
    return (event_us // length + 1) * length


def split_by_knowledge(
    partials: Iterable[OpenBar], open_bars: Mapping[BarKey, OpenBar], tracked_from_us: int | None
) -> tuple[list[OpenBar], list[OpenBar]]:
    """(partials the job can combine on its own, partials whose whole bar must be read from the table).

    A window is known when its bar is held, or when it starts at or after ``tracked_from_us``: every
    trade of such a window reached the job after it began keeping open bars, so one not held has no
    earlier trades and its partial is its bar so far. Any other window not held (the job's first
    batches, an upgrade, a trade stamped far ahead of its ingest time before a new checkpoint) may
    have stored trades the job never combined.
    """
    known: list[OpenBar] = []
    unknown: list[OpenBar] = []
    for partial in partials:
        held = partial.key in open_bars
        tracked = tracked_from_us is not None and partial.window_start_us >= tracked_from_us
        (known if held or tracked else unknown).append(partial)
    return known, unknown
