"""Maintenance compacts what streaming appends leave behind, without changing a single row."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse.maintenance import (
    CompactionIncomplete,
    MaintenanceCounters,
    MaintenancePolicy,
    Step,
    StepFailed,
    _compact,
    _Rewritten,
    compaction_where,
    expire_older_than,
    failed_steps,
    file_stats,
    first_open_day,
    maintain,
    maintain_tables,
    run_step,
)
from lakehouse.ops.batch_runs import maintenance_run
from lakehouse.settings import Settings
from lakehouse.tables import ALL_TABLES, BARS_1M, FEED_EVENTS, LATE_TRADES, TRADES, VENDOR_BARS, Compaction
from tests.conftest import created_in


def test_compaction_merges_small_files_and_keeps_every_row(spark, lake: Settings) -> None:
    settings = created_in(spark, lake)
    table = f"{settings.catalog.namespace}.maintenance_demo"
    qualified = f"{settings.catalog.name}.{table}"
    spark.sql(f"CREATE TABLE {qualified} (symbol string, n bigint) USING iceberg PARTITIONED BY (symbol)")
    for batch in range(8):  # eight micro-batch-like appends: eight small files per partition
        spark.sql(f"INSERT INTO {qualified} VALUES ('AAA', {batch}), ('BBB', {batch + 100})")
    rows_before = sorted(spark.table(qualified).collect())

    report = maintain(spark, settings.catalog.name, table,
                      MaintenancePolicy(snapshot_retention=timedelta(0), retain_last_snapshots=1))

    assert report.before.data_files == 16 and report.before.max_files_per_partition == 8
    assert report.after.data_files == 2 and report.after.max_files_per_partition == 1
    assert report.rewritten_files == 16 and report.added_files == 2
    assert report.expired_snapshots >= 8
    assert sorted(spark.table(qualified).collect()) == rows_before
    assert file_stats(spark, qualified).data_files == 2


def test_a_table_with_more_snapshots_than_allowed_keeps_only_the_newest(spark, lake: Settings) -> None:
    settings = created_in(spark, lake)
    table = f"{settings.catalog.namespace}.maintenance_many_snapshots"
    qualified = f"{settings.catalog.name}.{table}"
    spark.sql(f"CREATE TABLE {qualified} (symbol string, n bigint) USING iceberg PARTITIONED BY (symbol)")
    for batch in range(8):  # all of them younger than the retention
        spark.sql(f"INSERT INTO {qualified} VALUES ('AAA', {batch})")
    rows_before = sorted(spark.table(qualified).collect())

    report = maintain(spark, settings.catalog.name, table, MaintenancePolicy(
        snapshot_retention=timedelta(hours=6), retain_last_snapshots=1, max_snapshots=3))

    # 8 appends, then compaction commits one: the newest 3 stay.
    kept = spark.sql(f"SELECT operation FROM {qualified}.snapshots ORDER BY committed_at").collect()
    assert [row.operation for row in kept] == ["append", "append", "replace"]
    assert report.expired_snapshots == 6
    assert sorted(spark.table(qualified).collect()) == rows_before


def test_the_snapshot_cap_only_ever_expires_more_than_the_retention_would() -> None:
    now = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    retention = timedelta(hours=6)
    # Over the cap, its newest snapshots reach back one hour: everything before them goes.
    assert expire_older_than(now, retention, now - timedelta(hours=1)) == now - timedelta(hours=1)
    # Under the cap: the retention alone decides.
    assert expire_older_than(now, retention, None) == now - retention
    # Over the cap, but its newest snapshots span more than the retention: still the retention.
    assert expire_older_than(now, retention, now - timedelta(hours=8)) == now - retention


# ---------------------------------------------------------------- beside concurrent writers


def test_a_step_that_meets_conflicts_is_retried_with_growing_pauses_and_counted() -> None:
    counters = MaintenanceCounters()
    pauses: list[float] = []
    outcomes = iter([RuntimeError("org.apache.iceberg.exceptions.ValidationException: Cannot commit, "
                                  "missing data files: [x.parquet]"),
                     CompactionIncomplete("2 data files were left as they were"), "compacted"])

    def step() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    policy = MaintenancePolicy(step_attempts=3, backoff_first_seconds=2.0, backoff_max_seconds=30.0)
    assert run_step("market.trades", Step.REWRITE_DATA_FILES, step, policy, counters, pauses.append) == "compacted"

    assert counters.commit_conflicts[("market.trades", "rewrite_data_files")] == 2
    assert counters.retries[("market.trades", "rewrite_data_files")] == 2
    assert not counters.step_failures
    assert 1.0 <= pauses[0] <= 3.0 and 2.0 <= pauses[1] <= 6.0  # 2 s then 4 s, jittered by 0.5-1.5


def test_a_step_still_conflicting_after_its_attempts_fails_and_another_error_is_not_retried() -> None:
    counters = MaintenanceCounters()
    policy = MaintenancePolicy(step_attempts=3)

    def conflicting() -> None:
        raise RuntimeError("org.apache.iceberg.exceptions.CommitFailedException: Cannot commit: stale table metadata")

    def broken() -> None:
        raise RuntimeError("org.apache.spark.sql.AnalysisException: TABLE_OR_VIEW_NOT_FOUND")

    with pytest.raises(StepFailed, match="CommitFailedException"):
        run_step("market.bars_1m", Step.REWRITE_DATA_FILES, conflicting, policy, counters, lambda _: None)
    with pytest.raises(StepFailed, match="AnalysisException"):
        run_step("market.bars_1m", Step.EXPIRE_SNAPSHOTS, broken, policy, counters, lambda _: None)

    assert counters.commit_conflicts == {("market.bars_1m", "rewrite_data_files"): 3}
    assert counters.retries == {("market.bars_1m", "rewrite_data_files"): 2}
    assert counters.step_failures == {("market.bars_1m", "rewrite_data_files"): 1,
                                      ("market.bars_1m", "expire_snapshots"): 1}
    names = {name for name, _, _ in counters.samples()}
    assert names == {"lakehouse_maintenance_commit_conflicts_total", "lakehouse_maintenance_retries_total",
                     "lakehouse_maintenance_step_failures_total", "lakehouse_maintenance_runs_total"}


def test_compaction_keeps_to_closed_days_of_day_partitioned_tables_and_off_tables_upserted_anywhere() -> None:
    policy = MaintenancePolicy(allowed_lateness=timedelta(seconds=60), closed_day_margin=timedelta(hours=1))
    # 00:30 UTC: yesterday's last window may still be merged by a stream catching up, so it is open.
    assert first_open_day(datetime(2026, 12, 2, 0, 30, tzinfo=UTC), policy) == date(2026, 12, 1)
    assert first_open_day(datetime(2026, 12, 2, 1, 2, tzinfo=UTC), policy) == date(2026, 12, 2)
    now = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    assert compaction_where(TRADES, now, policy) == "event_time < TIMESTAMP '2026-12-02 00:00:00.000000'"
    assert compaction_where(BARS_1M, now, policy) == "window_start < TIMESTAMP '2026-12-02 00:00:00.000000'"
    assert compaction_where(LATE_TRADES, now, policy) is None  # insert-only: compacted whole
    assert VENDOR_BARS.compaction is Compaction.NEVER and FEED_EVENTS.compaction is Compaction.NEVER
    assert {t.name for t in ALL_TABLES if t.compaction is Compaction.CLOSED_DAYS} == {"trades", "bars_1m", "quarantine"}


def test_one_table_failing_does_not_stop_the_others_and_the_run_names_it(
    spark, lake: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = created_in(spark, lake)
    namespace = settings.catalog.namespace
    qualified = f"{settings.catalog.name}.{namespace}.maintenance_neighbour"
    spark.sql(f"CREATE TABLE {qualified} (symbol string, n bigint) USING iceberg PARTITIONED BY (symbol)")
    for batch in range(3):
        spark.sql(f"INSERT INTO {qualified} VALUES ('AAA', {batch})")
    missing = replace(LATE_TRADES, name="maintenance_never_created")
    present = replace(LATE_TRADES, name="maintenance_neighbour")
    counters = MaintenanceCounters()

    reports = maintain_tables(spark, settings.catalog.name, namespace, [missing, present],
                              MaintenancePolicy(), counters)

    assert failed_steps(reports) == [f"{settings.catalog.name}.{namespace}.maintenance_never_created file_stats"]
    assert f"{namespace}.maintenance_never_created: could not run: no such table in catalog" in caplog.text
    assert reports[1].succeeded and reports[1].after.data_files == 1
    assert counters.runs_completed == 1
    assert f"{namespace}.maintenance_neighbour" in counters.last_success_seconds


def test_by_default_a_table_not_created_yet_is_skipped_but_a_run_that_finds_none_fails(
    spark, lake: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A deployment without vnstock never creates vendor_bars, and every default maintenance run
    exited 1 for it; a wrong namespace, where no table exists, must still fail."""
    caplog.set_level(logging.INFO, logger="lakehouse.maintenance")
    settings = created_in(spark, lake)
    namespace, catalog = settings.catalog.namespace, settings.catalog.name
    spark.sql(f"CREATE TABLE {catalog}.{namespace}.maintenance_created (symbol string) USING iceberg "
              "PARTITIONED BY (symbol)")
    spark.sql(f"INSERT INTO {catalog}.{namespace}.maintenance_created VALUES ('AAA')")
    missing = replace(LATE_TRADES, name="maintenance_not_yet")
    present = replace(LATE_TRADES, name="maintenance_created")

    reports = maintain_tables(spark, catalog, namespace, [missing, present], MaintenancePolicy(),
                              MaintenanceCounters(), missing_ok=True)
    assert failed_steps(reports) == [] and [r.skipped for r in reports] == [True, False]
    assert f"{namespace}.maintenance_not_yet: not created yet" in caplog.text
    assert maintenance_run(reports, datetime.now(UTC), 1.0).counts["tables_maintained"] == 1

    none_there = maintain_tables(spark, catalog, f"{namespace}_misspelt", [missing, present], MaintenancePolicy(),
                                 MaintenanceCounters(), missing_ok=True)
    assert len(failed_steps(none_there)) == 2 and not any(r.skipped for r in none_there)


