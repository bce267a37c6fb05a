"""The dashboard's reads and views against a real embedded Iceberg catalog, without a browser: what
each view shows, that an unchanged table is not read again, and the message for every bad state.

The lakehouse is written with the project's own writers (``lakehouse.reading.synthetic``), as the
reader tests do; ``tests/test_dashboard_browser.py`` looks at the served page in Chromium.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from dash import dcc, html
from prometheus_client import CollectorRegistry

from dashboard import views
from dashboard.app import MISSING, Dashboard, build_app, read_pointers
from lakehouse.catalog import prepare_catalog
from lakehouse.local.processes import free_port, wait_until
from lakehouse.messages import Source, Trade, trade_id
from lakehouse.ops.metrics_http import serve_metrics
from lakehouse.ops.producer_metrics import MessageRate, ProducerReading
from lakehouse.ops.status_probe import end_offsets
from lakehouse.reading import CatalogUnavailableError, Lakehouse, MissingCatalogError, synthetic
from lakehouse.reading.market import session_vwap
from lakehouse.settings import Settings, load_settings
from lakehouse.tables import LATE_TRADES, QUARANTINE, TRADES, VENDOR_BARS
from lakehouse.times import now_ms as now_epoch_ms
from producers.kafka_sink import KafkaSink, SinkConfig
from producers.metrics import ProducerCollector
from producers.progress import FeedCounters
from tests.kafka_helpers import new_topic, publish

DAY = synthetic.DEMO_DAY
SYMBOLS = ("AAPL", "MSFT", "VCB")
NOW = datetime(2026, 1, 5, 20, 10, tzinfo=UTC)


def embedded_settings(state_dir: Path) -> Settings:
    return load_settings(environ={
        "LAKEHOUSE__LOCAL__STATE_DIR": str(state_dir),
        "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state_dir}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": str(state_dir / "warehouse"),
    })


def vendor_rows(symbol: str, bars: pd.DataFrame) -> pd.DataFrame:
    """The vendor's 1-minute bars for ``symbol``: ours shifted by a cent, as a vendor's differ."""
    own = bars[bars["symbol"] == symbol]
    return pd.DataFrame({
        "source": "vnstock", "symbol": symbol, "interval": "1m", "bar_start": own["window_start"],
        "open": own["open"] + 0.01, "high": own["high"] + 0.01, "low": own["low"] + 0.01,
        "close": own["close"] + 0.01, "volume": own["volume"], "received_time": own["window_end"],
        "ingested_time": own["window_end"],
    })


@pytest.fixture(scope="module")
def demo_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = embedded_settings(tmp_path_factory.mktemp("dashboard-lakehouse"))
    synthetic.write_demo_lakehouse(settings, symbols=SYMBOLS, day=DAY, commits=2)
    lake = Lakehouse(settings)
    bars = lake.bars(list(SYMBOLS), DAY, DAY + timedelta(days=1))
    synthetic.append_rows(lake.table(VENDOR_BARS), synthetic._arrow(vendor_rows("VCB", bars), VENDOR_BARS))
    return settings


@pytest.fixture
def board(demo_settings: Settings) -> Dashboard:
    return Dashboard(Lakehouse(demo_settings, clock=lambda: NOW), clock=lambda: NOW)


def texts(component: object) -> str:
    """All the text a Dash component tree shows, as one string."""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(texts(c) for c in component)
    children = getattr(component, "children", None)
    return "" if children is None else texts(children)


def candlesticks(figure: dict) -> list[dict]:
    return [trace for trace in figure["data"] if trace["type"] == "candlestick"]


def by_id(component: object, wanted: str) -> object | None:
    if getattr(component, "id", None) == wanted:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str):
            found = by_id(child, wanted)
            if found is not None:
                return found
    return None


# -- market view ------------------------------------------------------------------------------


def test_the_market_view_draws_the_symbols_bars_and_shows_the_newest_bar_of_bars_1m(board: Dashboard) -> None:
    view = board.market(read_pointers(board.lake), "AAPL", "1m", "1 day", local_time=False)
    stored = board.lake.bars("AAPL", DAY, DAY + timedelta(days=1))
    newest = stored.iloc[-1]

    candles = candlesticks(view.figure)
    assert view.message is None
    assert len(candles) == 1 and len(candles[0]["x"]) == len(stored)
    assert candles[0]["close"] == list(stored["close"])
    assert texts(by_id(view.summary, "latest-c")) == views.format_price(newest["close"])
    assert texts(by_id(view.summary, "latest-v")) == views.format_volume(newest["volume"])
    assert [o["value"] for o in view.symbol_options] == sorted(SYMBOLS)


def test_coarser_intervals_are_the_readers_rollup(board: Dashboard) -> None:
    view = board.market(read_pointers(board.lake), "MSFT", "15m", "1 day", local_time=False)
    expected = board.lake.bars("MSFT", DAY, DAY + timedelta(days=1), "15m")

    assert candlesticks(view.figure)[0]["high"] == list(expected["high"])
    assert len(expected) == 26  # 6.5 hours of session


def test_the_exchange_time_switch_shows_new_york_and_ho_chi_minh_wall_clock(board: Dashboard) -> None:
    pointers = read_pointers(board.lake)
    utc = board.market(pointers, "AAPL", "1m", "1 day", local_time=False).figure["data"][0]["x"][0]
    new_york = board.market(pointers, "AAPL", "1m", "1 day", local_time=True).figure["data"][0]["x"][0]
    ho_chi_minh = board.market(pointers, "VCB", "1m", "1 day", local_time=True).figure["data"][0]["x"][0]

    assert pd.Timestamp(utc) == pd.Timestamp(synthetic.session_open(DAY)).tz_localize(None)
    assert pd.Timestamp(new_york) == pd.Timestamp(utc) - pd.Timedelta(hours=5)  # EST in January
    assert pd.Timestamp(ho_chi_minh) == pd.Timestamp(utc) + pd.Timedelta(hours=7)


def test_vendor_bars_are_drawn_beside_ours_for_a_vietnamese_symbol_only(board: Dashboard) -> None:
    pointers = read_pointers(board.lake)
    vcb = board.market(pointers, "VCB", "1m", "1 day", local_time=False).figure
    aapl = board.market(pointers, "AAPL", "1m", "1 day", local_time=False).figure

    assert [t["name"] for t in candlesticks(vcb)] == ["VCB (ours)", "VCB (vendor: vnstock)"]
    assert [t["name"] for t in candlesticks(aapl)] == ["AAPL (ours)"]


def test_the_latest_table_gives_each_symbols_change_on_the_day(board: Dashboard) -> None:
    latest = board.lake.latest_bar_per_symbol()
    day = board.lake.bars(list(SYMBOLS), DAY, DAY + timedelta(days=1))
    first_open = day.groupby("symbol")["open"].first()
    last_close = day.groupby("symbol")["close"].last()

    assert list(latest["symbol"]) == sorted(SYMBOLS)
    assert latest.set_index("symbol")["change"].to_dict() == pytest.approx((last_close - first_open).to_dict())


def test_session_vwap_is_cumulative_within_each_utc_day() -> None:
    starts = pd.to_datetime(["2026-01-05 14:30", "2026-01-05 14:31", "2026-01-06 14:30"], utc=True)
    bars = pd.DataFrame({"symbol": "AAPL", "window_start": starts, "vwap": [10.0, 20.0, 30.0],
                         "volume": [100.0, 300.0, 50.0]})
    assert list(session_vwap(bars)) == [10.0, 17.5, 30.0]


def test_an_unchanged_table_is_not_read_again_and_a_commit_is_read_once(demo_settings: Settings,
                                                                          tmp_path: Path) -> None:
    board = Dashboard(Lakehouse(demo_settings))
    pointers = read_pointers(board.lake)
    board.market(pointers, "AAPL", "1m", "1 day", local_time=False)
    reads = board.cache.reads

    for _ in range(3):
        assert read_pointers(board.lake) == pointers
        board.market(read_pointers(board.lake), "AAPL", "1m", "1 day", local_time=False)
    assert board.cache.reads == reads

    moved = dict(pointers, bars_1m=pointers["bars_1m"] + "#another-commit")
    board.market(moved, "AAPL", "1m", "1 day", local_time=False)
    assert board.cache.reads == reads + 2  # the newest bars, and the chart's range; vendor bars untouched


# -- bad states -------------------------------------------------------------------------------


def test_no_catalog_says_how_to_make_one_and_creates_none(tmp_path: Path) -> None:
    lake = Lakehouse(embedded_settings(tmp_path / "none"))
    with pytest.raises(MissingCatalogError, match="make demo"):
        read_pointers(lake)
    assert not (tmp_path / "none").exists()


def test_missing_tables_are_named_with_the_job_that_creates_them(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    prepare_catalog(settings)
    board = Dashboard(Lakehouse(settings))
    pointers = read_pointers(board.lake)

    view = board.market(pointers, None, "1m", "1 day", local_time=False)

    assert set(pointers.values()) == {MISSING}
    assert "bars_1m does not exist" in texts(view.message)
    assert "the bars job" in texts(view.message)
    assert "not exist yet" in texts(board.pipeline(pointers)[1])


def test_an_empty_bars_table_says_no_bars_yet(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    synthetic.create_tables(settings)
    board = Dashboard(Lakehouse(settings))

    view = board.market(read_pointers(board.lake), None, "1m", "1 day", local_time=False)

    assert texts(view.message).startswith("No bars yet")
    assert view.symbol_options == []


def test_an_unknown_symbol_lists_the_known_ones(board: Dashboard) -> None:
    view = board.market(read_pointers(board.lake), "APPL", "1m", "1 day", local_time=False)
    assert "Unknown symbol 'APPL'" in texts(view.message)
    assert "did you mean AAPL?" in texts(view.message)
    assert "AAPL, MSFT, VCB" in texts(view.message)


def test_a_symbol_typed_in_lower_case_is_the_symbol_meant(board: Dashboard) -> None:
    view = board.market(read_pointers(board.lake), " msft", "1m", "1 day", local_time=False)
    assert view.symbol == "MSFT" and view.message is None


@pytest.mark.parametrize(("interval", "range_label", "said"), [
    ("1m", None, "Unknown range None: one of 1 hour, 4 hours, 1 day"),
    ("1m", "1 year", "Unknown range '1 year'"),
    ("2m", "1 day", "Unknown interval '2m': one of 1m, 5m, 15m, 1h, 1d"),
])
def test_a_range_or_interval_the_page_does_not_offer_is_a_message(
    board: Dashboard, interval: str, range_label: str | None, said: str
) -> None:
    """Only a hand-made request to the page's callback can carry one: it got 'Unexpected error (KeyError)'."""
    view = board.market(read_pointers(board.lake), "AAPL", interval, range_label, local_time=False)
    assert said in texts(view.message)


