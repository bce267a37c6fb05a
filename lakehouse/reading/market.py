"""Market arithmetic on bars already read: session VWAP and which exchange (time zone) a symbol is on.

Pure pandas, no I/O, so the dashboard and notebooks share one definition.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

US_TIME_ZONE = "America/New_York"
VN_TIME_ZONE = "Asia/Ho_Chi_Minh"


def session_vwap(bars: pd.DataFrame) -> pd.Series:
    """Per bar, the VWAP of its session so far: ``cumsum(vwap * volume) / cumsum(volume)`` per symbol
    and UTC day (a UTC day holds the whole regular session of US and Vietnamese markets, as the
    ``1d`` rollup does). A bar with a null VWAP adds nothing; NaN until the session has volume.
    ``bars`` needs ``symbol, window_start, vwap, volume``; the result is aligned to its index."""
    if bars.empty:
        return pd.Series(dtype="float64", index=bars.index)
    ordered = bars.sort_values(["symbol", "window_start"])
    session = [ordered["symbol"], ordered["window_start"].dt.floor("1D")]
    notional = (ordered["vwap"] * ordered["volume"]).fillna(0.0)
    volume = ordered["volume"].where(ordered["vwap"].notna(), 0.0)
    cumulative_volume = volume.groupby(session).cumsum()
    result = notional.groupby(session).cumsum() / cumulative_volume.where(cumulative_volume != 0, np.nan)
    return result.reindex(bars.index)


def exchange_time_zone(symbol: str, vietnamese_symbols: Collection[str]) -> str:
    """The IANA zone of the exchange ``symbol`` trades on: Ho Chi Minh City for the Vietnamese
    symbols (the vnstock feed's, or any the vendor-bars table holds), New York otherwise (Finnhub's
    US feed)."""
    return VN_TIME_ZONE if symbol in vietnamese_symbols else US_TIME_ZONE
