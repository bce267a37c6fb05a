"""Pure parts of the vnstock producer: market hours, row conversion, high-water marks, pacing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.messages import BarInterval
from producers.backoff import Backoff
from producers.vnstock_feed.convert import (
    TradeMark,
    bar_is_final,
    bars_from_rows,
    new_final_bars,
    new_trades,
    trades_from_rows,
)
from producers.vnstock_feed.source import RequestPacer, _epoch_ms, chart_rows
from producers.vnstock_feed.trading_hours import VN_TZ, is_trading_time, next_session_start, session_minutes
from producers.vnstock_feed.watermark import HighWaterMarks


def vn(*args: int) -> datetime:
    return datetime(*args, tzinfo=VN_TZ)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_sessions_are_morning_and_afternoon_on_weekdays_only() -> None:
    assert is_trading_time(vn(2025, 6, 3, 9, 0))  # Tuesday open
    assert is_trading_time(vn(2025, 6, 3, 11, 29, 59))
    assert not is_trading_time(vn(2025, 6, 3, 11, 30))  # lunch
    assert is_trading_time(vn(2025, 6, 3, 14, 59))
    assert not is_trading_time(vn(2025, 6, 3, 15, 0))
    assert not is_trading_time(vn(2025, 6, 7, 10, 0))  # Saturday
    assert is_trading_time(datetime(2025, 6, 3, 2, 30, tzinfo=UTC))  # 09:30 in Hanoi


def test_next_session_after_friday_close_is_monday_morning() -> None:
    assert next_session_start(vn(2025, 6, 6, 15, 30)) == vn(2025, 6, 9, 9, 0)
    assert next_session_start(vn(2025, 6, 3, 12, 0)) == vn(2025, 6, 3, 13, 0)


def test_a_trading_day_has_270_one_minute_bars() -> None:
    assert len(session_minutes(date(2025, 6, 3))) == 150 + 120
    assert session_minutes(date(2025, 6, 8)) == []


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_next_session_start_is_never_in_the_past_and_is_a_trading_time(at: datetime) -> None:
    start = next_session_start(at)
    assert is_trading_time(start)
    assert start <= at or not is_trading_time(at)


OPEN_MS = ms(vn(2025, 6, 3, 9, 0))  # a session's first trade and its bar: times the contract takes


def trade_rows(*specs: tuple[int, str]) -> list[dict]:
    """Rows at ``OPEN_MS`` plus each spec's offset in milliseconds."""
    return [{"time_ms": OPEN_MS + t, "price": 95.4, "volume": 100, "match_type": "Buy", "id": i} for t, i in specs]


def test_new_trades_skip_what_the_mark_covers_including_same_second_ids() -> None:
    first = trades_from_rows("FPT", trade_rows((1000, "a"), (2000, "b"), (2000, "c")), OPEN_MS + 5000).trades
    published, mark = new_trades(first, TradeMark())
    assert len(published) == 3 and mark.time_ms == OPEN_MS + 2000 and len(mark.ids_at_time) == 2
    later = trades_from_rows(
        "FPT", trade_rows((2000, "b"), (2000, "c"), (2000, "d"), (3000, "e")), OPEN_MS + 6000
    ).trades
    again, mark = new_trades(later, mark)
    assert [t.event_time_ms - OPEN_MS for t in again] == [2000, 3000]
    assert new_trades(later, mark) == ([], mark)


def test_bad_rows_are_quarantined_not_raised() -> None:
    out = trades_from_rows("FPT", [{"time_ms": OPEN_MS, "price": -1, "volume": 1, "id": "x"}, {"price": 1}],
                           OPEN_MS + 5)
    assert not out.trades and len(out.quarantined) == 2
    bars = bars_from_rows(
        "FPT",
        BarInterval.MINUTE_1,
        [{"time_ms": OPEN_MS, "open": 2, "high": 1, "low": 1, "close": 1, "volume": 1}],
        OPEN_MS + 5,
    )
    assert not bars.bars and "low <= open" in bars.quarantined[0].reason