def test_a_catalog_that_does_not_answer_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: a REST catalog that is down
    settings = load_settings(environ={"LAKEHOUSE__CATALOG__TYPE": "rest",
                                      "LAKEHOUSE__CATALOG__URI": f"http://127.0.0.1:{port}",
                                      "LAKEHOUSE__CATALOG__WAREHOUSE": str(tmp_path / "warehouse")})
    board = Dashboard(Lakehouse(settings))

    with pytest.raises(CatalogUnavailableError, match="did not answer"):
        read_pointers(board.lake)
    view = board.market({"bars_1m": "s3://somewhere/v1.metadata.json"}, "AAPL", "1m", "1 day", local_time=False)
    assert texts(view.message).startswith("The catalog is not answering")


def test_the_page_polls_the_catalog_and_reports_it_down_without_a_traceback(tmp_path: Path) -> None:
    app = build_app(Lakehouse(embedded_settings(tmp_path / "none")), poll_seconds=1)
    poll = app.callback_map["..pointers.data...status.children...catalog-message.children.."]["callback"]

    outputs = poll.__wrapped__(1, None)

    assert "catalog unavailable" in outputs[1]
    assert "make demo" in texts(outputs[2])


# -- pipeline view ----------------------------------------------------------------------------


def test_the_pipeline_view_ages_every_table_by_its_newest_event_time(board: Dashboard) -> None:
    ages, quarantine, late, gaps = board.pipeline(read_pointers(board.lake))
    fresh = board.lake.freshness().set_index("symbol")

    shown = texts(ages)
    newest_folded = fresh["latest_bar_event_time"].max()
    assert views.format_time(newest_folded, "UTC") in shown  # bars aged by the newest folded trade
    assert views.format_age(pd.Timestamp(NOW) - newest_folded) in shown
    trade_rows = int(board.lake.table_ages([TRADES]).iloc[0]["rows"])
    assert f" {trade_rows} " in shown and f"{trade_rows}.0" not in shown  # counts print as counts
    assert "price: Input should be greater than 0" in texts(quarantine)
    assert isinstance(late, html.Table) and isinstance(gaps, html.Table)


