"""The live dashboard: a Dash app over ``lakehouse.reading``, read-only, served on loopback.

How it stays live and cheap: every ``poll_seconds`` the browser asks the server for the catalog's
metadata pointers (one indexed row per table on a SQL catalog, ``Lakehouse.metadata_pointer``).
A view is re-rendered only when a pointer it depends on moved, and every read is cached under the
pointer of the table it read, so an unchanged table is never read again, however long its
snapshot history. The chart updates in place (no page reload) and keeps the user's zoom.

The producers' figures and Kafka lag are not in the catalog: while the Pipeline tab is open they
are read at every poll (``lakehouse.ops.producer_metrics``, ``lakehouse.ops.kafka_lag``), one read
at a time, with short timeouts of their own.

Every failure to read (no catalog, a missing table, no data yet, an unknown symbol, the catalog
down, Kafka down, a producer's metrics endpoint down) becomes a message on the page; the traceback
goes to the server's log only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

import pandas as pd
from dash import Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import views
from lakehouse.ops.kafka_lag import KafkaUnavailableError, topic_lags
from lakehouse.ops.producer_metrics import ProducerWatch, producer_endpoints
from lakehouse.reading import (
    CatalogUnavailableError,
    Lakehouse,
    MissingCatalogError,
    MissingTableError,
    ReadError,
)
from lakehouse.reading.errors import close_matches
from lakehouse.reading.market import exchange_time_zone
from lakehouse.tables import BARS_1M, FEED_EVENTS, LATE_TRADES, QUARANTINE, TRADES, VENDOR_BARS, TableDef

log = logging.getLogger("dashboard")

MARKET_TABLES: tuple[TableDef, ...] = (BARS_1M, VENDOR_BARS)
PIPELINE_TABLES: tuple[TableDef, ...] = (TRADES, BARS_1M, VENDOR_BARS, LATE_TRADES, QUARANTINE, FEED_EVENTS)
MISSING = "missing"

T = TypeVar("T")


def explain(error: Exception) -> str:
    """What the page says for a failed read: the reading API's own message when it has one."""
    if isinstance(error, CatalogUnavailableError) and not isinstance(error.__cause__, FileNotFoundError):
        return f"The catalog is not answering; the page retries by itself. ({error})"
    if isinstance(error, ReadError):
        return str(error)
    log.exception("unexpected error reading the lakehouse", exc_info=error)
    return f"Unexpected error reading the lakehouse ({type(error).__name__}); the dashboard's log has the details."


class PointerCache:
    """Results of reads, each kept under the metadata pointer(s) of the tables it read: a result is
    reused until one of those pointers moves. Bounded (least recently used goes first)."""

    def __init__(self, size: int = 256) -> None:
        self._results: OrderedDict[Hashable, Any] = OrderedDict()
        self._size = size
        self.reads = 0  # how many reads actually went to the lakehouse (tests and the benchmark look)

    def get(self, key: Hashable, read: Callable[[], T]) -> T:
        if key in self._results:
            self._results.move_to_end(key)
            return self._results[key]
        value = read()
        self.reads += 1
        self._results[key] = value
        if len(self._results) > self._size:
            self._results.popitem(last=False)
        return value


def read_pointers(lake: Lakehouse, tables: tuple[TableDef, ...] = PIPELINE_TABLES) -> dict[str, str]:
    """Each table's metadata pointer, ``"missing"`` for a table that does not exist. Raises
    ``MissingCatalogError`` / ``CatalogUnavailableError`` when there is no catalog to ask."""
    pointers = {}
    for table in tables:
        try:
            pointers[table.name] = lake.metadata_pointer(table)
        except MissingTableError:
            pointers[table.name] = MISSING
    return pointers


@dataclass
class MarketView:
    """What the market tab shows for one choice of symbol, interval, range and zone."""

    figure: Any
    summary: Any
    latest_table: Any
    message: Any
    symbol_options: list[dict[str, str]]
    symbol: str | None


def known_symbols(wanted: str, known: Iterable[str], listed: int = 20) -> str:
    """What an unknown symbol's message offers: the close matches, then the table's symbols (the
    first ``listed`` of them: a lakehouse of thousands would not fit a message)."""
    symbols = sorted(known)
    close = close_matches(wanted, symbols)
    listing = ", ".join(symbols[:listed]) + (f" and {len(symbols) - listed} more" if len(symbols) > listed else "")
    return (f"did you mean {' or '.join(close)}? " if close else "") + f"bars_1m has {listing}"


