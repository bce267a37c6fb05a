"""Charts of bars for notebooks and reports: candlesticks with volume and VWAP, and a few plain ones.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so it draws on the Agg
canvas whatever backend a notebook has, keeps no global figure state (nothing to close), and still
shows inline in Jupyter as the cell's result. ``save_chart`` writes the PNG the tests check.

Inputs are the DataFrames ``lakehouse.reading.Lakehouse`` returns (UTC timestamps); time axes are
labelled in UTC.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

UP_COLOUR = "#26a69a"
DOWN_COLOUR = "#ef5350"
VWAP_COLOUR = "#1f4e9c"


def session_vwap(bars: pd.DataFrame) -> pd.Series:
    """Running VWAP from each UTC day's first bar: sum(vwap * volume) / sum(volume) so far.

    The line traders watch intraday; it resets at 00:00 UTC, which separates both the US and the
    Vietnamese sessions. NaN until the day's first traded volume.
    """
    day = bars["window_start"].dt.floor("1D")
    notional = (bars["vwap"] * bars["volume"]).fillna(0.0).groupby(day).cumsum()
    volume = bars["volume"].groupby(day).cumsum()
    return notional / volume.where(volume != 0)


def _x(times: pd.Series) -> np.ndarray:
    return mdates.date2num(times.dt.tz_convert("UTC").dt.tz_localize(None))


def _time_axis(axes) -> None:
    """Round tick steps (5, 15, 30 minutes; 1, 2, 3 hours...) with concise UTC labels."""
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    locator.intervald[mdates.MINUTELY] = [1, 5, 10, 15, 30]
    locator.intervald[mdates.HOURLY] = [1, 2, 3, 6, 12]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def candlestick_chart(bars: pd.DataFrame, title: str | None = None, show_vwap: bool = True) -> Figure:
    """One symbol's bars: candles (green up, red down) with the session VWAP, and volume below.

    ``bars`` needs ``window_start, window_end, open, high, low, close, volume`` and, for the VWAP
    line, ``vwap``; rows are drawn in time order.
    """
    if bars.empty:
        raise ValueError("no bars to draw: check the symbol and the time range")
    if bars["symbol"].nunique() > 1:
        raise ValueError(f"one symbol per candlestick chart, got {sorted(bars['symbol'].unique())}")
    bars = bars.sort_values("window_start")
    x = _x(bars["window_start"])
    bar_days = (bars["window_end"] - bars["window_start"]).dt.total_seconds().median() / 86400
    width = bar_days * 0.7
    centre = x + bar_days / 2
    rising = (bars["close"] >= bars["open"]).to_numpy()
    colours = np.where(rising, UP_COLOUR, DOWN_COLOUR)

    figure = Figure(figsize=(11, 6), layout="constrained")
    price, volume = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    price.vlines(centre, bars["low"], bars["high"], colors=colours, linewidth=0.8)
    body_low = np.minimum(bars["open"], bars["close"])
    body_height = np.maximum((bars["close"] - bars["open"]).abs(), 1e-9 * bars["close"])
    price.bar(centre, body_height, width, bottom=body_low, color=colours, linewidth=0)
    if show_vwap and "vwap" in bars:
        price.plot(centre, session_vwap(bars), color=VWAP_COLOUR, linewidth=1.2, label="session VWAP")
        price.legend(loc="upper left")
    price.set_ylabel("price")
    price.grid(alpha=0.3)
    symbol = bars["symbol"].iloc[0]
    price.set_title(title or f"{symbol}, {bars['window_start'].iloc[0]:%Y-%m-%d %H:%M} UTC onwards")

    volume.bar(centre, bars["volume"], width, color=colours, linewidth=0)
    volume.set_ylabel("volume")
    volume.grid(alpha=0.3)
    _time_axis(volume)
    volume.set_xlabel("UTC")
    return figure


def line_chart(frame: pd.DataFrame, title: str, ylabel: str) -> Figure:
    """One line per column of ``frame`` against its index (e.g. a time index and one column per symbol)."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    axes = figure.subplots()
    index = frame.index
    x = _x(pd.Series(index)) if isinstance(index, pd.DatetimeIndex) else index
    for column in frame.columns:
        axes.plot(x, frame[column], label=str(column), linewidth=1.1)
    if isinstance(index, pd.DatetimeIndex):
        _time_axis(axes)
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(ncols=min(len(frame.columns), 6), fontsize="small")
    return figure


def bar_chart(values: pd.Series | pd.DataFrame, title: str, ylabel: str, horizontal: bool = False) -> Figure:
    """Bars for a Series (one bar per index label) or a DataFrame (grouped, one colour per column)."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    axes = figure.subplots()
    frame = values.to_frame() if isinstance(values, pd.Series) else values
    positions = np.arange(len(frame))
    height = 0.8 / len(frame.columns)
    for offset, column in enumerate(frame.columns):
        where = positions - 0.4 + height * (offset + 0.5)
        draw = axes.barh if horizontal else axes.bar
        draw(where, frame[column].to_numpy(dtype=float), height, label=str(column))
    labels = [str(label) for label in frame.index]
    if horizontal:
        axes.set_yticks(positions, labels)
        axes.set_xlabel(ylabel)
        axes.invert_yaxis()
    else:
        axes.set_xticks(positions, labels, rotation=45 if len(labels) > 12 else 0, ha="right")
        axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3, axis="x" if horizontal else "y")
    if len(frame.columns) > 1:
        axes.legend(fontsize="small")
    return figure


def heatmap(matrix: pd.DataFrame, title: str, vmin: float = -1.0, vmax: float = 1.0) -> Figure:
    """A labelled square matrix (e.g. return correlations), each cell annotated with its value."""
    figure = Figure(figsize=(1.2 * len(matrix.columns) + 3, 1.0 * len(matrix.index) + 2), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(matrix.to_numpy(dtype=float), cmap="RdBu_r", vmin=vmin, vmax=vmax)
    axes.set_xticks(range(len(matrix.columns)), [str(c) for c in matrix.columns])
    axes.set_yticks(range(len(matrix.index)), [str(i) for i in matrix.index])
    for (row, column), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
        axes.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize="small")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set_title(title)
    return figure


def save_chart(figure: Figure, path: Path | str, dpi: int = 110) -> Path:
    """Write ``figure`` as PNG at ``path`` (folders created); return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png", dpi=dpi)
    return target