def test_a_quarantine_reason_links_to_one_of_its_messages_with_the_original_bytes(board: Dashboard) -> None:
    pointers = read_pointers(board.lake)
    quarantine = board.pipeline(pointers)[1]
    links = [link.href for link in links_in(quarantine)]
    stored = board.lake.table(QUARANTINE).scan().to_pandas()
    wanted = stored[stored["reason"] == "price: Input should be greater than 0"].sort_values("kafka_offset").iloc[0]

    href = next(h for h in links if "greater+than+0" in h)
    example = board.example(pointers, href)

    assert len(links) == len(stored.groupby(["topic", "reason"]))
    assert texts(by_id(example, "example-raw_value")) == wanted["raw_value"].decode()  # '{"s":"TSLA","p":-1.0,...'
    assert texts(by_id(example, "example-kafka_offset")) == str(wanted["kafka_offset"])
    assert texts(by_id(example, "example-topic")) == "market.trades"
    assert texts(by_id(example, "example-reason")) == "price: Input should be greater than 0"


def test_a_symbols_late_trades_link_to_one_late_trade_row(board: Dashboard) -> None:
    pointers = read_pointers(board.lake)
    late = board.pipeline(pointers)[2]
    stored = board.lake.table(LATE_TRADES).scan().to_pandas()
    symbol = str(stored["symbol"].iloc[0])
    newest = stored[stored["symbol"] == symbol].sort_values("detected_time").iloc[-1]

    href = next(link.href for link in links_in(late) if f"symbol={symbol}" in link.href)
    example = board.example(pointers, href)

    assert texts(by_id(example, "example-trade_id")) == newest["trade_id"]
    assert texts(by_id(example, "example-symbol")) == symbol


