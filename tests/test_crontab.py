"""``orchestration/cron/lakehouse.crontab``: read as cron reads it (five time fields, then a command
run by bash), so its entries can be checked without installing it."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse.ops.market_calendar import US, session_utc
from lakehouse.settings import PROJECT_ROOT
from producers.vnstock_feed.trading_hours import SESSIONS as VN_SESSIONS
from producers.vnstock_feed.trading_hours import VN_TZ

CRONTAB = PROJECT_ROOT / "orchestration" / "cron" / "lakehouse.crontab"
_ASSIGNMENT = re.compile(r"^[A-Z_]+=")


def entries(crontab: Path = CRONTAB) -> list[tuple[list[str], str]]:
    """(the five time fields, the command) of each entry; comments and variables skipped."""
    found = []
    for line in crontab.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or _ASSIGNMENT.match(line):
            continue
        *fields, command = line.split(maxsplit=5)
        found.append((fields, command))
    return found


def test_every_entry_changes_to_the_project_path_quoted() -> None:
    # 'cd $LAKEHOUSE' split a project path with a space into two words.
    commands = [command for _, command in entries()]
    assert commands and all(command.startswith('cd "$LAKEHOUSE" && ') for command in commands), commands


def field_values(field: str, low: int, high: int) -> set[int]:
    """The values a cron time field (``*``, ``a-b``, ``*/n``, ``a-b/n``, lists of them) takes."""
    values: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        start, _, end = (f"{low}-{high}" if span == "*" else span).partition("-")
        values.update(range(int(start), int(end or start) + 1, int(step or 1)))
    return values


def fires_at(fields: list[str], at: datetime) -> bool:
    minute, hour, day, month, weekday = fields
    return (at.minute in field_values(minute, 0, 59) and at.hour in field_values(hour, 0, 23)
            and at.day in field_values(day, 1, 31) and at.month in field_values(month, 1, 12)
            and at.isoweekday() % 7 in field_values(weekday, 0, 7))


GRACE = timedelta(minutes=15)  # trades must arrive before the newest one is younger than the threshold


def some_market_has_traded_for_a_while(at: datetime) -> bool:
    """At ``at`` (UTC) a market is in session and opened at least ``GRACE`` ago."""
    opens, closes = session_utc(US, at.date())
    if at.weekday() < 5 and opens + GRACE <= at <= closes:
        return True
    local = at.astimezone(VN_TZ)
    return local.weekday() < 5 and any(
        datetime.combine(local.date(), start, VN_TZ) + GRACE <= local <= datetime.combine(local.date(), end, VN_TZ)
        for start, end in VN_SESSIONS
    )


@pytest.mark.parametrize("monday", [date(2026, 1, 5), date(2026, 7, 6)], ids=["EST", "EDT"])
def test_the_health_check_runs_only_while_a_market_trades_so_nights_send_no_stale_mail(monday: date) -> None:
    status = [fields for fields, command in entries() if "lakehouse status" in command]
    start = datetime.combine(monday, datetime.min.time(), UTC)
    runs = [at for at in (start + timedelta(minutes=5 * n) for n in range(7 * 288))
            if any(fires_at(fields, at) for fields in status)]

    assert [at for at in runs if not some_market_has_traded_for_a_while(at)] == []  # was: every 5 min, all night
    per_day = {day: sum(at.date() == day for at in runs) for day in {at.date() for at in runs}}
    assert sorted(per_day) == [monday + timedelta(days=n) for n in range(5)]
    assert min(per_day.values()) >= 100  # VN's two sessions and the US hours open in both seasons