def test_only_final_bars_are_published_and_a_forming_bar_stops_the_mark() -> None:
    start = ms(vn(2025, 6, 3, 10, 0))
    rows = [
        {"time_ms": start + i * 60_000, "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1}
        for i in range(3)
    ]
    bars = bars_from_rows("FPT", BarInterval.MINUTE_1, rows, start).bars
    published = new_final_bars(bars, -1, start + 2 * 60_000 + 30_000)
    assert [b.bar_start_ms for b in published] == [start, start + 60_000]
    assert new_final_bars(bars, start + 60_000, start + 10 * 60_000)[0].bar_start_ms == start + 120_000


def test_a_daily_bar_is_final_after_the_afternoon_close() -> None:
    day_start = ms(vn(2025, 6, 3))
    assert not bar_is_final(BarInterval.DAY_1, day_start, ms(vn(2025, 6, 3, 14, 59)))
    assert bar_is_final(BarInterval.DAY_1, day_start, ms(vn(2025, 6, 3, 15, 0)))


def test_high_water_marks_survive_a_restart(tmp_path) -> None:
    marks = HighWaterMarks(tmp_path / "hwm.json")
    marks.trades["FPT"] = TradeMark(2000, frozenset({"x", "y"}))
    marks.bars[HighWaterMarks.bar_key("FPT", BarInterval.DAY_1)] = 123
    marks.save()
    reloaded = HighWaterMarks(tmp_path / "hwm.json")
    assert reloaded.trade_mark("FPT") == TradeMark(2000, frozenset({"x", "y"}))
    assert (
        reloaded.bar_mark("FPT", BarInterval.DAY_1) == 123
        and reloaded.bar_mark("HPG", BarInterval.DAY_1) == -1
    )


def test_pacer_waits_instead_of_exceeding_the_quota() -> None:
    now = [0.0]
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        now[0] += seconds
        return False

    pacer = RequestPacer(2, clock=lambda: now[0], wait=wait)
    assert pacer.acquire() and pacer.acquire() and not waits
    assert pacer.acquire() and 59 < waits[0] <= 60.1


@given(st.integers(min_value=0, max_value=10_000), st.floats(min_value=0, max_value=1))
def test_backoff_grows_to_its_cap_with_bounded_jitter(attempt: int, draw: float) -> None:
    policy = Backoff(initial_seconds=0.5, max_seconds=60, jitter=0.5)

    class Fixed:
        def random(self) -> float:
            return draw

    delay = policy.delay_seconds(attempt, Fixed())  # type: ignore[arg-type]
    ceiling = min(60, 0.5 * 2**attempt) if attempt < 64 else 60
    assert ceiling * 0.5 - 1e-9 <= delay <= ceiling + 1e-9


def test_vendor_times_become_the_same_epoch_ms_whatever_pandas_resolution() -> None:
    import pandas as pd

    local = pd.Series(pd.to_datetime(["2026-01-05 09:15:00.123", "2026-01-05 14:59:59.999"]))
    expected = [1_767_579_300_123, 1_767_599_999_999]  # 02:15:00.123 and 07:59:59.999 UTC
    for unit in ("ns", "us", "ms", "s"):
        stamps = local.dt.floor("s") if unit == "s" else local
        wanted = [ms - ms % 1000 for ms in expected] if unit == "s" else expected
        assert _epoch_ms(stamps.dt.as_unit(unit)) == wanted, unit
    assert _epoch_ms(local.dt.tz_localize(VN_TZ).dt.as_unit("us")) == expected


@pytest.mark.parametrize("pace", ["0", "-3"])
def test_a_pace_below_one_request_per_minute_is_refused_as_a_bad_argument(
    pace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from producers.vnstock_feed.__main__ import main

    with pytest.raises(SystemExit) as done:
        main(["--requests-per-minute", pace])  # was accepted; the pacer's first call raised IndexError
    assert done.value.code == 2
    assert f"argument --requests-per-minute: must be >= 1, got {pace}" in capsys.readouterr().err


def test_a_backfill_range_that_ends_before_it_starts_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from producers.vnstock_feed.__main__ import main

    with pytest.raises(SystemExit) as done:
        main(["--backfill", "2026-01-31:2026-01-02"])  # backfilled nothing and said nothing
    assert done.value.code == 2
    assert "the range ends before it starts: '2026-01-31:2026-01-02'" in capsys.readouterr().err


def _chart(starts: list[datetime], **overrides: dict[int, object]) -> list[dict[str, object]]:
    """A gap-chart answer in VCI's shape: prices in VND, times in epoch seconds (as strings)."""
    columns = {"t": [str(int(at.timestamp())) for at in starts], "o": [95_400] * len(starts),
               "h": [96_000] * len(starts), "l": [95_000] * len(starts), "c": [95_500] * len(starts),
               "v": [100 + i for i in range(len(starts))]}
    for field, values in overrides.items():
        for index, value in values.items():
            columns[field][index] = value
    return [{"symbol": "FPT", **columns}]


def test_chart_rows_read_each_bar_alone_in_vnstocks_units() -> None:
    rows = chart_rows(_chart([vn(2025, 6, 3, 9, 0), vn(2025, 6, 3, 9, 1)], o={1: "n/a"}), BarInterval.MINUTE_1)
    assert rows[0] | {"raw": None} == {"raw": None, "time_ms": ms(vn(2025, 6, 3, 9, 0)), "open": 95.4,
                                       "high": 96.0, "low": 95.0, "close": 95.5, "volume": 100.0}
    assert rows[1]["error"] == "open 'n/a' is not a number" and rows[1]["raw"]["o"] == "n/a"
    converted = bars_from_rows("FPT", BarInterval.MINUTE_1, rows, ms(vn(2025, 6, 3, 9, 5)))
    assert len(converted.bars) == 1 and len(converted.quarantined) == 1
    assert "open 'n/a' is not a number" in converted.quarantined[0].reason


def test_chart_rows_put_a_day_bar_at_midnight_in_hanoi_whatever_vci_stamps() -> None:
    rows = chart_rows(_chart([vn(2025, 6, 2, 0, 0), vn(2025, 6, 3, 9, 15)]), BarInterval.DAY_1)
    assert [r["time_ms"] for r in rows] == [ms(vn(2025, 6, 2)), ms(vn(2025, 6, 3))]


def test_chart_rows_of_uneven_or_hostile_columns_never_raise_per_bar() -> None:
    answer = _chart([vn(2025, 6, 3, 9, 0), vn(2025, 6, 3, 9, 1)], t={1: 10**13}, v={0: None})
    answer[0]["c"] = answer[0]["c"][:1]  # a column one bar short
    rows = chart_rows(answer, BarInterval.MINUTE_1)
    assert rows[0]["error"] == "volume None is not a number"
    assert "t 10000000000000 is not a time" in rows[1]["error"] and "close None" in rows[1]["error"]
    assert chart_rows([], BarInterval.MINUTE_1) == [] and chart_rows({"data": []}, BarInterval.DAY_1) == []
    for hostile in ("<html>", [None], 5):
        with pytest.raises(ValueError):
            chart_rows(hostile, BarInterval.MINUTE_1)


def test_chart_rows_build_five_minute_bars_and_quarantine_one_holding_a_bad_minute() -> None:
    minutes = [vn(2025, 6, 3, 9, m) for m in range(10)]
    rows = chart_rows(_chart(minutes, h={7: 99_000}, l={2: 94_000}, o={6: None}), BarInterval.MINUTE_5)
    assert len(rows) == 2
    assert rows[0] | {"raw": None} == {"raw": None, "time_ms": ms(vn(2025, 6, 3, 9, 0)), "open": 95.4,
                                       "high": 96.0, "low": 94.0, "close": 95.5,
                                       "volume": float(sum(range(100, 105)))}
    assert rows[1]["error"] == "a 1-minute bar in it: open None is not a number" and len(rows[1]["raw"]) == 5


@pytest.mark.parametrize("interval", [BarInterval.MINUTE_1, BarInterval.MINUTE_5, BarInterval.MINUTE_15,
                                      BarInterval.HOUR_1, BarInterval.DAY_1])
def test_chart_rows_of_a_clean_answer_are_vnstocks_own_conversion(interval: BarInterval) -> None:
    from vnstock.core.utils.transform import ohlc_to_df
    from vnstock.explorer.vci.const import _OHLC_DTYPE, _OHLC_MAP, _RESAMPLE_MAP

    from producers.vnstock_feed.source import _records

    step = timedelta(days=1) if interval == BarInterval.DAY_1 else timedelta(minutes=1)
    starts = [vn(2025, 6, 3, 9, 0) + m * step for m in range(30)]
    answer = _chart(starts, h={7: 99_100}, l={12: 94_300}, c={29: 95_910})
    series = answer[0]
    vnstocks = _records(ohlc_to_df(
        data=[dict(zip("tohlcv", values, strict=True)) for values in zip(*(series[f] for f in "tohlcv"), strict=True)],
        column_map=_OHLC_MAP, dtype_map=_OHLC_DTYPE, symbol="FPT", asset_type="stock", source="VCI",
        interval=interval.value, resample_map=_RESAMPLE_MAP,
    ))
    fields = ("time_ms", "open", "high", "low", "close", "volume")
    ours = [tuple(r[f] for f in fields) for r in chart_rows(answer, interval)]
    assert ours == [tuple(r[f] for f in fields) for r in vnstocks] and len(ours) >= 2