def test_a_commit_between_compactions_plan_and_commit_is_a_conflict_that_the_retry_resolves(
    spark, lake: Settings, tmp_path: Path
) -> None:
    """Deterministic: every core is held by a waiting job, so compaction plans its file groups and
    queues their rewrite; then a DELETE (metadata only, no task) commits and removes one partition's
    files; the cores are released and compaction's commit for that partition must fail."""
    settings = created_in(spark, lake)
    table = f"{settings.catalog.namespace}.maintenance_conflict"
    qualified = f"{settings.catalog.name}.{table}"
    spark.sql(f"CREATE TABLE {qualified} (symbol string, n bigint) USING iceberg PARTITIONED BY (symbol)")
    for batch in range(4):
        spark.sql(f"INSERT INTO {qualified} VALUES ('AAA', {batch}), ('BBB', {batch + 100})")
    counters = MaintenanceCounters()
    policy = MaintenancePolicy(step_attempts=3)
    pauses: list[float] = []
    released = tmp_path / "released"
    rewritten = _Rewritten()

    with cores_held_until(spark, released):
        compaction = threading.Thread(target=lambda: run_step(
            table, Step.REWRITE_DATA_FILES,
            lambda: _compact(spark, settings.catalog.name, table, None, policy, rewritten),
            policy, counters, pauses.append))
        compaction.start()
        wait_for(lambda: jobs_outside(spark, "holder"), "compaction's rewrite job to queue")
        spark.sql(f"DELETE FROM {qualified} WHERE symbol = 'AAA'")
        released.touch()
        compaction.join(timeout=120)

    assert not compaction.is_alive()
    assert counters.commit_conflicts[(table, "rewrite_data_files")] == 1
    assert counters.retries[(table, "rewrite_data_files")] == 1 and len(pauses) == 1
    assert not counters.step_failures
    assert sorted(r.n for r in spark.table(qualified).collect()) == [100, 101, 102, 103]
    assert file_stats(spark, qualified).data_files == 1  # BBB's four files compacted into one


