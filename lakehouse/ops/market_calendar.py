"""When a market's trading day is over, and when its bars may be rebuilt: pure, standard library only.

Standard library only on purpose: the Airflow DAGs import this module inside Airflow's own
virtualenv, which does not have the project's dependencies.

A trading day is a weekday in the market's own time zone (exchange holidays are not modelled: a
rebuild of a holiday finds no trades and writes no bars, which is harmless). ``rebuild_bars``
replaces whole UTC days and refuses a day whose last window can still change, so a day's bars are
ready to rebuild only when both the session has closed and every UTC day the session touches is
over, plus the streaming job's allowed lateness.

* US (NYSE/Nasdaq): America/New_York, regular session 09:30-16:00. The session lies inside one UTC
  day (13:30-21:00 UTC in winter), so the rebuild waits for 00:00 UTC of the next day.
* VN (HOSE/HNX): Asia/Ho_Chi_Minh (UTC+7, no daylight saving), 09:00-15:00 with the closing auction
  (ATC) 14:30-14:45 and put-through trades to 15:00; the rebuild waits for 00:00 UTC = 07:00 local
  of the next day, before the next session opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Market:
    name: str
    timezone: str  # IANA name; session times below are local wall-clock times in it
    session_open_local: time
    session_close_local: time
    source: str  # the trades' source for this market (lakehouse.messages.Source value)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


US = Market("us", "America/New_York", time(9, 30), time(16, 0), "finnhub")
VN = Market("vn", "Asia/Ho_Chi_Minh", time(9, 0), time(15, 0), "vnstock")
MARKETS = {market.name: market for market in (US, VN)}


def is_trading_day(market: Market, day: date) -> bool:
    """Monday to Friday in the market's calendar (``day`` is the local date)."""
    del market  # every market here trades Monday to Friday
    return day.weekday() < 5


def session_utc(market: Market, day: date) -> tuple[datetime, datetime]:
    """The session of the local date ``day`` as [open, close) in UTC (daylight saving applied)."""
    opens = datetime.combine(day, market.session_open_local, tzinfo=market.zone)
    closes = datetime.combine(day, market.session_close_local, tzinfo=market.zone)
    return opens.astimezone(UTC), closes.astimezone(UTC)


def utc_days_of_session(market: Market, day: date) -> list[date]:
    """The UTC days the session of the local date ``day`` touches (what ``rebuild_bars --day`` takes)."""
    opens, closes = session_utc(market, day)
    last = (closes - timedelta(microseconds=1)).date()
    days, current = [], opens.date()
    while current <= last:
        days.append(current)
        current += timedelta(days=1)
    return days


def rebuild_ready_utc(market: Market, day: date, allowed_lateness_seconds: float) -> datetime:
    """The earliest UTC moment the bars of the session of ``day`` can be rebuilt: the session has
    closed and every UTC day it touches is over, plus the allowed lateness."""
    _, closes = session_utc(market, day)
    last_utc_day_end = datetime.combine(utc_days_of_session(market, day)[-1] + timedelta(days=1), time(0), tzinfo=UTC)
    return max(closes, last_utc_day_end) + timedelta(seconds=allowed_lateness_seconds)


def in_session(market: Market, moment: datetime) -> bool:
    """Whether ``moment`` (timezone-aware) is inside the market's regular session of its local date."""
    day = session_date(market, moment)
    opens, closes = session_utc(market, day)
    return is_trading_day(market, day) and opens <= moment < closes


def session_date(market: Market, moment: datetime) -> date:
    """The local date of ``moment`` (timezone-aware) in the market's time zone: how a DAG run's
    logical date, scheduled in the market's time zone, names its trading day."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    return moment.astimezone(market.zone).date()
