"""What the page shows, as pure functions of what was read: DataFrames in, Plotly figures and Dash
components out. No reads here (those go through ``lakehouse.reading``), so every view and every
message is tested without a server or a browser.

Times arrive tz-aware in UTC; ``time_zone`` is the zone they are shown in (``"UTC"`` or the
exchange's), and every label says which.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from dash import dcc, html

from lakehouse.reading.market import session_vwap

# Range picker choices: label -> length, ending at the symbol's newest bar.
RANGES: dict[str, pd.Timedelta] = {
    "1 hour": pd.Timedelta(hours=1),
    "4 hours": pd.Timedelta(hours=4),
    "1 day": pd.Timedelta(days=1),
    "5 days": pd.Timedelta(days=5),
    "30 days": pd.Timedelta(days=30),
}
INTERVALS = ("1m", "5m", "15m", "1h", "1d")
UP, DOWN, VENDOR = "#26a69a", "#ef5350", "#7e57c2"


def format_price(value: float | None) -> str:
    """Prices as the page prints them (and the browser test reads them back)."""
    return "" if value is None or pd.isna(value) else f"{value:,.2f}"


def format_volume(value: float | None) -> str:
    return "" if value is None or pd.isna(value) else f"{value:,.0f}"


def format_time(moment: pd.Timestamp | None, time_zone: str) -> str:
    if moment is None or pd.isna(moment):
        return ""
    return pd.Timestamp(moment).tz_convert(time_zone).strftime("%Y-%m-%d %H:%M")


def candlestick_figure(
    bars: pd.DataFrame, symbol: str, interval: str, time_zone: str, vendor_bars: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Candlesticks with volume below and the session VWAP over them; the vendor's own bars (when
    given and not empty) as a second, outlined set of candles beside ours.

    A plain Plotly figure dict: building ``plotly.graph_objects`` validates every property against
    the schema and copies the template, which cost more than reading the bars did."""
    x = _wall_clock(bars["window_start"], time_zone)
    data: list[dict[str, Any]] = [
        {"type": "candlestick", "name": f"{symbol} (ours)", "x": x, "open": _values(bars["open"]),
         "high": _values(bars["high"]), "low": _values(bars["low"]), "close": _values(bars["close"]),
         "increasing": {"line": {"color": UP}}, "decreasing": {"line": {"color": DOWN}}, "xaxis": "x", "yaxis": "y"},
        {"type": "scatter", "mode": "lines", "name": "session VWAP", "x": x, "y": _values(session_vwap(bars)),
         "line": {"color": "#ff9800", "width": 1.5}, "xaxis": "x", "yaxis": "y"},
    ]
    if vendor_bars is not None and not vendor_bars.empty:
        hollow = {"line": {"color": VENDOR}, "fillcolor": "rgba(0,0,0,0)"}
        data.append({"type": "candlestick", "name": f"{symbol} (vendor: vnstock)",
                     "x": _wall_clock(vendor_bars["bar_start"], time_zone), "open": _values(vendor_bars["open"]),
                     "high": _values(vendor_bars["high"]), "low": _values(vendor_bars["low"]),
                     "close": _values(vendor_bars["close"]), "increasing": hollow, "decreasing": hollow,
                     "opacity": 0.7, "xaxis": "x", "yaxis": "y"})
    colours = [UP if c >= o else DOWN for o, c in zip(bars["open"], bars["close"], strict=True)]
    data.append({"type": "bar", "name": "volume", "x": x, "y": _values(bars["volume"]),
                 "marker": {"color": colours}, "showlegend": False, "xaxis": "x2", "yaxis": "y2"})
    grid = {"gridcolor": "#eee", "zeroline": False}
    layout = {
        "title": {"text": f"{symbol} · {interval} bars · times in {time_zone}"},
        "height": 560, "margin": {"l": 60, "r": 20, "t": 50, "b": 30},
        "legend": {"orientation": "h", "y": 1.02, "x": 0},
        "plot_bgcolor": "white", "paper_bgcolor": "white", "hovermode": "x",
        "xaxis": {**grid, "anchor": "y", "matches": "x2", "showticklabels": False, "rangeslider": {"visible": False}},
        "yaxis": {**grid, "domain": [0.28, 1.0], "title": {"text": "price"}},
        "xaxis2": {**grid, "anchor": "y2"},
        "yaxis2": {**grid, "domain": [0.0, 0.24], "title": {"text": "volume"}},
        "uirevision": f"{symbol}|{interval}|{time_zone}",  # keeps the user's zoom across live updates
    }
    return {"data": data, "layout": layout}


