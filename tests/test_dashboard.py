"""The dashboard's reads and views against a real embedded Iceberg catalog, without a browser: what
each view shows, that an unchanged table is not read again, and the message for every bad state.

The lakehouse is written with the project's own writers (``lakehouse.reading.synthetic``), as the
reader tests do; ``tests/test_dashboard_browser.py`` looks at the served page in Chromium.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from dash import html

from dashboard import views
from dashboard.app import MISSING, Dashboard, build_app, read_pointers
from lakehouse.catalog import prepare_catalog
from lakehouse.local.processes import free_port
from lakehouse.reading import CatalogUnavailableError, Lakehouse, MissingCatalogError, synthetic
from lakehouse.reading.market import session_vwap
from lakehouse.settings import Settings, load_settings
from lakehouse.tables import VENDOR_BARS

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
    assert "AAPL, MSFT, VCB" in texts(view.message)


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
    assert "price: Input should be greater than 0" in texts(quarantine)
    assert isinstance(late, html.Table) and isinstance(gaps, html.Table)
