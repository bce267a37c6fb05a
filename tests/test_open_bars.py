"""Open bars combine exactly: the bar of a window's trades does not depend on how they were batched."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.bars_progress import BarsProgress, BarsProgressLog
from lakehouse.open_bars import (
    OpenBar,
    apply_partials,
    combine,
    first_window_after,
    split_by_knowledge,
    still_open,
)

START_US = 1_790_000_040_000_000  # a minute boundary
MINUTE_US = 60_000_000

# (order key, price in quarters, volume): keys are unique per trade, as Kafka positions are.
trades_strategy = st.lists(
    st.tuples(st.integers(0, 10**30), st.integers(1, 4000), st.integers(0, 500)),
    min_size=1,
    max_size=40,
    unique_by=lambda trade: trade[0],
)


def bar_of(trades: list[tuple[int, int, int]], symbol: str = "AAPL", start_us: int = START_US) -> OpenBar:
    """The bar of ``trades`` computed directly: the reference side."""
    first, last = min(trades), max(trades)
    return OpenBar(
        symbol=symbol,
        window_start_us=start_us,
        window_seconds=60,
        open=first[1] / 4,
        open_key=first[0],
        high=max(t[1] for t in trades) / 4,
        low=min(t[1] for t in trades) / 4,
        close=last[1] / 4,
        close_key=last[0],
        volume=float(sum(t[2] for t in trades)),
        trade_count=len(trades),
        notional=sum(t[1] / 4 * t[2] for t in trades),
    )


@given(trades_strategy, st.lists(st.integers(0, 39), max_size=5))
def test_combining_the_bars_of_any_batching_gives_the_bar_of_all_trades(
    trades: list[tuple[int, int, int]], cuts: list[int]
) -> None:
    bounds = sorted({0, len(trades), *(c for c in cuts if c < len(trades))})
    batches = [trades[a:b] for a, b in itertools.pairwise(bounds) if trades[a:b]]
    held: dict = {}
    for batch in batches:
        held, changed = apply_partials(held, [bar_of(batch)])
        assert changed == [held[("AAPL", START_US)]]
    assert held[("AAPL", START_US)] == bar_of(trades)


def test_open_and_close_follow_the_order_key_not_the_batch_order() -> None:
    late_in_order = bar_of([(5, 400, 1)])  # arrives second but traded first
    earlier_batch = bar_of([(7, 404, 2), (9, 408, 3)])
    bar = combine(earlier_batch, late_in_order)
    assert (bar.open, bar.close, bar.high, bar.low) == (100.0, 102.0, 102.0, 100.0)
    assert (bar.volume, bar.trade_count, bar.vwap) == (6.0, 3, (100.0 + 202.0 + 306.0) / 6)


def test_zero_volume_bar_has_no_vwap() -> None:
    assert bar_of([(1, 400, 0), (2, 404, 0)]).vwap is None


def test_bars_of_different_windows_are_never_combined() -> None:
    with pytest.raises(ValueError, match="different windows"):
        combine(bar_of([(1, 400, 1)]), bar_of([(2, 400, 1)], start_us=START_US + MINUTE_US))


def test_only_windows_ending_after_the_watermark_stay_open() -> None:
    held = {bar.key: bar for bar in (bar_of([(1, 400, 1)]), bar_of([(2, 400, 1)], start_us=START_US + MINUTE_US))}
    assert set(still_open(held, START_US + MINUTE_US)) == {("AAPL", START_US + MINUTE_US)}
    assert set(still_open(held, START_US + MINUTE_US - 1)) == set(held)
    assert still_open(held, None) == held


def test_open_bars_survive_a_json_round_trip_with_38_digit_keys() -> None:
    bar = bar_of([(10**37 + 3, 400, 1), (10**37 + 9, 404, 2)])
    assert OpenBar.from_json(bar.to_json()) == bar


def test_progress_log_returns_what_the_batch_before_recorded(tmp_path: Path) -> None:
    log = BarsProgressLog(str(tmp_path / "progress"))
    bar = bar_of([(10**37 + 3, 400, 1)])
    mark = datetime(2026, 11, 25, 14, 30, 5, 123456, tzinfo=UTC)
    assert log.before(0) == BarsProgress()
    recorded = BarsProgress(mark, {bar.key: bar}, START_US + MINUTE_US, mark - timedelta(minutes=10))
    log.record(3, recorded)
    assert log.before(4) == recorded
    assert BarsProgressLog(str(tmp_path / "progress")).before(4) == recorded  # read back after a restart
    assert log.before(3) == BarsProgress(), "a replay of batch 3 starts from what stood before it"


def test_progress_written_before_open_bars_were_kept_reads_as_no_open_bars(tmp_path: Path) -> None:
    (tmp_path / "0.json").write_text(json.dumps({"high_water_mark_us": 1_790_000_040_000_000}))
    progress = BarsProgressLog(str(tmp_path)).before(1)
    assert progress.open_bars == {}
    assert progress.high_water_mark == datetime.fromtimestamp(1_790_000_040, tz=UTC)
    assert progress.tracked_from_us is None


def test_tracking_begins_at_the_first_window_after_the_newest_trade() -> None:
    assert first_window_after(START_US, 60) == START_US + MINUTE_US
    assert first_window_after(START_US + MINUTE_US - 1, 60) == START_US + MINUTE_US
    assert first_window_after(START_US - 1, 60) == START_US


def test_a_window_not_held_is_read_from_the_table_unless_tracked_from_its_start() -> None:
    held = bar_of([(1, 400, 1)], "AAPL", START_US)
    held_again = bar_of([(2, 404, 1)], "AAPL", START_US)
    before_tracking = bar_of([(3, 400, 1)], "MSFT", START_US)
    tracked = bar_of([(4, 400, 1)], "MSFT", START_US + MINUTE_US)
    partials = [held_again, before_tracking, tracked]
    tracked_from = START_US + MINUTE_US

    assert split_by_knowledge(partials, {held.key: held}, tracked_from) == (
        [held_again, tracked], [before_tracking]
    )
    # Before the job has set where tracking begins, every window it does not hold is read.
    assert split_by_knowledge(partials, {held.key: held}, None) == ([held_again], [before_tracking, tracked])


def test_a_bars_commit_summary_names_its_batch_run_and_open_bars_files_and_reads_back() -> None:
    from lakehouse.bars_commit import BarsCommitRecord, commit_summary, record_from_summary

    summary = commit_summary(7, "run-a", ["gs://w/b/data/2.parquet", "gs://w/b/data/1.parquet"])
    assert record_from_summary({**summary, "added-data-files": "2"}) == BarsCommitRecord(
        7, "run-a", frozenset({"gs://w/b/data/1.parquet", "gs://w/b/data/2.parquet"}))
    assert record_from_summary(commit_summary(8, "run-a", [])) == BarsCommitRecord(8, "run-a", frozenset())
    assert record_from_summary({"operation": "replace", "added-data-files": "40"}) is None  # a fold's


def test_a_progress_log_keeps_one_run_id_and_a_new_log_at_the_same_path_gets_another(tmp_path: Path) -> None:
    import shutil

    log = BarsProgressLog(str(tmp_path / "progress"))
    first = log.run_id()
    assert first == log.run_id() == BarsProgressLog(str(tmp_path / "progress")).run_id()
    shutil.rmtree(tmp_path / "progress")  # the checkpoint deleted to rebuild the bars
    assert BarsProgressLog(str(tmp_path / "progress")).run_id() != first
