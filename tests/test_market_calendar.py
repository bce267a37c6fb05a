"""The market calendar the daily rebuild DAGs wait on: sessions, weekends, daylight saving, UTC days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from lakehouse.ops.market_calendar import (
    US,
    VN,
    in_session,
    is_trading_day,
    rebuild_ready_utc,
    session_date,
    session_utc,
    utc_days_of_session,
)


def test_us_session_closes_at_16_new_york_time_in_winter_and_summer():
    assert session_utc(US, date(2026, 1, 15)) == (datetime(2026, 1, 15, 14, 30, tzinfo=UTC),
                                                  datetime(2026, 1, 15, 21, 0, tzinfo=UTC))
    assert session_utc(US, date(2026, 7, 15))[1] == datetime(2026, 7, 15, 20, 0, tzinfo=UTC)


def test_vn_session_runs_9_to_15_ho_chi_minh_time_which_is_utc_plus_7_all_year():
    assert session_utc(VN, date(2026, 1, 15)) == (datetime(2026, 1, 15, 2, 0, tzinfo=UTC),
                                                  datetime(2026, 1, 15, 8, 0, tzinfo=UTC))
    assert session_utc(VN, date(2026, 7, 15))[1] == datetime(2026, 7, 15, 8, 0, tzinfo=UTC)


def test_weekends_are_not_trading_days_in_either_market():
    week = [date(2026, 3, 2) + timedelta(days=n) for n in range(7)]  # Monday .. Sunday
    assert [is_trading_day(US, d) for d in week] == [True] * 5 + [False] * 2
    assert [is_trading_day(VN, d) for d in week] == [True] * 5 + [False] * 2


def test_rebuild_waits_for_the_utc_day_to_end_plus_the_lateness_after_the_close():
    assert rebuild_ready_utc(US, date(2026, 3, 2), 60) == datetime(2026, 3, 3, 0, 1, tzinfo=UTC)
    assert rebuild_ready_utc(VN, date(2026, 3, 2), 60) == datetime(2026, 3, 3, 0, 1, tzinfo=UTC)


def test_vn_rebuild_is_ready_before_the_next_vn_session_opens():
    day = date(2026, 3, 2)
    assert rebuild_ready_utc(VN, day, 60) < session_utc(VN, day + timedelta(days=1))[0]


def test_a_run_scheduled_after_the_new_york_close_names_the_new_york_date():
    # 16:30 in New York on 2 March is 21:30 UTC the same day; 20:30 New York is already 3 March in UTC.
    assert session_date(US, datetime(2026, 3, 2, 21, 30, tzinfo=UTC)) == date(2026, 3, 2)
    assert session_date(US, datetime(2026, 3, 3, 1, 30, tzinfo=UTC)) == date(2026, 3, 2)
    assert session_date(VN, datetime(2026, 3, 2, 8, 30, tzinfo=UTC)) == date(2026, 3, 2)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)), st.sampled_from([US, VN]),
       st.floats(min_value=0, max_value=3_600))
def test_every_session_is_inside_the_utc_days_rebuilt_and_ready_after_they_end(day, market, lateness):
    opens, closes = session_utc(market, day)
    utc_days = utc_days_of_session(market, day)
    assert utc_days[0] == opens.date() and utc_days[-1] == (closes - timedelta(microseconds=1)).date()
    ready = rebuild_ready_utc(market, day, lateness)
    assert ready >= closes + timedelta(seconds=lateness)
    assert ready >= datetime.combine(utc_days[-1] + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def test_in_session_follows_the_local_session_across_daylight_saving_and_weekends() -> None:
    summer, winter = date(2026, 7, 6), date(2026, 12, 7)  # Mondays: EDT, then EST
    assert in_session(US, datetime(2026, 7, 6, 13, 30, tzinfo=UTC))
    assert not in_session(US, datetime(2026, 7, 6, 13, 29, 59, tzinfo=UTC))
    assert not in_session(US, datetime(2026, 12, 7, 14, 29, 59, tzinfo=UTC))
    assert in_session(US, datetime(2026, 12, 7, 20, 59, 59, tzinfo=UTC))
    assert not in_session(US, datetime(2026, 12, 7, 21, 0, tzinfo=UTC))  # the close is exclusive
    assert not in_session(US, datetime(2026, 7, 11, 15, 0, tzinfo=UTC))  # a Saturday
    assert in_session(VN, datetime(2026, 7, 6, 2, 0, tzinfo=UTC))
    assert not in_session(VN, datetime(2026, 7, 6, 8, 0, tzinfo=UTC))
    assert (summer, winter) == (session_date(US, datetime(2026, 7, 6, 16, tzinfo=UTC)),
                                session_date(US, datetime(2026, 12, 7, 16, tzinfo=UTC)))
