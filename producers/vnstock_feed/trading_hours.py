"""Vietnamese equity market hours (HOSE and HNX), as pure functions of an aware datetime.

Continuous sessions are 09:00-11:30 and 13:00-15:00 Asia/Ho_Chi_Minh, Monday to Friday (the
afternoon includes the ATC auction and put-through until 15:00). Public holidays (Tet etc.) are
not modelled: a poll on a holiday simply finds nothing new. Times are timezone-aware; a naive
datetime is rejected rather than guessed.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from lakehouse.times import from_epoch_ms

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
SESSIONS: tuple[tuple[time, time], ...] = ((time(9, 0), time(11, 30)), (time(13, 0), time(15, 0)))


def _local(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    return at.astimezone(VN_TZ)


def is_trading_day(day: date) -> bool:
    return day.weekday() < 5


def is_trading_time(at: datetime) -> bool:
    """True inside a HOSE/HNX session (start inclusive, end exclusive)."""
    local = _local(at)
    return is_trading_day(local.date()) and any(start <= local.time() < end for start, end in SESSIONS)


def next_session_start(at: datetime) -> datetime:
    """The start of the session in progress at ``at``, or of the next one (aware, in VN time)."""
    local = _local(at)
    for days_ahead in range(0, 8):
        day = local.date() + timedelta(days=days_ahead)
        if not is_trading_day(day):
            continue
        for start, end in SESSIONS:
            session_start = datetime.combine(day, start, VN_TZ)
            if local < datetime.combine(day, end, VN_TZ):
                return session_start
    raise AssertionError("unreachable: a trading day occurs within a week")


def seconds_until_open(at: datetime) -> float:
    """0 inside a session, else the seconds until the next one starts."""
    return max(0.0, (next_session_start(at) - _local(at)).total_seconds())


def session_minutes(day: date) -> list[datetime]:
    """Start of every 1-minute bar of ``day``'s sessions (aware, VN time); empty on weekends."""
    if not is_trading_day(day):
        return []
    minutes: list[datetime] = []
    for start, end in SESSIONS:
        cursor, stop = datetime.combine(day, start, VN_TZ), datetime.combine(day, end, VN_TZ)
        while cursor < stop:
            minutes.append(cursor)
            cursor += timedelta(minutes=1)
    return minutes


def day_close(day: date) -> datetime:
    """When ``day``'s daily bar is final: the end of the afternoon session."""
    return datetime.combine(day, SESSIONS[-1][1], VN_TZ)


def local_date(at_ms: int) -> date:
    return from_epoch_ms(at_ms).astimezone(VN_TZ).date()
