"""Charts of bars: drawn headless (Agg, no pyplot state) and saved as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lakehouse import charts
from lakehouse.reading.synthetic import DEMO_DAY, synthetic_minute_bars


@pytest.fixture
def bars() -> pd.DataFrame:
    return synthetic_minute_bars(["AAPL"], DEMO_DAY).head(120)


def test_candlestick_chart_with_volume_and_vwap_is_saved_as_png(bars: pd.DataFrame, tmp_path: Path) -> None:
    figure = charts.candlestick_chart(bars)
    saved = charts.save_chart(figure, tmp_path / "nested" / "aapl.png")

    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert saved.stat().st_size > 10_000
    price, volume = figure.axes
    assert [line.get_label() for line in price.get_lines()] == ["session VWAP"]
    assert len(volume.patches) == len(bars)  # one volume bar per candle


def test_a_candlestick_chart_refuses_no_bars_or_several_symbols(bars: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="no bars"):
        charts.candlestick_chart(bars.iloc[:0])
    with pytest.raises(ValueError, match="one symbol"):
        charts.candlestick_chart(pd.concat([bars, bars.assign(symbol="MSFT")]))


def test_session_vwap_is_volume_weighted_and_restarts_each_utc_day() -> None:
    start = pd.Timestamp("2026-01-05 23:58", tz="UTC")
    bars = pd.DataFrame({
        "window_start": [start + pd.Timedelta(minutes=i) for i in range(4)],
        "vwap": [10.0, 20.0, 30.0, np.nan],
        "volume": [100.0, 300.0, 50.0, 0.0],
    })
    vwap = charts.session_vwap(bars)
    assert vwap.tolist()[:3] == [10.0, 17.5, 30.0]  # 00:00 starts a new day
    assert vwap.iloc[3] == 30.0  # a minute with no volume leaves it unchanged


def test_other_charts_draw_from_plain_frames(tmp_path: Path) -> None:
    matrix = pd.DataFrame(np.eye(3), index=list("ABC"), columns=list("ABC"))
    profile = pd.DataFrame({"A": [1.0, 2.0], "B": [2.0, 1.0]}, index=["13:30", "14:00"])
    series = pd.Series([3, 1], index=["x", "y"])
    times = pd.DataFrame({"A": [1.0, 2.0]}, index=pd.date_range("2026-01-05 14:00", periods=2, freq="30min", tz="UTC"))
    for name, figure in {
        "heatmap": charts.heatmap(matrix, "correlation"),
        "bars": charts.bar_chart(profile, "profile", "%"),
        "horizontal": charts.bar_chart(series, "counts", "n", horizontal=True),
        "empty": charts.bar_chart(series.iloc[:0], "nothing yet", "n"),
        "lines": charts.line_chart(times, "volatility", "%"),
    }.items():
        assert charts.save_chart(figure, tmp_path / f"{name}.png").stat().st_size > 0