def _wall_clock(times: pd.Series, time_zone: str) -> list[str]:
    """UTC instants as wall-clock times in ``time_zone``, as text without the zone (Plotly draws
    naive times as given; a zoned one it would shift to the browser's zone)."""
    return list(times.dt.tz_convert(time_zone).dt.strftime("%Y-%m-%d %H:%M:%S"))


def _values(column: pd.Series) -> list[float | None]:
    return [None if pd.isna(v) else float(v) for v in column]


def empty_figure(message: str) -> dict[str, Any]:
    hidden = {"visible": False}
    return {"data": [], "layout": {"height": 560, "xaxis": hidden, "yaxis": hidden, "plot_bgcolor": "white",
                                   "annotations": [{"text": message, "showarrow": False, "font": {"size": 15}}]}}


def latest_bar_summary(bar: pd.Series, time_zone: str) -> html.Div:
    """One line with the newest bar's numbers; each number in an element the browser test reads."""
    def field(name: str, value: str) -> html.Span:
        return html.Span([html.B(f"{name} "), html.Span(value, id=f"latest-{name.lower()}")], className="field")

    return html.Div([
        html.Span(f"{bar['symbol']} · newest 1m bar {format_time(bar['window_start'], time_zone)}", id="latest-title"),
        field("O", format_price(bar["open"])), field("H", format_price(bar["high"])),
        field("L", format_price(bar["low"])), field("C", format_price(bar["close"])),
        field("V", format_volume(bar["volume"])),
    ], id="latest-bar", **{"data-window-start": pd.Timestamp(bar["window_start"]).isoformat()})


def latest_bars_table(latest: pd.DataFrame, time_zones: dict[str, str], show_local: bool) -> html.Table:
    """The newest bar of every symbol with its change on the day (rows carry ``data-symbol``)."""
    header = html.Tr([html.Th(h) for h in ("symbol", "bar start", "open", "high", "low", "close", "volume",
                                           "change", "change %")])
    rows = []
    for bar in latest.itertuples(index=False):
        zone = time_zones.get(bar.symbol, "UTC") if show_local else "UTC"
        colour = UP if bar.change >= 0 else DOWN
        rows.append(html.Tr([
            html.Td(bar.symbol), html.Td(f"{format_time(bar.window_start, zone)} {zone}"),
            html.Td(format_price(bar.open)), html.Td(format_price(bar.high)), html.Td(format_price(bar.low)),
            html.Td(format_price(bar.close), className="close"), html.Td(format_volume(bar.volume)),
            html.Td(f"{bar.change:+,.2f}", style={"color": colour}),
            html.Td(f"{bar.change_pct:+.2f}%", style={"color": colour}),
        ], **{"data-symbol": bar.symbol}))
    return html.Table([html.Thead(header), html.Tbody(rows)], className="grid")


def frame_table(frame: pd.DataFrame, columns: Sequence[str], empty: str, table_id: str,
                example_href: Callable[[pd.Series], str] | None = None) -> html.Div | html.Table:
    """A plain table of ``columns`` (times as UTC text, timedeltas rounded to seconds); with
    ``example_href``, a last column links each row to an example of what it counts (in-page
    navigation: the link changes the URL's query, no reload)."""
    if frame.empty:
        return html.Div(empty, className="note", id=table_id)
    def cell(value: object) -> str:
        if value is None or value is pd.NaT or value is pd.NA:
            return ""
        if isinstance(value, pd.Timestamp):
            return "" if pd.isna(value) else value.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S UTC")
        if isinstance(value, pd.Timedelta):
            return "" if pd.isna(value) else format_age(value)
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return ""
        return str(value)
    head = html.Tr([html.Th(c.replace("_", " ")) for c in columns] + ([html.Th("example")] if example_href else []))
    body = []
    for _, row in frame.iterrows():
        cells = [html.Td(cell(row[c])) for c in columns]
        if example_href:
            cells.append(html.Td(dcc.Link("show one", href=example_href(row), className="example-link")))
        body.append(html.Tr(cells))
    return html.Table([html.Thead(head), html.Tbody(body)], className="grid", id=table_id)


def format_age(age: pd.Timedelta) -> str:
    """An age as a person reads it at a glance: seconds, then minutes, hours, days."""
    seconds = int(age.total_seconds())
    if abs(seconds) < 120:
        return f"{seconds} s"
    if abs(seconds) < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if abs(seconds) < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def message_box(text: str, kind: str = "info") -> html.Div:
    """A message where the chart or table would be: what is wrong and what to do."""
    return html.Div(text, className=f"message {kind}", role="status")


# -- pipeline: producers, Kafka, example rows ------------------------------------------------------


def format_rate(messages: float, seconds: float) -> str:
    """Messages per second as the page prints it (and the browser test recomputes it)."""
    return f"{messages / seconds:,.1f}/s"