class Dashboard:
    """The reads behind the page, cached by metadata pointer; ``build_app`` wires them to Dash."""

    def __init__(self, lake: Lakehouse, clock: Callable[[], datetime] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.lake = lake
        self.cache = PointerCache()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._monotonic = monotonic  # when producers were scraped: only differences matter
        page = lake.settings.dashboard
        self._feeds_lock = threading.Lock()
        self._last_feeds: tuple[Any, Any] | None = None
        self.producers = ProducerWatch(producer_endpoints(lake.settings), page.rate_window_seconds,
                                       page.metrics_timeout_seconds)

    # -- market ---------------------------------------------------------------------------------

    def vietnamese_symbols(self, pointers: dict[str, str]) -> set[str]:
        vendor: list[str] = []
        if pointers.get(VENDOR_BARS.name, MISSING) != MISSING:
            vendor = self.cache.get(("symbols", pointers[VENDOR_BARS.name]), lambda: self.lake.symbols(VENDOR_BARS))
        return set(self.lake.settings.vnstock.symbols) | set(vendor)

    def market(self, pointers: dict[str, str], symbol: str | None, interval: str, range_label: str,
               local_time: bool) -> MarketView:
        """Everything the market tab shows; never raises (a failed read is a message)."""
        blank = views.empty_figure("")
        for name, chosen, choices in (("range", range_label, views.RANGES), ("interval", interval, views.INTERVALS)):
            if chosen not in choices:  # the dropdowns offer only these; a hand-made request may not
                message = views.message_box(f"Unknown {name} {chosen!r}: one of {', '.join(choices)}.", "warning")
                return MarketView(blank, None, None, message, [], symbol)
        try:
            bars_pointer = pointers.get(BARS_1M.name, MISSING)
            if bars_pointer == MISSING:
                self.lake.table(BARS_1M)  # raises the reading API's "missing table" message
            latest = self.cache.get(("latest", bars_pointer), self.lake.latest_bar_per_symbol)
            vietnamese = self.vietnamese_symbols(pointers)
            zones = {s: exchange_time_zone(s, vietnamese) for s in latest["symbol"]}
            options = [{"label": f"{s} · {'VN' if zones[s].startswith('Asia') else 'US'}", "value": s}
                       for s in latest["symbol"]]
            if latest.empty:
                message = views.message_box(
                    "No bars yet: the bars table exists but holds no bar. Start the pipeline (`make demo`, or "
                    "`./spark-submit.sh pipeline` with the producers); bars appear here within seconds of their "
                    "commit.", "info")
                return MarketView(views.empty_figure("no bars yet"), None, None, message, [], None)
            if symbol is not None and symbol not in zones and symbol.strip().upper() in zones:
                symbol = symbol.strip().upper()  # typed in lower case: the symbol meant
            if symbol is None or symbol not in zones:
                if symbol is not None:
                    message = views.message_box(f"Unknown symbol {symbol!r}: {known_symbols(symbol, zones)}.",
                                                "warning")
                    return MarketView(views.empty_figure(f"no bars for {symbol}"), None,
                                      views.latest_bars_table(latest, zones, local_time), message, options, None)
                symbol = str(latest["symbol"].iloc[0])
            zone = zones[symbol] if local_time else "UTC"
            newest = latest[latest["symbol"] == symbol].iloc[0]
            end = pd.Timestamp(newest["window_end"])
            start = end - views.RANGES[range_label]
            bars = self.cache.get(("bars", bars_pointer, symbol, interval, start, end),
                                  lambda: self.lake.bars(symbol, start, end, interval))
            vendor = None
            vendor_pointer = pointers.get(VENDOR_BARS.name, MISSING)
            if vendor_pointer != MISSING and symbol in vietnamese:
                vendor = self.cache.get(("vendor", vendor_pointer, symbol, interval, start, end),
                                        lambda: self.lake.vendor_bars(symbol, start, end, interval))
            message = None
            if bars.empty:
                message = views.message_box(f"No {interval} bars for {symbol} in the chosen range.", "info")
            figure = views.candlestick_figure(bars, symbol, interval, zone, vendor)
            return MarketView(figure, views.latest_bar_summary(newest, zone),
                              views.latest_bars_table(latest, zones, local_time), message, options, symbol)
        except Exception as error:  # every failure is shown, never raised into Dash
            return MarketView(blank, None, None, views.message_box(explain(error), "error"), [], symbol)

    # -- pipeline -------------------------------------------------------------------------------

    def pipeline(self, pointers: dict[str, str]) -> tuple[Any, Any, Any, Any]:
        """(table ages, quarantine by reason, late trades per symbol, feed gaps) as page parts."""
        now = pd.Timestamp(self._clock()).tz_convert("UTC")
        records = []
        for table in PIPELINE_TABLES:
            pointer = pointers.get(table.name, MISSING)
            if pointer == MISSING:
                records.append({"table": table.name, "exists": False})
                continue
            try:
                row = self.cache.get(("age", pointer), lambda t=table: self.lake.table_ages([t]).iloc[0].to_dict())
            except Exception as error:
                records.append({"table": table.name, "exists": True, "note": explain(error)})
                continue
            records.append(row)
        ages = pd.DataFrame.from_records(records)
        for column in ("newest_event_time", "rows", "snapshots", "note"):
            if column not in ages:
                ages[column] = None
        ages["newest_event_time"] = pd.to_datetime(ages["newest_event_time"], utc=True)
        for column in ("rows", "snapshots"):  # counts, not floats, though a missing table has none
            ages[column] = pd.to_numeric(ages[column]).astype("Int64")
        ages["age"] = now - ages["newest_event_time"]
        ages["exists"] = ages["exists"].map({True: "yes", False: "no (not created yet)"})
        ages_part = views.frame_table(ages, ["table", "exists", "newest_event_time", "age", "rows", "snapshots",
                                             "note"], "", "table-ages")
        parts = [ages_part]
        for table, read, columns, empty, href in (
            (QUARANTINE, self.lake.quarantine_counts, ["topic", "reason", "messages", "first_seen", "last_seen"],
             "No message quarantined.", lambda row: example_href("quarantine", topic=row["topic"],
                                                                  reason=row["reason"])),
            (LATE_TRADES, self.lake.late_trade_counts,
             ["symbol", "late_trades", "first_event_time", "last_event_time", "max_delay"], "No late trade.",
             lambda row: example_href("late", symbol=row["symbol"])),
            (FEED_EVENTS, self.lake.feed_gaps, ["source", "symbol", "start_time", "end_time", "duration", "reason"],
             "No feed gap recorded.", None),
        ):
            pointer = pointers.get(table.name, MISSING)
            if pointer == MISSING:
                parts.append(views.message_box(f"Table {table.name} does not exist yet.", "info"))
                continue
            try:
                frame = self.cache.get((table.name, pointer), read)
                parts.append(views.frame_table(frame, columns, empty, f"{table.name}-table", href))
            except Exception as error:
                parts.append(views.message_box(explain(error), "error"))
        return parts[0], parts[1], parts[2], parts[3]

    def feeds(self) -> tuple[Any, Any] | None:
        """(producers, Kafka lag) as page parts; they need neither the catalog nor each other, and
        a part that does not answer is a message in its own panel.

        One read at a time: a poll that comes while a read is under way (Kafka down takes its whole
        timeout, longer than a poll) gets the last finished result at once, or None before there is
        one. Without that, the browser, which drops the answer to a request that a newer poll
        overtook, would never show a read slower than the poll interval."""
        if not self._feeds_lock.acquire(blocking=False):
            return self._last_feeds
        try:
            self._last_feeds = self._read_feeds()
            return self._last_feeds
        finally:
            self._feeds_lock.release()

    def _read_feeds(self) -> tuple[Any, Any]:
        producers = views.producer_table(self.producers.figures(self._monotonic()))
        try:
            lags = topic_lags(self.lake.settings, self.lake.settings.dashboard.kafka_timeout_seconds)
            lag_part: Any = views.lag_table(lags)
        except KafkaUnavailableError as error:
            lag_part = views.message_box(f"Kafka is not answering, so no lag can be measured; the page asks again "
                                         f"at the next poll. ({error})", "error")
        except Exception as error:
            lag_part = views.message_box(explain(error), "error")
        return producers, lag_part

    def example(self, pointers: dict[str, str] | None, search: str | None) -> Any:
        """The example row a link in the quarantine or late-trades table asked for (the URL's
        query), or None when no example is asked for."""
        query = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items()}
        kind = query.get("example")
        if kind not in EXAMPLES:
            return None
        table, title = EXAMPLES[kind]
        pointer = (pointers or {}).get(table.name, MISSING)
        try:
            if pointer == MISSING:
                self.lake.table(table)  # raises the reading API's "missing table" message
            if kind == "quarantine":
                topic, reason = query.get("topic", ""), query.get("reason", "")
                row = self.cache.get(("example", pointer, topic, reason),
                                     lambda: self.lake.quarantine_example(topic, reason))
                wanted = f"topic {topic!r}, reason {reason!r}"
            else:
                symbol = query.get("symbol", "")
                row = self.cache.get(("example", pointer, symbol), lambda: self.lake.late_trade_example(symbol))
                wanted = f"symbol {symbol!r}"
        except Exception as error:
            return views.message_box(explain(error), "error")
        if row is None:
            return views.message_box(f"No row in {table.name} for {wanted} (any more).", "warning")
        raw = ("raw_key", "raw_value") if kind == "quarantine" else ()
        return views.example_view(f"{title}: {wanted}", row, raw)


