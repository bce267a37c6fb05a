"""The retry policy of commits that lose races to other writers (``with_commit_retry``)."""

from __future__ import annotations

import pytest

from lakehouse import iceberg_writes
from lakehouse.iceberg_writes import COMMIT_CONFLICT_MARKERS, with_commit_retry

CONFLICT = "org.apache.iceberg.exceptions.ValidationException: Missing required files to delete: x.parquet"


class Clock:
    """``time`` as ``with_commit_retry`` sees it: sleeping moves the clock, and each try takes ``per_try``."""

    def __init__(self, per_try: float) -> None:
        self.now, self.per_try, self.slept = 0.0, per_try, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def losing(clock: Clock, losses: int, error: str = CONFLICT):
    """A write that loses ``losses`` races, then commits; the tries it was given."""
    tries = []

    def write() -> str:
        tries.append(clock.now)
        clock.now += clock.per_try
        if len(tries) <= losses:
            raise RuntimeError(error)
        return "committed"

    return write, tries


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(per_try=5.0)  # a MERGE on a loaded machine
    monkeypatch.setattr(iceberg_writes.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(iceberg_writes.time, "sleep", fake.sleep)
    monkeypatch.setattr(iceberg_writes.random, "random", lambda: 0.5)  # the backoff without its jitter
    return fake


def test_without_patience_a_write_gives_up_after_its_attempts(clock: Clock) -> None:
    write, tries = losing(clock, losses=8)
    with pytest.raises(RuntimeError, match="Missing required files"):
        with_commit_retry(write, "t", attempts=8, retried=COMMIT_CONFLICT_MARKERS)
    assert len(tries) == 8 and len(clock.slept) == 7


def test_with_patience_a_write_keeps_trying_past_its_attempts_until_it_wins(clock: Clock) -> None:
    """Twelve lost races in a row (a compaction every few seconds, tries of 5 s each) and then a win:
    with 120 s of patience the write commits on its 13th try."""
    write, tries = losing(clock, losses=12)
    assert with_commit_retry(write, "t", attempts=8, retried=COMMIT_CONFLICT_MARKERS,
                             patience_seconds=120.0) == "committed"
    assert len(tries) == 13
    assert clock.slept[:6] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert set(clock.slept[6:]) == {8.0}  # capped, past the attempts too


def test_patience_ends_and_the_last_error_is_raised(clock: Clock) -> None:
    write, tries = losing(clock, losses=10**6)
    with pytest.raises(RuntimeError, match="Missing required files"):
        with_commit_retry(write, "t", attempts=8, retried=COMMIT_CONFLICT_MARKERS, patience_seconds=120.0)
    # Retried while a failure came within the patience; the first failure after it is raised.
    assert tries[-2] + clock.per_try < 120.0 <= tries[-1] + clock.per_try
    assert len(tries) > 8


def test_an_error_that_is_not_a_race_is_raised_at_once_whatever_the_patience(clock: Clock) -> None:
    write, tries = losing(clock, losses=1, error="AnalysisException: column not found")
    with pytest.raises(RuntimeError, match="column not found"):
        with_commit_retry(write, "t", retried=COMMIT_CONFLICT_MARKERS, patience_seconds=120.0)
    assert len(tries) == 1 and clock.slept == []