@contextmanager
def cores_held_until(spark, released: Path) -> Iterator[None]:
    """Occupy every task slot with a job (group ``holder``) that waits until ``released`` exists."""
    slots = spark.sparkContext.defaultParallelism
    path = str(released)

    def hold(_: object) -> None:
        import os
        import time

        deadline = time.monotonic() + 120
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)

    def run() -> None:
        spark.sparkContext.setJobGroup("holder", "holds the cores")
        spark.sparkContext.parallelize(range(slots), slots).foreach(hold)

    holder = threading.Thread(target=run)
    holder.start()
    tracker = spark.sparkContext.statusTracker()

    def all_slots_held() -> bool:
        for job in tracker.getJobIdsForGroup("holder"):
            for stage in (tracker.getJobInfo(job).stageIds if tracker.getJobInfo(job) else []):
                info = tracker.getStageInfo(stage)
                if info and info.numActiveTasks == slots:
                    return True
        return False

    try:
        wait_for(all_slots_held, "the holder job to take every core")
        yield
    finally:
        released.touch()
        holder.join(timeout=60)


def jobs_outside(spark, group: str) -> bool:
    tracker = spark.sparkContext.statusTracker()
    return bool(set(tracker.getActiveJobsIds()) - set(tracker.getJobIdsForGroup(group)))