def test_an_example_that_is_not_there_says_so(board: Dashboard, tmp_path: Path) -> None:
    pointers = read_pointers(board.lake)
    gone = board.example(pointers, "?example=quarantine&topic=market.trades&reason=no+such+reason")
    assert "No row in quarantine for topic 'market.trades', reason 'no such reason'" in texts(gone)
    assert board.example(pointers, "") is None

    settings = embedded_settings(tmp_path)
    prepare_catalog(settings)
    empty = Dashboard(Lakehouse(settings))
    missing = empty.example(read_pointers(empty.lake), "?example=late&symbol=AAPL")
    assert "late_trades does not exist" in texts(missing)


def links_in(component: object) -> list[dcc.Link]:
    if isinstance(component, dcc.Link):
        return [component]
    children = getattr(component, "children", None)
    found: list[dcc.Link] = []
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str):
            found += links_in(child)
    return found


# -- producers and Kafka ------------------------------------------------------------------------


def with_feeds(settings: Settings, bootstrap_servers: str, checkpoints: Path, topic: str = "market.trades",
               finnhub_port: int = 0) -> Settings:
    return settings.with_streaming(checkpoint_dir=str(checkpoints)).model_copy(update={
        "kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers, "trades_topic": topic}),
        "metrics": settings.metrics.model_copy(update={"finnhub_port": finnhub_port}),
    })


def row_of(table: object, **data: str) -> html.Tr:
    """The row of a pipeline table whose ``data-*`` attributes match."""
    body = table.children[1]
    for row in body.children:
        attributes = {k.removeprefix("data-").replace("-", "_"): v for k, v in row.to_plotly_json()["props"].items()
                      if k.startswith("data-")}
        if all(attributes.get(k) == v for k, v in data.items()):
            return row
    raise AssertionError(f"no row with {data} in {texts(table)}")


