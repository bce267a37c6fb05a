"""Time helpers, in one place: epoch conversions, the clock, and times as analysts type them.

Every instant is a tz-aware UTC ``datetime`` or an integer count since the Unix epoch whose unit is
in its name (``*_ms`` milliseconds, as the messages carry; ``*_us``/micros, as Iceberg and Spark
store timestamps). A naive value an analyst types (``"2026-01-05 14:30"``, ``datetime(2026, 1, 5)``)
is read as UTC, never as the machine's local zone, so a notebook gives the same answer on every
laptop. Producers import this module too: it imports nothing but the standard library (pandas
only inside ``to_utc``).
"""

from __future__ import annotations

import re
import time
import warnings
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    TimeLike = datetime | date | str | pd.Timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A date typed with the year last (05/01/2026, 5.1.2026, 01-05-2026): day and month cannot be told apart.
# A time of day alone (14:30, 9:30:15.5): pandas would put it on the machine's local date.
TIME_OF_DAY = re.compile(r"\s*\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*$")
DAY_OR_MONTH_FIRST = re.compile(r"\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b")


def to_epoch_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_epoch_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def from_epoch_ms(epoch_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=epoch_ms)


def now_ms() -> int:
    """The wall clock in epoch milliseconds, the unit of the messages' times."""
    return time.time_ns() // 1_000_000


def utc_now() -> datetime:
    return datetime.now(UTC)


def floor_to(moment: datetime, seconds: int) -> datetime:
    """Start of the epoch-aligned ``seconds``-long window holding ``moment`` (as the bars are aligned)."""
    micros = to_epoch_micros(moment)
    return from_epoch_micros(micros - micros % (seconds * 1_000_000))


def to_utc(value: TimeLike) -> datetime:
    """Parse ``value`` into a tz-aware UTC ``datetime`` (microsecond precision, as Iceberg stores); a
    naive value is UTC, a value with a zone is converted. ``"now"`` is the current UTC time and
    ``"today"`` the start of the current UTC day, and a time of day alone (``"14:30"``) is on the
    current UTC date (pandas reads all three in the machine's local zone, so a notebook in Hanoi
    asked for "now" got a time seven hours ahead). A date written day or month first
    (``"05/01/2026"``, ``"5.1.2026"``) is refused: pandas reads it month first, 1 May, where much of
    the world means 5 January. So is a zone abbreviation (``"09:30 EST"``), which pandas would drop,
    reading the time as UTC."""
    import pandas as pd

    if isinstance(value, str) and value.strip().lower() in ("now", "today"):
        now = utc_now()
        return now if value.strip().lower() == "now" else datetime(now.year, now.month, now.day, tzinfo=UTC)
    if isinstance(value, str) and TIME_OF_DAY.match(value):
        value = f"{utc_now().date().isoformat()} {value.strip()}"
    if isinstance(value, str) and DAY_OR_MONTH_FIRST.match(value):
        raise ValueError(f"ambiguous date {value!r}: day or month first? Write it year first, ISO 8601, "
                         "e.g. '2026-01-05 14:30'")
    if isinstance(value, str):
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            try:
                stamp = pd.Timestamp(value)
            except ValueError as exc:
                raise ValueError(f"cannot read {value!r} as a time; use ISO 8601, e.g. '2026-01-05 14:30'") from exc
        if any("un-recognized timezone" in str(w.message) for w in warned):  # pandas dropped it: UTC
            raise ValueError(f"cannot read the time zone of {value!r}: give its UTC offset, e.g. "
                             "'2026-01-05 09:30-05:00', or a datetime with tzinfo=ZoneInfo('America/New_York')")
    elif isinstance(value, datetime | date):
        stamp = pd.Timestamp(value)
    else:
        raise TypeError(f"expected a datetime, date or ISO string, got {type(value).__name__}")
    if pd.isna(stamp):
        raise ValueError(f"cannot read {value!r} as a time")
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()