def wait_for(condition, what: str, timeout_seconds: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_trades_manifests_past_the_cap_are_rewritten_the_appended_ones_left_to_the_fold(
    spark, lake: Settings
) -> None:
    """``trades`` merges no manifests on append: each fold and compaction leaves one, partly live.
    Past ``max_manifests`` of its default spec, maintenance rewrites those (a ``replace`` snapshot,
    every row kept) and leaves the appended ones, which the next fold empties, as they are."""
    from lakehouse.spark import append_spec_id, ensure_tables, iceberg_table
    from tests.test_bars import RawTable, trade

    settings = created_in(spark, lake)
    ensure_tables(spark, settings, (TRADES,))
    table = f"{settings.catalog.namespace}.{TRADES.name}"
    qualified = f"{settings.catalog.name}.{table}"
    raw = RawTable(spark, settings)
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # an open day: no compaction
    for n in range(6):  # as six folds would: a default-spec manifest each
        raw.append([trade(f"m{n}-{s}", s, today + timedelta(minutes=n), 100.0 + n) for s in ("AAA", "BBB")])
    append_spec = append_spec_id(spark, TRADES, qualified)
    for n in range(2):  # the stream's appends since the last fold
        raw.append([trade(f"a{n}", "AAA", today + timedelta(minutes=10 + n), 99.0)], spec_id=append_spec)
    default_spec = iceberg_table(spark, qualified).spec().specId()

    def manifests_by_spec() -> dict[int, int]:
        rows = spark.sql(f"SELECT partition_spec_id AS spec, count(*) AS n FROM {qualified}.manifests "
                         "GROUP BY partition_spec_id").collect()
        return {row.spec: row.n for row in rows}

    rows_before = sorted(spark.table(qualified).collect())
    assert manifests_by_spec() == {default_spec: 6, append_spec: 2}
    policy = MaintenancePolicy(max_manifests=3)

    report = maintain(spark, settings.catalog.name, table, policy, definition=TRADES)

    assert report.succeeded, report.describe()
    assert report.rewritten_manifests == 6
    after = manifests_by_spec()
    assert after[append_spec] == 2, "the appended manifests are the fold's to empty"
    assert after[default_spec] < 3
    assert sorted(spark.table(qualified).collect()) == rows_before
    newest = spark.sql(f"SELECT operation FROM {qualified}.snapshots ORDER BY committed_at DESC LIMIT 1").first()
    assert newest.operation == "replace", "the streaming reader skips it"

    again = maintain(spark, settings.catalog.name, table, policy, definition=TRADES)
    assert again.succeeded and again.rewritten_manifests == 0, "under the cap: nothing rewritten"
    assert manifests_by_spec() == after
