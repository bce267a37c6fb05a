"""Time arguments as analysts type them, made exact: every instant is a tz-aware UTC ``datetime``.

A naive value (``"2026-01-05 14:30"``, ``datetime(2026, 1, 5)``) is read as UTC, never as the
machine's local zone, so a notebook gives the same answer on every laptop. A value with a zone is
converted to UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd

from lakehouse.reading.errors import EmptyRangeError

TimeLike = datetime | date | str | pd.Timestamp


def to_utc(value: TimeLike) -> datetime:
    """Parse ``value`` into a tz-aware UTC ``datetime`` (microsecond precision, as Iceberg stores)."""
    if isinstance(value, str):
        try:
            stamp = pd.Timestamp(value)
        except ValueError as exc:
            raise ValueError(f"cannot read {value!r} as a time; use ISO 8601, e.g. '2026-01-05 14:30'") from exc
    elif isinstance(value, datetime | date):
        stamp = pd.Timestamp(value)
    else:
        raise TypeError(f"expected a datetime, date or ISO string, got {type(value).__name__}")
    if pd.isna(stamp):
        raise ValueError(f"cannot read {value!r} as a time")
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


def time_range(start: TimeLike, end: TimeLike) -> tuple[datetime, datetime]:
    """The half-open range ``[start, end)`` in UTC; raise ``EmptyRangeError`` unless start < end."""
    start_utc, end_utc = to_utc(start), to_utc(end)
    if start_utc >= end_utc:
        raise EmptyRangeError(
            f"empty time range: start {start_utc.isoformat()} is not before end {end_utc.isoformat()} "
            "(the range is [start, end), UTC)"
        )
    return start_utc, end_utc


def floor_to(moment: datetime, seconds: int) -> datetime:
    """Start of the epoch-aligned ``seconds``-long window holding ``moment`` (as the bars are aligned)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    micros = (moment - epoch) // timedelta(microseconds=1)
    step = seconds * 1_000_000
    return epoch + timedelta(microseconds=micros - micros % step)


def utc_now() -> datetime:
    return datetime.now(UTC)