def serve_producer(sink: object, counters: FeedCounters) -> tuple[int, Callable[[], None]]:
    """A producer's real collector over a real sink, on its own registry and a free port."""
    registry = CollectorRegistry()
    registry.register(ProducerCollector("finnhub", sink, counters))
    port = free_port()
    return port, serve_metrics(port, "finnhub producer", registry)


def test_the_producer_panel_shows_messages_per_second_reconnects_and_gaps_from_its_endpoint(
        demo_settings: Settings, kafka_broker, tmp_path: Path) -> None:
    topic = new_topic(kafka_broker.bootstrap_servers, "dashboard.producer.trades")
    sink, counters = KafkaSink(SinkConfig(kafka_broker.bootstrap_servers)), FeedCounters(reconnects=2, gaps=1)
    port, stop = serve_producer(sink, counters)
    scrape_times = iter([100.0, 105.0, 108.0])
    settings = with_feeds(demo_settings, kafka_broker.bootstrap_servers, tmp_path, topic, port)
    board = Dashboard(Lakehouse(settings), monotonic=lambda: next(scrape_times))
    try:
        for trade in trades_for(30):
            sink.publish(topic, trade)
        sink.flush(30)
        first = board.feeds()[0]
        for trade in trades_for(20, first=30):
            sink.publish(topic, trade)
        sink.flush(30)
        second = board.feeds()[0]
        third = board.feeds()[0]  # nothing sent since: the window still holds the 20
    finally:
        stop()
        sink.close()

    assert texts(row_of(first, source="finnhub")).split()[:3] == ["finnhub", "30", "measuring…"]
    finnhub = row_of(second, source="finnhub", window_messages="20", window_seconds="5.0")
    assert texts(finnhub).split()[:3] == ["finnhub", "50", "4.0/s"]
    assert "20 msgs in 5.0 s 2 1 0" in texts(finnhub)  # window, reconnects, feed gaps, quarantined
    assert texts(row_of(third, source="finnhub", window_messages="20", window_seconds="8.0")).split()[2] == "2.5/s"
    assert "no metrics endpoint configured (LAKEHOUSE__METRICS__VNSTOCK_PORT=0)" in texts(row_of(second,
                                                                                                  source="vnstock"))


def test_the_producer_panel_ages_the_last_trade_not_the_last_ping(demo_settings: Settings, kafka_broker,
                                                                   tmp_path: Path) -> None:
    """Finnhub after "Subscribing to too many symbols" pings every few seconds and sends no trade: the
    stall alert fires on the trade age, and the panel showed only the fresh message age."""
    now_ms = now_epoch_ms()
    counters = FeedCounters(last_message_ms=now_ms - 1_000, last_trade_ms=now_ms - 300_000,
                            started_ms=now_ms - 900_000)
    sink = KafkaSink(SinkConfig(kafka_broker.bootstrap_servers))
    port, stop = serve_producer(sink, counters)
    board = Dashboard(Lakehouse(with_feeds(demo_settings, kafka_broker.bootstrap_servers, tmp_path,
                                           finnhub_port=port)))
    try:
        pinging = board.feeds()[0]
        counters.last_trade_ms, counters.started_ms = None, now_ms - 90_000  # restarted, no trade since
        never = board.feeds()[0]
    finally:
        stop()
        sink.close()

    head = [texts(cell) for cell in pinging.children[0].children.children]
    assert head[-2:] == ["last trade", "last message (pings too)"]
    cells = row_of(pinging, source="finnhub").children
    assert texts(cells[-2]) == "5.0 min ago" and texts(cells[-1]) in ("1 s ago", "2 s ago")
    assert cells[-2].className == "last-trade"
    assert texts(row_of(never, source="finnhub").children[-2]).startswith("none since the start, 9")  # 90 s


