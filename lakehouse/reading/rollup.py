"""Coarser bars from 1-minute bars in pandas: the same rule as ``lakehouse.bars.rollup_bars`` (Spark).

open = first 1-minute open, close = last close, high = max, low = min, volume and trade_count =
sums, vwap = sum(vwap * volume) / sum(volume) (null when the volume is 0; a null 1-minute VWAP
contributes nothing, as Spark's ``sum`` skips nulls), updated_time and last_event_time = newest. Windows are
epoch-aligned in UTC, so a ``1d`` bar is a UTC calendar day.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lakehouse.bars import INTERVAL_SECONDS
from lakehouse.reading.errors import UnknownIntervalError
from lakehouse.tables import BARS_1M


def interval_seconds(interval: str) -> int:
    try:
        return INTERVAL_SECONDS[interval]
    except (KeyError, TypeError):  # TypeError: a list or other unhashable value
        raise UnknownIntervalError(
            f"unknown bar interval {interval!r}; choose one of {', '.join(INTERVAL_SECONDS)}"
        ) from None


def rollup_bars(bars_1m: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Bars of ``interval`` from 1-minute bars (any order), sorted by symbol then window_start."""
    seconds = interval_seconds(interval)
    columns = [c for c in BARS_1M.column_names if c in bars_1m.columns]
    if seconds == INTERVAL_SECONDS["1m"] or bars_1m.empty:
        return bars_1m.loc[:, columns].sort_values(["symbol", "window_start"], ignore_index=True)
    frame = bars_1m.sort_values(["symbol", "window_start"]).assign(
        bucket=lambda f: f["window_start"].dt.floor(f"{seconds}s"),
        vwap_volume=lambda f: (f["vwap"] * f["volume"]).fillna(0.0),
    )
    aggregations = {
        "open": ("open", "first"),
        "high": ("high", "max"),
        "low": ("low", "min"),
        "close": ("close", "last"),
        "volume": ("volume", "sum"),
        "trade_count": ("trade_count", "sum"),
        "vwap_volume": ("vwap_volume", "sum"),
    }
    for newest in ("updated_time", "last_event_time"):
        if newest in frame:
            aggregations[newest] = (newest, "max")
    rolled = frame.groupby(["symbol", "bucket"], sort=True).agg(**aggregations).reset_index()
    traded = rolled["volume"] != 0
    rolled["vwap"] = (rolled["vwap_volume"] / rolled["volume"].where(traded)).where(traded, np.nan)
    rolled = rolled.rename(columns={"bucket": "window_start"})
    rolled["window_end"] = rolled["window_start"] + pd.Timedelta(seconds=seconds)
    rolled["trade_count"] = rolled["trade_count"].astype("int64")
    return rolled.loc[:, columns].reset_index(drop=True)
