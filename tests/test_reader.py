"""The analysts' reading API against a real (embedded) Iceberg catalog holding one synthetic session.

The data is written through pyiceberg into tables made from the project's ``TableDef``s, in three
commits (as streaming micro-batches would), so each (symbol, day) partition holds three files.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lakehouse.catalog import table_identifier
from lakehouse.reading import (
    EmptyRangeError,
    Lakehouse,
    MissingCatalogError,
    MissingTableError,
    UnknownColumnError,
    UnknownIntervalError,
    UnknownSymbolError,
    rollup_bars,
    row_filter,
    synthetic,
)
from lakehouse.settings import Settings, load_settings
from lakehouse.tables import BARS_1M, FEED_EVENTS, LATE_TRADES, QUARANTINE, TRADES, VENDOR_BARS
from lakehouse.times import to_utc

DAY = synthetic.DEMO_DAY
SYMBOLS = ("AAPL", "MSFT", "NVDA")
COMMITS = 3
NOW = datetime(2026, 1, 5, 20, 10, tzinfo=UTC)


def embedded_settings(state_dir: Path) -> Settings:
    """Embedded-catalog settings on a private directory (no broker needed to read tables)."""
    return load_settings(environ={
        "LAKEHOUSE__LOCAL__STATE_DIR": str(state_dir),
        "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state_dir}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": str(state_dir / "warehouse"),
    })


@pytest.fixture(scope="module")
def reader_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = embedded_settings(tmp_path_factory.mktemp("reader-lakehouse"))
    synthetic.write_demo_lakehouse(settings, symbols=SYMBOLS, day=DAY, commits=COMMITS)
    return settings


@pytest.fixture(scope="module")
def written_trades() -> pd.DataFrame:
    """The trades the fixture wrote (the generator is deterministic)."""
    return synthetic.synthetic_trades(SYMBOLS, DAY)


@pytest.fixture
def lakehouse(reader_settings: Settings) -> Lakehouse:
    return Lakehouse(reader_settings, clock=lambda: NOW)


# -- pruning ----------------------------------------------------------------------------------


def test_one_symbol_one_day_plans_only_that_partitions_files(lakehouse: Lakehouse) -> None:
    table = lakehouse.table(BARS_1M)
    start, end = to_utc(DAY), to_utc(DAY) + timedelta(days=1)

    planned = list(table.scan(row_filter=row_filter(BARS_1M, ["AAPL"], start, end)).plan_files())
    everything = list(table.scan().plan_files())

    assert len(everything) == len(SYMBOLS) * COMMITS
    assert len(planned) == COMMITS
    assert all("symbol=AAPL" in task.file.file_path for task in planned)


def test_a_time_range_inside_a_day_skips_files_whose_statistics_cannot_match(lakehouse: Lakehouse) -> None:
    table = lakehouse.table(TRADES)
    first_hour = to_utc("2026-01-05 13:30"), to_utc("2026-01-05 14:30")

    planned = list(table.scan(row_filter=row_filter(TRADES, ["NVDA"], *first_hour)).plan_files())

    assert len(planned) == 1  # the first of the three commits covers 13:30-15:40


def test_a_day_without_data_plans_no_files(lakehouse: Lakehouse) -> None:
    start = to_utc(DAY) + timedelta(days=1)
    planned = lakehouse.table(BARS_1M).scan(row_filter=row_filter(BARS_1M, None, start, start + timedelta(days=1)))
    assert list(planned.plan_files()) == []


# -- bars and trades --------------------------------------------------------------------------


def test_bars_are_the_minutes_of_the_half_open_range_in_utc(lakehouse: Lakehouse) -> None:
    bars = lakehouse.bars("AAPL", "2026-01-05 14:00", "2026-01-05 15:00")

    assert len(bars) == 60
    assert str(bars["window_start"].dt.tz) == "UTC"
    assert bars["window_start"].iloc[0] == pd.Timestamp("2026-01-05 14:00", tz="UTC")
    assert bars["window_start"].iloc[-1] == pd.Timestamp("2026-01-05 14:59", tz="UTC")
    assert bars["window_start"].is_monotonic_increasing
    assert list(bars.columns) == BARS_1M.column_names


def test_times_with_a_zone_mean_the_same_instant_as_utc(lakehouse: Lakehouse) -> None:
    new_york = lakehouse.bars("MSFT", "2026-01-05T09:30-05:00",
                              datetime(2026, 1, 5, 10, 0, tzinfo=ZoneInfo("America/New_York")))
    utc = lakehouse.bars("MSFT", datetime(2026, 1, 5, 14, 30), "2026-01-05 15:00Z")
    pd.testing.assert_frame_equal(new_york, utc)


def test_bars_for_several_symbols_come_sorted_by_symbol_then_time(lakehouse: Lakehouse) -> None:
    bars = lakehouse.bars(["NVDA", "AAPL"], "2026-01-05 19:00", "2026-01-05 19:10")
    assert bars["symbol"].tolist() == ["AAPL"] * 10 + ["NVDA"] * 10


def test_minute_bars_are_the_trades_aggregated_by_the_bar_rule(
    lakehouse: Lakehouse, written_trades: pd.DataFrame
) -> None:
    bars = lakehouse.bars("NVDA", DAY, DAY + timedelta(days=1))
    nvda = written_trades[written_trades["symbol"] == "NVDA"]
    eligible = nvda[[c == ["1"] for c in nvda["conditions"]]]  # odd lots ("12") make no bars

    assert bars["trade_count"].sum() == len(eligible) < len(nvda)
    assert bars["volume"].sum() == pytest.approx(eligible["volume"].sum())
    assert bars["high"].max() == eligible["price"].max()
    assert bars["open"].iloc[0] == eligible.sort_values("event_time")["price"].iloc[0]


@pytest.mark.parametrize("interval", ["5m", "15m", "1h"])
def test_rolled_up_bars_equal_bars_computed_from_trades_at_that_interval(
    lakehouse: Lakehouse, written_trades: pd.DataFrame, interval: str
) -> None:
    seconds = {"5m": 300, "15m": 900, "1h": 3600}[interval]
    rolled = lakehouse.bars("AAPL", "2026-01-05 13:30", "2026-01-05 20:00", interval=interval)
    direct = synthetic.bars_from_trades(written_trades[written_trades["symbol"] == "AAPL"], seconds=seconds)

    columns = ["window_start", "window_end", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
    pd.testing.assert_frame_equal(rolled[columns], direct[columns].reset_index(drop=True), check_exact=False,
                                  rtol=1e-9, check_dtype=False)


def test_a_rolled_up_range_starts_at_a_whole_bar(lakehouse: Lakehouse) -> None:
    bars = lakehouse.bars("AAPL", "2026-01-05 14:07", "2026-01-05 15:00", interval="15m")
    assert bars["window_start"].iloc[0] == pd.Timestamp("2026-01-05 14:00", tz="UTC")
    assert bars["trade_count"].iloc[0] == lakehouse.bars("AAPL", "2026-01-05 14:00", "2026-01-05 14:15")[
        "trade_count"].sum()


def test_a_daily_bar_is_the_utc_calendar_day(lakehouse: Lakehouse) -> None:
    day = lakehouse.bars("MSFT", DAY, DAY + timedelta(days=1), interval="1d")
    minutes = lakehouse.bars("MSFT", DAY, DAY + timedelta(days=1))

    assert len(day) == 1
    assert day["window_start"].iloc[0] == pd.Timestamp(DAY, tz="UTC")
    assert day["window_end"].iloc[0] == pd.Timestamp(DAY + timedelta(days=1), tz="UTC")
    assert day["open"].iloc[0] == minutes["open"].iloc[0]
    assert day["close"].iloc[0] == minutes["close"].iloc[-1]
    assert day["vwap"].iloc[0] == pytest.approx((minutes["vwap"] * minutes["volume"]).sum() / minutes["volume"].sum())


def test_trades_in_a_range_are_every_trade_written_there(lakehouse: Lakehouse, written_trades: pd.DataFrame) -> None:
    start, end = pd.Timestamp("2026-01-05 15:00", tz="UTC"), pd.Timestamp("2026-01-05 15:30", tz="UTC")
    trades = lakehouse.trades(["AAPL", "MSFT"], start, end)
    expected = written_trades[written_trades["symbol"].isin(["AAPL", "MSFT"])
                              & (written_trades["event_time"] >= start) & (written_trades["event_time"] < end)]

    assert sorted(trades["trade_id"]) == sorted(expected["trade_id"])
    assert trades["event_time"].between(start, end, inclusive="left").all()


def test_trades_can_read_only_some_columns(lakehouse: Lakehouse) -> None:
    trades = lakehouse.trades("AAPL", "2026-01-05 15:00", "2026-01-05 15:01", columns=["price"])
    assert list(trades.columns) == ["symbol", "event_time", "price"]


def test_arrow_variants_hold_the_same_rows_as_pandas(lakehouse: Lakehouse) -> None:
    arrow = lakehouse.bars_arrow("AAPL", "2026-01-05 14:00", "2026-01-05 16:00", interval="15m")
    pd.testing.assert_frame_equal(arrow.to_pandas(), lakehouse.bars("AAPL", "2026-01-05 14:00", "2026-01-05 16:00",
                                                                     interval="15m"))
    assert arrow.num_rows == 8
    trades = lakehouse.trades_arrow("AAPL", "2026-01-05 14:00", "2026-01-05 14:01")
    assert trades.num_rows == len(lakehouse.trades("AAPL", "2026-01-05 14:00", "2026-01-05 14:01")) > 0


def test_latest_bars_end_at_each_symbols_newest_bar(lakehouse: Lakehouse) -> None:
    latest = lakehouse.latest_bars(["AAPL", "NVDA"], minutes=10)
    assert latest.groupby("symbol").size().to_dict() == {"AAPL": 10, "NVDA": 10}
    assert (latest["window_end"].groupby(latest["symbol"]).max() == pd.Timestamp("2026-01-05 20:00", tz="UTC")).all()


def test_symbols_lists_what_the_table_holds(lakehouse: Lakehouse) -> None:
    assert lakehouse.symbols() == sorted(SYMBOLS)
    assert lakehouse.symbols(TRADES) == sorted(SYMBOLS)


# -- errors -----------------------------------------------------------------------------------


def test_an_unknown_symbol_names_close_matches_and_what_exists(lakehouse: Lakehouse) -> None:
    with pytest.raises(UnknownSymbolError) as typo:
        lakehouse.bars("APPL", "2026-01-05", "2026-01-06")
    assert "did you mean AAPL" in str(typo.value)
    assert "AAPL, MSFT, NVDA" in str(typo.value)

    with pytest.raises(UnknownSymbolError, match="did you mean NVDA"):
        lakehouse.trades(["AAPL", "nvda"], "2026-01-05", "2026-01-06")


def test_a_known_symbol_with_no_data_in_the_range_gives_an_empty_frame(lakehouse: Lakehouse) -> None:
    bars = lakehouse.bars("AAPL", "2025-06-02", "2025-06-03")
    assert bars.empty
    assert list(bars.columns) == BARS_1M.column_names


@pytest.mark.parametrize("start, end", [("2026-01-05 15:00", "2026-01-05 15:00"), ("2026-01-06", "2026-01-05")])
def test_an_empty_range_is_refused_with_both_ends_shown(lakehouse: Lakehouse, start: str, end: str) -> None:
    with pytest.raises(EmptyRangeError, match=r"start 2026-01-0\d.* is not before end"):
        lakehouse.bars("AAPL", start, end)


def test_an_unknown_interval_lists_the_supported_ones(lakehouse: Lakehouse) -> None:
    with pytest.raises(UnknownIntervalError, match="1m, 5m, 15m, 30m, 1h, 1d"):
        lakehouse.bars("AAPL", "2026-01-05", "2026-01-06", interval="2m")


def test_a_missing_table_names_the_job_that_creates_it(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    synthetic.create_tables(settings, tables=(TRADES,))

    with pytest.raises(MissingTableError, match=r"market\.bars_1m does not exist.*python -m jobs\.bars"):
        Lakehouse(settings).bars("AAPL", "2026-01-05", "2026-01-06")


def test_a_table_whose_snapshot_added_no_file_reads_as_empty_not_unreachable(tmp_path: Path) -> None:
    """A stream commits a micro-batch that wrote nothing as a snapshot without files (the demo's
    quarantine and feed_events); pyiceberg's ``inspect.files()`` raises on it, and status and the
    dashboard once reported such a table as unreachable."""
    from lakehouse.ops.status_probe import table_state

    settings = embedded_settings(tmp_path)
    catalog = synthetic.create_tables(settings, tables=(TRADES, QUARANTINE, FEED_EVENTS, LATE_TRADES))
    for table in (QUARANTINE, FEED_EVENTS):
        with (catalog.load_table(table_identifier(settings, table)).transaction() as commit,
              commit.update_snapshot().fast_append()):
            pass  # an append of no file, as Iceberg's Spark writer commits an empty batch
    synthetic.append_rows(catalog.load_table(table_identifier(settings, TRADES)),
                          synthetic._arrow(synthetic.synthetic_trades(SYMBOLS, DAY).head(5), TRADES))

    ages = Lakehouse(settings, clock=lambda: NOW).table_ages((TRADES, QUARANTINE, FEED_EVENTS, LATE_TRADES))
    by_name = ages.set_index("table")
    assert by_name.loc["trades", "rows"] == 5 and pd.notna(by_name.loc["trades", "newest_event_time"])
    for name in ("quarantine", "feed_events"):
        assert by_name.loc[name, "exists"] and by_name.loc[name, "snapshots"] == 1
        assert by_name.loc[name, "rows"] == 0 and pd.isna(by_name.loc[name, "newest_event_time"])
    for table in (QUARANTINE, FEED_EVENTS):
        state = table_state(settings, catalog, table)
        assert (state.snapshot_count, state.data_file_count, state.newest_event_time) == (1, 0, None)


def test_a_table_can_be_named_and_an_unknown_name_lists_the_known_ones(lakehouse: Lakehouse) -> None:
    assert lakehouse.table("trades").metadata_location == lakehouse.table(TRADES).metadata_location
    with pytest.raises(ValueError, match=r"unknown tables \['trade'\]; known: .*'trades'"):
        lakehouse.table("trade")


def test_every_call_that_takes_a_table_takes_its_name(lakehouse: Lakehouse) -> None:
    assert lakehouse.symbols("bars_1m") == lakehouse.symbols(BARS_1M) == sorted(SYMBOLS)
    by_name = lakehouse.table_ages(["trades", "bars_1m"])
    assert list(by_name["table"]) == ["trades", "bars_1m"] and by_name["exists"].all()
    assert by_name.equals(lakehouse.table_ages([TRADES, BARS_1M]))
    assert list(lakehouse.table_ages("trades")["table"]) == ["trades"]
    for wrong in ("", "trades,bars_1m"):
        with pytest.raises(ValueError, match="table"):
            lakehouse.symbols(wrong)


def test_a_wrong_argument_is_refused_in_the_readers_words(lakehouse: Lakehouse) -> None:
    with pytest.raises(UnknownColumnError, match=r"no column 'prise' \(did you mean price\?\) in table trades; "
                       r"its columns: .*trade_id"):
        lakehouse.trades("AAPL", "2026-01-05", "2026-01-06", columns=["price", "prise"])
    for symbols in (None, 5, [], [""], ["AAPL", None]):
        with pytest.raises(ValueError, match="expected a symbol or a non-empty list of symbols"):
            lakehouse.bars(symbols, "2026-01-05", "2026-01-06")
    for minutes in (0, -5, float("nan"), "60", True):
        with pytest.raises(ValueError, match="minutes must be a number above 0"):
            lakehouse.latest_bars("AAPL", minutes=minutes)


def test_a_missing_embedded_catalog_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(MissingCatalogError, match="make demo"):
        Lakehouse(embedded_settings(tmp_path / "nothing-here")).symbols()
    assert not (tmp_path / "nothing-here").exists()  # and no empty catalog was left behind


def test_a_table_whose_metadata_file_is_gone_is_said_to_be_missing_from_the_warehouse(tmp_path: Path) -> None:
    """It said the catalog 'did not answer', which sends an operator after a database that is fine."""
    import shutil

    from lakehouse.reading import CatalogUnavailableError

    settings = embedded_settings(tmp_path)
    synthetic.write_demo_lakehouse(settings, symbols=("AAPL",), day=DAY, commits=1)
    shutil.rmtree(Path(settings.catalog.warehouse) / settings.catalog.namespace / BARS_1M.name / "metadata")
    with pytest.raises(CatalogUnavailableError, match=r"answered loading .*bars_1m, but a file it names is missing"):
        Lakehouse(settings).bars("AAPL", "2026-01-05", "2026-01-06")


# -- freshness and data quality ---------------------------------------------------------------


def test_freshness_ages_trades_and_bars_by_the_newest_event_time_each_holds(
    lakehouse: Lakehouse, written_trades: pd.DataFrame
) -> None:
    fresh = lakehouse.freshness().set_index("symbol")
    newest_trade = written_trades.groupby("symbol")["event_time"].max()
    eligible = written_trades[written_trades["bar_eligible"]]
    newest_folded = eligible.groupby("symbol")["event_time"].max()

    assert list(fresh.index) == sorted(SYMBOLS)
    assert (fresh["latest_trade_time"] == newest_trade).all()
    assert (fresh["latest_bar_end"] == pd.Timestamp("2026-01-05 20:00", tz="UTC")).all()
    assert (fresh["latest_bar_event_time"] == newest_folded).all()
    assert (fresh["trade_age"] == pd.Timestamp(NOW) - newest_trade).all()
    assert (fresh["bar_age"] == pd.Timestamp(NOW) - newest_folded).all()
    # Bars can be no younger than the trades they fold: an open window's end is not an age.
    assert (fresh["bar_age"] >= fresh["trade_age"]).all()


def test_bars_written_before_last_event_time_existed_are_aged_by_their_window_start(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    synthetic.write_demo_lakehouse(settings, symbols=("AAPL",), day=DAY, commits=1)
    lake = Lakehouse(settings, clock=lambda: NOW)
    bars = lake.table(BARS_1M)
    with bars.transaction() as tx:  # the column's values as an upgraded table holds them: none
        tx.delete("True")
    stored = synthetic.bars_from_trades(synthetic.synthetic_trades(("AAPL",), DAY)).assign(last_event_time=pd.NaT)
    synthetic.append_rows(lake.table(BARS_1M), synthetic._arrow(stored, BARS_1M))

    fresh = lake.freshness().set_index("symbol")

    assert fresh.loc["AAPL", "latest_bar_event_time"] == pd.Timestamp("2026-01-05 19:59", tz="UTC")
    assert fresh.loc["AAPL", "bar_age"] == pd.Timedelta(minutes=11)


def test_feed_gaps_come_with_their_duration(lakehouse: Lakehouse) -> None:
    gaps = lakehouse.feed_gaps()
    assert len(gaps) == 3
    assert gaps["duration"].tolist() == [pd.Timedelta(seconds=s) for s in (95, 12, 40)]
    assert len(lakehouse.feed_gaps("2026-01-05 16:00", "2026-01-05 21:00")) == 2


def test_late_trades_are_counted_per_symbol(lakehouse: Lakehouse, written_trades: pd.DataFrame) -> None:
    late = lakehouse.late_trade_counts()
    expected = synthetic.synthetic_late_trades(written_trades)["symbol"].value_counts()
    assert late.set_index("symbol")["late_trades"].to_dict() == expected.to_dict()
    assert (late["max_delay"] >= pd.Timedelta(seconds=90)).all()


def test_quarantined_messages_are_counted_per_topic_and_reason(lakehouse: Lakehouse) -> None:
    counts = lakehouse.quarantine_counts()
    assert counts["messages"].sum() == 5
    top = counts.iloc[0]
    assert (top["topic"], top["reason"], top["messages"]) == (
        "market.trades", "price: Input should be greater than 0", 2)


# -- pure pieces ------------------------------------------------------------------------------


def test_naive_times_are_read_as_utc_and_zoned_times_converted() -> None:
    assert to_utc("2026-01-05 14:30") == datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    assert to_utc(datetime(2026, 1, 5, 9, 30)) == datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    assert to_utc("2026-01-05T09:30:00-05:00") == datetime(2026, 1, 5, 14, 30, tzinfo=UTC)
    assert to_utc(DAY) == datetime(2026, 1, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        to_utc("yesterday-ish")


def test_a_vendor_day_bar_is_taken_by_its_markets_date_and_others_by_their_start(tmp_path: Path) -> None:
    """vnstock's day bar starts at midnight in Hanoi (17:00 UTC the day before): asked for 5 January,
    the reader gave the bar of the 6th."""
    settings = embedded_settings(tmp_path)
    catalog = synthetic.create_tables(settings, (VENDOR_BARS,))
    hanoi = ZoneInfo("Asia/Ho_Chi_Minh")
    starts = {("1D", datetime(2026, 1, d, tzinfo=hanoi)): 100.0 + d for d in (4, 5, 6)}
    starts |= {("1m", datetime(2026, 1, 5, 2, m, tzinfo=UTC)): 200.0 + m for m in (0, 1)}
    stamp = datetime(2026, 1, 7, tzinfo=UTC)
    rows = pd.DataFrame([{"source": "vnstock", "symbol": "FPT", "interval": interval,
                          "bar_start": pd.Timestamp(start).tz_convert(UTC), "open": close, "high": close,
                          "low": close, "close": close, "volume": 10.0, "received_time": stamp, "ingested_time": stamp}
                         for (interval, start), close in starts.items()])
    synthetic.append_rows(catalog.load_table(table_identifier(settings, VENDOR_BARS)),
                          pa.Table.from_pandas(rows, preserve_index=False))
    lake = Lakehouse(settings)

    assert lake.vendor_bars("FPT", "2026-01-05", "2026-01-06", "1d")["close"].tolist() == [105.0]
    assert lake.vendor_bars("FPT", "2026-01-05", "2026-01-07", "1d")["close"].tolist() == [105.0, 106.0]
    assert lake.vendor_bars("FPT", "2026-01-05 02:01", "2026-01-05 02:02", "1m")["close"].tolist() == [201.0]


def test_now_and_today_are_utc_whatever_the_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Ho_Chi_Minh")  # seven hours ahead of UTC, all year
    time.tzset()
    try:
        before, now, after = datetime.now(UTC), to_utc(" Now"), datetime.now(UTC)
        today = to_utc("today")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert before <= now <= after
    assert today == datetime(after.year, after.month, after.day, tzinfo=UTC) or today.date() == before.date()


def test_rollup_vwap_is_null_when_no_volume_traded_and_ignores_null_minute_vwaps() -> None:
    start = pd.Timestamp("2026-01-05 14:00", tz="UTC")
    minutes = pd.DataFrame({
        "symbol": "AAPL",
        "window_start": [start + pd.Timedelta(minutes=i) for i in range(4)],
        "window_end": [start + pd.Timedelta(minutes=i + 1) for i in range(4)],
        "open": [10.0, 11.0, 12.0, 13.0], "high": [11.0, 12.0, 13.0, 14.0],
        "low": [9.0, 10.0, 11.0, 12.0], "close": [11.0, 12.0, 13.0, 14.0],
        "volume": [0.0, 0.0, 100.0, 300.0], "trade_count": [1, 1, 2, 3],
        "vwap": [np.nan, np.nan, 12.5, 13.5],
        "updated_time": [start + pd.Timedelta(minutes=i + 1) for i in range(4)],
    })
    rolled = rollup_bars(minutes, "5m")
    assert rolled[["open", "high", "low", "close", "volume", "trade_count"]].iloc[0].tolist() == [
        10.0, 14.0, 9.0, 14.0, 400.0, 7]
    assert rolled["vwap"].iloc[0] == pytest.approx((12.5 * 100 + 13.5 * 300) / 400)
    assert np.isnan(rollup_bars(minutes.iloc[:2], "5m")["vwap"].iloc[0])


# -- a gs:// warehouse, by configuration only ---------------------------------------------------


@pytest.mark.integration  # starts the GCS emulator
def test_the_same_calls_read_a_gs_warehouse_on_the_gcs_emulator(tmp_path: Path) -> None:
    from lakehouse.local import gcs_emulator

    with gcs_emulator.running(tmp_path / "gcs") as emulator:
        gcs_emulator.storage_client(emulator.endpoint).create_bucket("market-lake")
        settings = load_settings(environ={
            "LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path),
            "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{tmp_path}/catalog.db",
            "LAKEHOUSE__CATALOG__WAREHOUSE": "gs://market-lake/warehouse",
            "LAKEHOUSE__GCS__ENDPOINT": emulator.endpoint,
        })
        synthetic.write_demo_lakehouse(settings, symbols=("AAPL", "MSFT"), commits=2)
        lake = Lakehouse(settings)

        bars = lake.bars("AAPL", "2026-01-05 14:00", "2026-01-05 15:00", interval="15m")
        assert lake.table(BARS_1M).metadata_location.startswith("gs://market-lake/warehouse/market/bars_1m/")
        assert len(bars) == 4
        assert lake.symbols() == ["AAPL", "MSFT"]
        assert list(lake.freshness()["symbol"]) == ["AAPL", "MSFT"]


# -- argument forms an analyst types ------------------------------------------------------------


def test_one_column_can_be_named_without_a_list(lakehouse: Lakehouse) -> None:
    """``columns="price"`` was read as the columns 'p', 'r', 'i', 'c', 'e'."""
    one = lakehouse.trades("AAPL", "2026-01-05 15:00", "2026-01-05 15:01", columns="price")
    listed = lakehouse.trades("AAPL", "2026-01-05 15:00", "2026-01-05 15:01", columns=["price"])
    pd.testing.assert_frame_equal(one, listed)
@pytest.mark.parametrize("table", ["quarantine", "feed_events"])
def test_symbols_of_a_table_not_partitioned_by_symbol_names_the_tables_that_are(
    lakehouse: Lakehouse, table: str
) -> None:
    """It failed deep inside pyiceberg ("Could not find column: 'symbol'") or pyarrow."""
    with pytest.raises(ValueError, match=rf"table {table} is not partitioned by symbol; .*trades, bars_1m"):
        lakehouse.symbols(table)


@pytest.mark.parametrize("minutes", [float("inf"), 10**12])
def test_latest_bars_over_a_span_longer_than_the_data_are_all_its_bars(lakehouse: Lakehouse, minutes: float) -> None:
    """An unbounded span raised OverflowError from datetime arithmetic."""
    everything = lakehouse.latest_bars("AAPL", minutes=minutes)
    assert len(everything) == len(lakehouse.bars("AAPL", DAY, DAY + timedelta(days=1))) == 390


def test_a_symbol_or_interval_of_the_wrong_type_is_refused_in_the_readers_words(lakehouse: Lakehouse) -> None:
    """A list where one symbol, topic or reason is expected failed in pyiceberg ("Invalid literal
    value"), a list as the interval with "unhashable type"."""
    with pytest.raises(ValueError, match=r"expected one symbol, got \['AAPL'\]"):
        lakehouse.late_trade_example(["AAPL"])
    with pytest.raises(ValueError, match=r"expected a topic and a reason as strings, got \['market.trades'\], None"):
        lakehouse.quarantine_example(["market.trades"], None)
    with pytest.raises(UnknownIntervalError, match=r"unknown bar interval \['5m'\]; choose one of 1m, 5m"):
        lakehouse.bars("AAPL", "2026-01-05", "2026-01-06", interval=["5m"])


@pytest.mark.parametrize("minutes, interval, starts", [
    (60, "1d", ["00:00"]),
    (30, "1h", ["19:00"]),
    (90, "1h", ["18:00", "19:00"]),
    (7, "5m", ["19:50", "19:55"]),
])
def test_latest_bars_of_a_coarser_interval_are_those_holding_the_last_minutes(
    lakehouse: Lakehouse, minutes: int, interval: str, starts: list[str]
) -> None:
    """The bar holding the span's first minute starts before it, and was dropped: the last hour in
    day bars, or the last 30 minutes in hour bars, came back empty."""
    latest = lakehouse.latest_bars("AAPL", minutes=minutes, interval=interval)
    assert latest["window_start"].tolist() == [pd.Timestamp(f"2026-01-05 {s}", tz="UTC") for s in starts]
    whole = lakehouse.bars("AAPL", latest["window_start"].iloc[0], "2026-01-05 20:00", interval=interval)
    pd.testing.assert_frame_equal(latest, whole)


@pytest.mark.parametrize("typed", ["05/01/2026", "5.1.2026", "01-05-2026 14:30", " 5/1/26"])
def test_a_date_written_day_or_month_first_is_refused_as_ambiguous(typed: str) -> None:
    """pandas read "5.1.2026" and "05/01/2026" month first, as 1 May: an analyst who meant 5 January
    got May's bars (or an empty frame) without a word."""
    with pytest.raises(ValueError, match=rf"ambiguous date {re.escape(repr(typed))}: .*year first.*'2026-01-05 14:30'"):
        to_utc(typed)
    assert to_utc("2026-01-05") == to_utc("Jan 5 2026") == datetime(2026, 1, 5, tzinfo=UTC)


def test_a_lakehouse_can_be_opened_from_its_config_file(
    reader_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lakehouse("conf/other.toml") failed on first use with "'str' object has no attribute 'catalog'"."""
    import os

    for name in [n for n in os.environ if n.startswith("LAKEHOUSE__")]:  # the file alone says where
        monkeypatch.delenv(name)
    config = tmp_path / "other.toml"
    catalog = reader_settings.catalog
    config.write_text(f'[local]\nstate_dir = "{reader_settings.state_dir}"\n'
                      f'[catalog]\nuri = "{catalog.uri}"\nwarehouse = "{catalog.warehouse}"\n')
    for given in (str(config), config):
        assert Lakehouse(given).symbols() == sorted(SYMBOLS)
    with pytest.raises(TypeError, match=r"expected Settings, a config file's path or None, got dict"):
        Lakehouse({"catalog": {}})


def test_vendor_bars_of_a_symbol_typed_in_another_case_name_the_one_the_vendor_has(tmp_path: Path) -> None:
    """vendor_bars("fpt") gave an empty frame, as for a symbol the vendor has no bars of, though it
    holds FPT's; a symbol it does not have at all still gives an empty frame."""
    settings = embedded_settings(tmp_path)
    catalog = synthetic.create_tables(settings, (VENDOR_BARS,))
    stamp = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    row = {"source": "vnstock", "symbol": "FPT", "interval": "1m", "bar_start": stamp, "open": 1.0, "high": 1.0,
           "low": 1.0, "close": 1.0, "volume": 10.0, "received_time": stamp, "ingested_time": stamp}
    synthetic.append_rows(catalog.load_table(table_identifier(settings, VENDOR_BARS)),
                          pa.Table.from_pandas(pd.DataFrame([row]), preserve_index=False))
    lake = Lakehouse(settings)

    assert len(lake.vendor_bars("FPT", "2026-01-05", "2026-01-06")) == 1
    for typed in ("fpt", "FPT "):
        with pytest.raises(UnknownSymbolError, match=rf"symbol '{typed}' \(did you mean FPT\?\) in table vendor_bars"):
            lake.vendor_bars(typed, "2026-01-05", "2026-01-06")
    assert lake.vendor_bars(["FPT", "AAPL"], "2026-01-05", "2026-01-06")["symbol"].tolist() == ["FPT"]


def test_latest_bars_of_a_stale_symbol_do_not_read_the_others_history(tmp_path: Path) -> None:
    """latest_bars read every symbol from the stalest one's newest bar to the freshest one's: one
    symbol silent for a month made it load a month of minute bars of every other symbol."""

    class CountingLakehouse(Lakehouse):
        rows_read = 0

        def scan_arrow(self, *args, **kwargs) -> pa.Table:
            rows = super().scan_arrow(*args, **kwargs)
            self.rows_read += rows.num_rows
            return rows

    settings = embedded_settings(tmp_path)
    synthetic.write_demo_lakehouse(settings, symbols=("AAPL",), day=DAY, commits=1)
    synthetic.write_demo_lakehouse(settings, symbols=("MSFT", "NVDA"), day=DAY + timedelta(days=28), commits=1)
    lake = CountingLakehouse(settings)

    latest = lake.latest_bars(minutes=10)

    assert latest.groupby("symbol")["window_end"].max().dt.day.to_dict() == {"AAPL": 5, "MSFT": 2, "NVDA": 2}
    assert latest.groupby("symbol").size().to_dict() == {"AAPL": 10, "MSFT": 10, "NVDA": 10}
    assert latest[["symbol", "window_start"]].equals(latest.sort_values(["symbol", "window_start"])[
        ["symbol", "window_start"]].reset_index(drop=True))
    assert lake.rows_read == 30


@pytest.mark.parametrize("typed", ["2026-01-05 09:30 EST", "2026-03-09 09:30 EDT", "2026-01-05 16:30 ICT"])
def test_a_time_zone_abbreviation_is_refused_not_dropped(typed: str) -> None:
    """pandas drops a zone it does not know (with a FutureWarning) and the time was read as UTC:
    the US open typed as "09:30 EST" became 09:30 UTC, five hours early, with no error."""
    with pytest.raises(ValueError, match=rf"cannot read the time zone of {re.escape(repr(typed))}: .*-05:00"):
        to_utc(typed)
    assert to_utc("2026-01-05 09:30 UTC") == to_utc("2026-01-05 09:30Z") == datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def test_a_time_without_a_date_is_on_todays_utc_date_whatever_the_machines_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pandas puts "14:30" on the machine's local date: in Hanoi before 07:00, tomorrow's in UTC."""
    import time

    answers = []
    for zone in ("Etc/GMT-14", "Etc/GMT+12"):  # 26 hours apart: one of them is on another date than UTC
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        try:
            answers.append((datetime.now(UTC).date(), to_utc("14:30"), to_utc("9:30:15 ")))
        finally:
            monkeypatch.undo()
            time.tzset()
    for today, afternoon, morning in answers:
        assert afternoon == datetime(today.year, today.month, today.day, 14, 30, tzinfo=UTC)
        assert morning == datetime(today.year, today.month, today.day, 9, 30, 15, tzinfo=UTC)


def test_latest_bar_per_symbol_of_an_empty_table_has_the_columns_types(lakehouse: Lakehouse, tmp_path: Path) -> None:
    """With no bars yet it gave object columns, so ``latest["window_start"].dt`` failed where the
    same cell works once data arrives."""
    settings = embedded_settings(tmp_path)
    synthetic.create_tables(settings, (BARS_1M,))

    empty = Lakehouse(settings).latest_bar_per_symbol()

    assert empty.empty
    assert empty.dtypes.to_dict() == lakehouse.latest_bar_per_symbol().dtypes.to_dict()
    assert empty["window_start"].dt.tz is not None


def test_reads_skip_the_snapshot_history_and_see_every_new_commit(tmp_path: Path) -> None:
    """A reader following a live table loads it on each commit; it parses the current state only
    (the history can hold 3,600 snapshots), so a read must still see exactly the current data."""
    settings = embedded_settings(tmp_path)
    synthetic.write_demo_lakehouse(settings, symbols=SYMBOLS, day=DAY, commits=COMMITS)
    lake = Lakehouse(settings, clock=lambda: NOW)
    whole = lake.table(TRADES)
    history = len(whole.metadata.snapshots)
    assert history >= COMMITS
    day = (f"{DAY} 00:00", f"{DAY} 23:59")
    before = lake.trades(list(SYMBOLS), *day)
    assert len(before) == whole.scan().to_arrow().num_rows > 0
    read = lake._readable(TRADES)
    assert [s.snapshot_id for s in read.metadata.snapshots] == [whole.current_snapshot().snapshot_id]
    assert lake.table_ages([TRADES])["snapshots"].tolist() == [history]

    one_more = whole.scan(limit=1).to_arrow()
    id_field = one_more.schema.field("trade_id")
    one_more = one_more.set_column(one_more.schema.get_field_index("trade_id"), id_field,
                                   pa.array(["one-more"], id_field.type))
    synthetic.append_rows(whole, one_more)
    after = lake.trades(list(SYMBOLS), *day)
    assert len(after) == len(before) + 1 and "one-more" in set(after["trade_id"])
    assert lake.table_ages([TRADES])["snapshots"].tolist() == [history + 1]
    assert len(lake._readable(TRADES).metadata.snapshots) == 1