def test_a_producer_endpoint_that_does_not_answer_is_named_on_the_page(demo_settings: Settings,
                                                                       tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: the producer is down
    board = Dashboard(Lakehouse(with_feeds(demo_settings, f"127.0.0.1:{free_port()}", tmp_path, finnhub_port=port)))
    producers, lag = board.feeds()

    said = texts(row_of(producers, source="finnhub"))
    assert f"metrics endpoint down: http://127.0.0.1:{port}/metrics did not answer" in said
    assert "Is the finnhub producer running?" in said
    assert texts(lag).startswith("Kafka is not answering")


def test_kafka_lag_is_the_topics_end_minus_the_jobs_committed_checkpoint(demo_settings: Settings, kafka_broker,
                                                                         tmp_path: Path) -> None:
    topic = new_topic(kafka_broker.bootstrap_servers, "dashboard.lag.trades")
    publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in trades_for(12)])
    settings = with_feeds(demo_settings, kafka_broker.bootstrap_servers, tmp_path / "checkpoints", topic)
    ends = end_offsets(settings, [topic])[topic]
    write_committed_batch(tmp_path / "checkpoints" / "raw_trades", 3, topic, ends)
    publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in trades_for(7, first=12)])

    lag = Dashboard(Lakehouse(settings)).feeds()[1]

    row = row_of(lag, topic=topic, job="raw_trades")
    assert texts(row).split() == [topic, "2", "19", "raw_trades", "12", "3", "7"]
    unread = texts(row_of(lag, topic=settings.kafka.quarantine_topic, job=""))
    assert "no job's checkpoint reads it" in unread or "no such topic on the broker" in unread


def write_committed_batch(checkpoint: Path, batch: int, topic: str, offsets: dict[int, int]) -> None:
    """A micro-batch's offsets and commit files as Structured Streaming writes them (``v1``, a
    metadata line, a line per source; the commit marker)."""
    (checkpoint / "offsets").mkdir(parents=True)
    (checkpoint / "commits").mkdir()
    metadata = '{"batchWatermarkMs":0,"batchTimestampMs":0,"conf":{}}'
    partitions = json.dumps({topic: {str(p): o for p, o in offsets.items()}})
    (checkpoint / "offsets" / str(batch)).write_text(f"v1\n{metadata}\n{partitions}")
    (checkpoint / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}')


def trades_for(count: int, first: int = 0, symbol: str = "DASH") -> list[Trade]:
    at = int(NOW.timestamp() * 1000)
    return [Trade(source=Source.FINNHUB, symbol=symbol, price=10.0 + n / 100, volume=1.0, event_time_ms=at + n,
                  conditions=[], venue=None, received_time_ms=at + n + 1,
                  trade_id=trade_id(Source.FINNHUB, symbol, at + n, 10.0 + n / 100, 1.0, []))
            for n in range(first, first + count)]


def test_message_rate_counts_a_burst_whole_whichever_scrape_it_straddles() -> None:
    def reading(at: float, messages: float) -> ProducerReading:
        return ProducerReading("finnhub", at, {"market.trades": messages}, 0, 0, 0, 0, None)

    rate = MessageRate(window_seconds=10)
    for at, messages in ((0, 100), (1, 100), (2, 130), (3, 150), (4, 150)):  # a burst of 50 over two scrapes
        rate.add(reading(at, messages))
    assert rate.window() == (50, 4)
    for at in range(5, 13):
        rate.add(reading(at, 150))
    assert rate.window() == (20, 10)  # the window slid past the burst's first part
    rate.add(reading(13, 7))  # the counter went down: the producer restarted
    assert rate.window() is None


def test_a_poll_during_a_slow_kafka_read_gets_the_last_finished_result_at_once(demo_settings: Settings,
                                                                               tmp_path: Path) -> None:
    """Kafka down takes the whole timeout, longer than a poll; the browser drops an answer a newer
    poll overtook, so a poll meanwhile must answer with what is known instead of waiting."""
    board = Dashboard(Lakehouse(with_feeds(demo_settings, f"127.0.0.1:{free_port()}", tmp_path)))
    first: list[object] = []

    def read_in_background() -> threading.Thread:
        reader = threading.Thread(target=lambda: first.append(board.feeds()))
        reader.start()
        assert wait_until(board._feeds_lock.locked, 10)
        return reader

    reader = read_in_background()
    during_first = board.feeds()
    reader.join()
    reader = read_in_background()
    during_second = board.feeds()
    reader.join()

    assert during_first is None  # nothing finished yet: the page keeps what it shows
    assert during_second is first[0]
    assert texts(during_second[1]).startswith("Kafka is not answering")