def producer_table(figures: Sequence[Any]) -> html.Table:
    """A row per producer (``lakehouse.ops.producer_metrics.ProducerFigures``): messages Kafka
    acknowledged, the windowed rate, reconnects, feed gaps, the last trade's age (what the
    feed-stalled alert judges) and the last message's (pings too: a feed that pings and sends no
    trade is stalled though its messages are fresh); or why there are no figures. Each row carries
    ``data-source`` and, when measured, the window's messages and seconds."""
    head = html.Tr([html.Th(h) for h in ("producer", "messages acked", "messages/s", "in window", "reconnects",
                                         "feed gaps", "quarantined", "last trade", "last message (pings too)")])
    rows = []
    for shown in figures:
        source = shown.endpoint.source
        if shown.reading is None:
            rows.append(html.Tr([html.Td(source), html.Td(shown.problem, colSpan=8, className="problem")],
                                **{"data-source": source}))
            continue
        reading = shown.reading
        attributes = {"data-source": source, "data-messages": f"{reading.messages:.0f}"}
        if shown.window is None:
            rate, window = "measuring…", "first scrape"
        else:
            messages, seconds = shown.window
            rate, window = format_rate(messages, seconds), f"{messages:,.0f} msgs in {seconds:.1f} s"
            attributes |= {"data-window-messages": f"{messages:.0f}", "data-window-seconds": repr(seconds)}
        age = reading.last_message_age_seconds
        rows.append(html.Tr([
            html.Td(source), html.Td(format_volume(reading.messages), className="messages"),
            html.Td(rate, className="rate"), html.Td(window), html.Td(f"{reading.reconnects:.0f}"),
            html.Td(f"{reading.feed_gaps:.0f}"), html.Td(f"{reading.quarantined:.0f}"),
            html.Td(last_trade_text(reading.last_trade_age_seconds, reading.traded), className="last-trade"),
            html.Td("nothing yet" if age is None else f"{format_age(pd.Timedelta(seconds=age))} ago"),
        ], **attributes))
    return html.Table([html.Thead(head), html.Tbody(rows)], className="grid", id="producer-table")


def last_trade_text(age_seconds: float | None, traded: bool) -> str:
    """The trade age as the producer exports it: since the last trade, or since its start."""
    if age_seconds is None:
        return "not exported"  # a producer older than the trade-age gauge
    age = format_age(pd.Timedelta(seconds=age_seconds))
    return f"{age} ago" if traded else f"none since the start, {age} ago"


def lag_table(lags: Sequence[Any]) -> html.Table:
    """A row per topic and job reading it (``lakehouse.ops.kafka_lag.TopicLag``); rows carry
    ``data-topic`` and ``data-job``, the lag cell the class ``lag``."""
    head = html.Tr([html.Th(h) for h in ("topic", "partitions", "end offset", "job", "committed", "batch",
                                         "lag (messages)")])
    rows = []
    for lag in lags:
        if lag.job is None:
            job = "no job's checkpoint reads it" if lag.partitions else "no such topic on the broker"
            cells = [html.Td(job), html.Td(""), html.Td(""), html.Td("", className="lag")]
        else:
            cells = [html.Td(lag.job), html.Td(f"{lag.committed_offset:,}"), html.Td(str(lag.batch_id)),
                     html.Td(f"{lag.lag:,}", className="lag")]
        rows.append(html.Tr([html.Td(lag.topic), html.Td(str(lag.partitions)), html.Td(f"{lag.end_offset:,}"),
                             *cells], **{"data-topic": lag.topic, "data-job": lag.job or ""}))
    return html.Table([html.Thead(head), html.Tbody(rows)], className="grid", id="kafka-lag")


def raw_text(value: bytes | None) -> str:
    """A message's bytes as text: UTF-8 where it is, ``\\xNN`` escapes where it is not."""
    if value is None:
        return "(none)"
    return bytes(value).decode("utf-8", errors="backslashreplace")


def example_view(title: str, row: dict[str, Any], raw_columns: Sequence[str] = ()) -> html.Div:
    """One stored row, column by column; ``raw_columns`` (bytes) shown as text in their own block,
    with the id ``example-<column>`` (the browser test reads ``example-raw_value``)."""
    def cell(value: Any) -> str:
        if isinstance(value, datetime):
            return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S.%f UTC")
        return "" if value is None else str(value)

    fields = [html.Tr([html.Th(name.replace("_", " ")), html.Td(cell(value), id=f"example-{name}")])
              for name, value in row.items() if name not in raw_columns]
    raw = [html.Div([html.B(name.replace("_", " ") + " (as text)"),
                     html.Pre(raw_text(row.get(name)), id=f"example-{name}", className="raw")])
           for name in raw_columns]
    return html.Div([html.H3(title), html.Table(html.Tbody(fields), className="grid"), *raw], id="example-row")