EXAMPLES: dict[str, tuple[TableDef, str]] = {
    "quarantine": (QUARANTINE, "A quarantined message"),
    "late": (LATE_TRADES, "A late trade"),
}


def example_href(kind: str, **query: str) -> str:
    """The link to one example row of ``kind`` (a key of ``EXAMPLES``): a query on the same page."""
    return "?" + urlencode({"example": kind, **query})

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; background: #fafafa; color: #222; }
header { display: flex; gap: 1.5em; align-items: center; padding: .6em 1em; background: #263238; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
#status { font-size: .85em; opacity: .85; }
.controls { display: flex; gap: 1em; flex-wrap: wrap; align-items: center; padding: .6em 1em; }
.controls > div { min-width: 160px; }
.message { margin: .5em 1em; padding: .6em .8em; border-radius: 4px; }
.message.info { background: #e3f2fd; } .message.warning { background: #fff8e1; } .message.error { background: #ffebee; }
.grid { border-collapse: collapse; margin: .5em 1em; font-size: .9em; }
.grid th, .grid td { border-bottom: 1px solid #ddd; padding: .25em .7em; text-align: right; }
.grid th:first-child, .grid td:first-child { text-align: left; }
#latest-bar { padding: .3em 1em; font-variant-numeric: tabular-nums; }
#latest-bar .field { margin-left: 1em; }
.note { margin: .5em 1em; color: #555; }
h2 { font-size: 1.05em; margin: 1em 1em .2em; }
h3 { font-size: .95em; margin: 1em 1em .2em; }
td.problem { text-align: left; color: #b71c1c; }
#example-row { margin: .5em 0; border-top: 2px solid #263238; }
#example-row > div { margin: 0 1em; }
pre.raw { margin: .3em 1em; padding: .5em; background: #263238; color: #eceff1; white-space: pre-wrap;
          word-break: break-all; }
"""


def build_app(lake: Lakehouse, poll_seconds: float = 2.0, dashboard: Dashboard | None = None) -> Dash:
    """The Dash app; ``dashboard`` (default: a new one over ``lake``) holds the cached reads."""
    board = dashboard or Dashboard(lake)
    app = Dash(__name__, title="Market lakehouse", update_title=None)
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + STYLE + "</style>")
    app.layout = html.Div([
        html.Header([
            html.H1("Market lakehouse"),
            html.Span("connecting…", id="status"),
            dcc.RadioItems(id="zone", options=[{"label": " UTC", "value": "utc"},
                                               {"label": " exchange time", "value": "local"}],
                           value="utc", inline=True, inputStyle={"marginLeft": "1em"}, labelStyle={"color": "#fff"}),
        ]),
        html.Div(id="catalog-message"),
        dcc.Tabs(id="tabs", value="market", children=[
            dcc.Tab(label="Market", value="market", children=[
                html.Div([
                    html.Div(dcc.Dropdown(id="symbol", options=[], placeholder="symbol (type to search)",
                                          searchable=True, clearable=False)),
                    dcc.RadioItems(id="interval", options=list(views.INTERVALS), value="1m", inline=True,
                                   inputStyle={"marginLeft": ".8em"}),
                    html.Div(dcc.Dropdown(id="range", options=list(views.RANGES), value="1 day", clearable=False)),
                ], className="controls"),
                html.Div(id="market-message"),
                html.Div(id="latest-summary"),
                dcc.Graph(id="chart", figure=views.empty_figure("waiting for the lakehouse…"),
                          config={"displaylogo": False}),
                html.H2("Newest bar per symbol, with its change on the (UTC) day"),
                html.Div(id="latest-table"),
            ]),
            dcc.Tab(label="Pipeline", value="pipeline", children=[
                html.H2("Tables: newest event time and its age (now minus that time)"),
                html.Div(id="pipeline-ages"),
                html.H2("Producers (from their Prometheus endpoints)"),
                html.Div(html.Div("asking the producers…", className="note"), id="producer-metrics"),
                html.H2("Kafka lag per topic and job (broker end offsets minus the job's committed checkpoint)"),
                html.Div(html.Div("asking Kafka…", className="note"), id="kafka-lag-panel"),
                html.H2("Quarantined messages by reason"),
                html.Div(id="pipeline-quarantine"),
                html.H2("Late trades per symbol"),
                html.Div(id="pipeline-late"),
                html.Div(id="pipeline-example"),
                html.H2("Feed gaps"),
                html.Div(id="pipeline-gaps"),
            ]),
        ]),
        dcc.Interval(id="poll", interval=int(poll_seconds * 1000)),
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="pointers"),
    ])

    @app.callback(Output("pointers", "data"), Output("status", "children"), Output("catalog-message", "children"),
                  Input("poll", "n_intervals"), State("pointers", "data"))
    def poll(_: int | None, known: dict[str, str] | None) -> tuple[Any, Any, Any]:
        checked = datetime.now(UTC).strftime("%H:%M:%S UTC")
        try:
            pointers = read_pointers(board.lake)
        except (MissingCatalogError, CatalogUnavailableError) as error:
            return no_update, f"catalog unavailable · checked {checked}", views.message_box(explain(error), "error")
        except Exception as error:
            return no_update, f"error · checked {checked}", views.message_box(explain(error), "error")
        status = f"live · checked {checked}"
        if pointers == known:
            return no_update, status, None
        return pointers, status, None

    @app.callback(Output("chart", "figure"), Output("latest-summary", "children"), Output("latest-table", "children"),
                  Output("market-message", "children"), Output("symbol", "options"), Output("symbol", "value"),
                  Input("pointers", "data"), Input("symbol", "value"), Input("interval", "value"),
                  Input("range", "value"), Input("zone", "value"))
    def market(pointers: dict[str, str] | None, symbol: str | None, interval: str, range_label: str,
               zone: str) -> tuple[Any, ...]:
        if pointers is None:
            raise PreventUpdate
        view = board.market(pointers, symbol, interval, range_label, zone == "local")
        return (view.figure, view.summary, view.latest_table, view.message, view.symbol_options,
                view.symbol if view.symbol != symbol else no_update)

    @app.callback(Output("pipeline-ages", "children"), Output("pipeline-quarantine", "children"),
                  Output("pipeline-late", "children"), Output("pipeline-gaps", "children"),
                  Input("pointers", "data"), Input("poll", "n_intervals"), Input("tabs", "value"))
    def pipeline(pointers: dict[str, str] | None, _: int | None, tab: str) -> tuple[Any, ...]:
        if pointers is None or tab != "pipeline":
            raise PreventUpdate  # ages are recomputed on every poll, but only while the tab is open
        return board.pipeline(pointers)

    @app.callback(Output("producer-metrics", "children"), Output("kafka-lag-panel", "children"),
                  Input("poll", "n_intervals"), Input("tabs", "value"))
    def feeds(_: int | None, tab: str) -> tuple[Any, ...]:
        if tab != "pipeline":
            raise PreventUpdate  # producers and Kafka are asked only while someone looks
        return board.feeds() or (no_update, no_update)

    @app.callback(Output("pipeline-example", "children"), Input("url", "search"), Input("pointers", "data"))
    def example(search: str | None, pointers: dict[str, str] | None) -> Any:
        return board.example(pointers, search)

    return app
