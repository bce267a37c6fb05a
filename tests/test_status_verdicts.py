"""The verdicts of `lakehouse status`, pure: ages, lag, batch-job records, unreachable parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, TimestamptzType

from lakehouse.kafka_loss import kafka_offsets_of
from lakehouse.ops import job_runs
from lakehouse.ops.status import (
    MAX_CLOCK_SKEW_SECONDS,
    Finding,
    JobPosition,
    Observation,
    TableState,
    TopicState,
    Verdict,
    assess,
    exit_code,
    lag_messages,
    render,
)
from lakehouse.ops.status_probe import event_column
from lakehouse.settings import StatusSettings
from lakehouse.tables import BARS_1M, FEED_EVENTS, QUARANTINE, TRADES, VENDOR_BARS, TableDef

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
THRESHOLDS = StatusSettings(fresh_tables=["trades"], max_event_age_seconds=900, max_kafka_lag_messages=100,
                            max_maintenance_age_seconds=3600, max_sync_age_seconds=0)
RUNS = {"maintenance": 3600.0, "bigquery_sync": 0.0}


def trades_table(newest: datetime | None) -> TableState:
    return TableState("trades", newest, "event_time", snapshot_count=12, data_file_count=30, small_file_count=28)


def observation(newest_trade: datetime | None, committed: int, maintenance: datetime | None) -> Observation:
    position = JobPosition("raw_trades", "market.trades", 7, {0: committed // 2, 1: committed - committed // 2})
    topic = TopicState("market.trades", {0: 500, 1: 500}, (position,))
    return Observation((trades_table(newest_trade),), (topic,), {"maintenance": maintenance, "bigquery_sync": None})


def verdicts(findings: list[Finding]) -> dict[str, Verdict]:
    return {f.part: f.verdict for f in findings}


def test_a_job_whose_unread_messages_kafka_deleted_is_stale_whatever_its_lag() -> None:
    position = JobPosition("raw_trades", "market.trades", 7, {0: 100, 1: 480})
    deleted = TopicState("market.trades", {0: 500, 1: 500}, (position,), earliest_offsets={0: 300, 1: 0})
    findings = assess(Observation((), (deleted,), {}), NOW, THRESHOLDS, {})
    lost = next(f for f in findings if f.part == "topic market.trades / raw_trades")
    assert lost.verdict is Verdict.STALE
    assert "Kafka deleted messages this job had not read: partition 0: offsets 100-299 (200 messages)" in lost.detail
    held = TopicState("market.trades", {0: 500, 1: 500}, (position,), earliest_offsets={0: 100, 1: 0})
    (kept,) = [f for f in assess(Observation((), (held,), {}), NOW, THRESHOLDS, {}) if f.part.startswith("topic")]
    assert kept.detail.startswith("end 1000, committed 580")  # judged by its lag, as before


def test_fresh_trades_small_lag_and_recent_maintenance_are_all_fresh():
    findings = assess(observation(NOW - timedelta(seconds=30), 950, NOW - timedelta(minutes=20)), NOW, THRESHOLDS, RUNS)
    assert verdicts(findings) == {
        "table trades": Verdict.OK, "topic market.trades / raw_trades": Verdict.OK,
        "job maintenance": Verdict.OK, "job bigquery_sync": Verdict.INFO,
    }
    assert exit_code(findings) == 0
    assert render(findings, NOW).splitlines()[-1] == "all fresh"


def test_old_trades_a_lagging_job_and_old_maintenance_are_each_stale():
    findings = assess(observation(NOW - timedelta(hours=2), 100, NOW - timedelta(hours=3)), NOW, THRESHOLDS, RUNS)
    assert verdicts(findings) == {
        "table trades": Verdict.STALE, "topic market.trades / raw_trades": Verdict.STALE,
        "job maintenance": Verdict.STALE, "job bigquery_sync": Verdict.INFO,
    }
    assert exit_code(findings) == 1
    screen = render(findings, NOW)
    assert "lag 900 msgs" in screen and "age 2.0h" in screen and screen.endswith("3 stale")


def test_an_empty_fresh_table_and_a_never_recorded_job_are_stale():
    findings = assess(observation(None, 1000, None), NOW, THRESHOLDS, RUNS)
    assert verdicts(findings)["table trades"] is Verdict.STALE
    assert verdicts(findings)["job maintenance"] is Verdict.STALE
    assert verdicts(findings)["topic market.trades / raw_trades"] is Verdict.OK


def test_tables_outside_fresh_tables_and_zero_thresholds_are_shown_not_judged():
    late = TableState("late_trades", NOW - timedelta(days=9), "event_time", 1, 1, 1)
    off = StatusSettings(fresh_tables=["trades"], max_event_age_seconds=0, max_kafka_lag_messages=0,
                         max_maintenance_age_seconds=0)
    obs = Observation((trades_table(NOW - timedelta(days=3)), late), observation(None, 0, None).topics, {})
    findings = assess(obs, NOW, off, {"maintenance": 0.0})
    assert set(verdicts(findings).values()) == {Verdict.INFO}
    assert exit_code(findings) == 0


def test_an_unreachable_part_is_stale_so_status_never_says_all_is_well_blind():
    obs = Observation((), (), {}, {"kafka": "NoBrokersAvailable"})
    findings = assess(obs, NOW, THRESHOLDS, {})
    assert findings == [Finding("kafka", Verdict.STALE, "unreachable: NoBrokersAvailable")]
    assert exit_code(findings) == 1


def test_lag_counts_a_partition_missing_from_the_checkpoint_from_zero():
    assert lag_messages({0: 10, 1: 7, 2: 3}, {0: 10, 1: 5}) == 5
    assert lag_messages({0: 10}, {0: 12}) == 0  # a checkpoint ahead of a recreated topic is not negative lag


def test_a_topic_no_checkpoint_reads_is_shown_with_its_end_offsets():
    findings = assess(Observation((), (TopicState("market.quarantine", {0: 4, 1: 0}),), {}), NOW, THRESHOLDS, {})
    assert findings[0].verdict is Verdict.INFO and "4 messages in 2 partitions" in findings[0].detail


def test_event_column_is_the_readers_age_column_else_the_time_partition_column_else_the_first_timestamp():
    assert [event_column(t) for t in (TRADES, BARS_1M, QUARANTINE, VENDOR_BARS, FEED_EVENTS)] == [
        "event_time", "last_event_time", "quarantined_time", "bar_start", "start_time"]  # bars: as table_ages
    untracked = TableDef(name="x", schema=Schema(NestedField(1, "at", TimestamptzType(), required=False)),
                         partition_by=("hours(at)",), key=(), doc="")
    assert event_column(untracked) == "at"


def test_checkpoint_offsets_file_yields_kafka_positions_and_skips_other_sources():
    text = "\n".join([
        "v1",
        '{"batchWatermarkMs":0,"batchTimestampMs":1767261600000,"conf":{"spark.sql.shuffle.partitions":"2"}}',
        '{"market.trades":{"1":120,"0":95}}',
        '{"version":1,"snapshot_id":123,"position":4,"scan_all_files":false}',
    ])
    assert kafka_offsets_of(text) == {"market.trades": {0: 95, 1: 120}}


def test_an_unreachable_parts_error_names_its_type_once():
    from kafka.errors import KafkaTimeoutError

    from lakehouse.logs import error_line

    assert error_line(KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:19092")) == (
        "KafkaTimeoutError: Unable to bootstrap from 127.0.0.1:19092")
    assert error_line(LookupError("no such table")) == "LookupError: no such table"
    # SQLAlchemy's errors add a line of links: a finding is one line.
    assert error_line(RuntimeError("unable to open database file\n(Background on this error at: x)")) == (
        "RuntimeError: unable to open database file")


def test_status_without_a_catalog_says_how_to_make_one_and_creates_none(tmp_path: Path, monkeypatch):
    """After ``make clean`` status said SQLite's "unable to open database file", with SQLAlchemy's
    link on a second line."""
    from lakehouse.ops import status_probe
    from lakehouse.settings import load_settings

    def no_broker(*_args):
        raise ConnectionError("no broker in this test")

    monkeypatch.setattr(status_probe, "end_offsets", no_broker)  # this test is about the catalog
    settings = load_settings(environ={
        "LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path), "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{tmp_path}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": str(tmp_path / "warehouse"),
    })
    observation = status_probe.observe(settings)
    assert observation.unreachable["catalog"] == (
        f"no lakehouse catalog at {tmp_path}/catalog.db: run `make demo` to create the embedded demo lakehouse, "
        "or set LAKEHOUSE__CATALOG__URI and LAKEHOUSE__CATALOG__WAREHOUSE")
    assert observation.tables == () and list(tmp_path.iterdir()) == []


def test_a_failed_querys_last_line_is_the_deepest_cause_of_its_java_trace():
    """A warehouse on a full disk failed the raw job with a 600-line trace whose cause was in the
    middle (measured on a 2 MiB tmpfs); the RuntimeError's message now ends with it."""
    from lakehouse.logs import describe_error, root_cause

    trace = "\n".join([
        "An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):",
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 2.0 failed 1 times,"
        " most recent failure: Lost task 0.0: org.apache.hadoop.fs.FSError: java.io.IOException: No space left",
        "\tat org.apache.iceberg.io.DataWriter.close(DataWriter.java:82)",
        "Caused by: org.apache.hadoop.fs.FSError: java.io.IOException: No space left on device",
        "\tat org.apache.hadoop.fs.RawLocalFileSystem$LocalFSFileOutputStream.write(RawLocalFileSystem.java:261)",
        "Caused by: java.io.IOException: No space left on device",
        "\t... 42 more",
    ])
    assert root_cause(RuntimeError(trace)) == "java.io.IOException: No space left on device"
    assert root_cause(ValueError("no trace here")) == "no trace here"
    # Py4J starts the Java line with ": ", which made maintenance say "could not run: : ...".
    py4j = "An error occurred while calling o42.sql.\n: org.apache.iceberg.exceptions.NotFoundException: gone"
    assert describe_error(RuntimeError(py4j)) == "org.apache.iceberg.exceptions.NotFoundException: gone"


@pytest.mark.parametrize("record", [
    b"lakehouse_maintenance_last_success_timestamp_seconds {oops\n",
    b"lakehouse_maintenance_last_success_timestamp_seconds \xff\xfe\n",
])
def test_a_corrupt_job_record_is_unreadable_not_a_crash(tmp_path: Path, record: bytes):
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "maintenance.prom").write_bytes(record)
    with pytest.raises(job_runs.UnreadableRecord, match=str(tmp_path / "ops" / "maintenance.prom")):
        job_runs.last_success(tmp_path, "maintenance")  # was: ValueError or UnicodeDecodeError


def test_status_shows_a_job_with_an_unreadable_record_stale_once(tmp_path: Path):
    """``lakehouse status`` crashed on a corrupt ``<state_dir>/ops/maintenance.prom``; no broker and
    no catalog here either, so every part is seen unreachable and the screen still renders."""
    from lakehouse.local.processes import free_port
    from lakehouse.ops import status_probe
    from lakehouse.settings import load_settings

    settings = load_settings(environ={
        "LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path), "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{tmp_path}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": str(tmp_path / "warehouse"),
        "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "LAKEHOUSE__STATUS__KAFKA_TIMEOUT_SECONDS": "1",
    })
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "maintenance.prom").write_text("lakehouse_maintenance_last_success_timestamp_seconds {oops\n")

    findings = assess(status_probe.observe(settings), NOW, THRESHOLDS, RUNS)

    jobs = [f for f in findings if f.part == "job maintenance"]
    assert [f.verdict for f in jobs] == [Verdict.STALE]
    assert "record unreadable: " in jobs[0].detail and "maintenance.prom" in jobs[0].detail
    assert exit_code(findings) == 1


def test_a_job_records_counts_read_back_exactly_through_prometheus_text():
    counts = {"files_rewritten": 98765432, "bytes_rewritten": 2**53 - 1, "ratio": 0.1 + 0.2, "tables": 0}
    run = job_runs.JobRun("maintenance", datetime(2026, 3, 2, 14, 0, 0, 250_000, tzinfo=UTC), 42.5, counts)
    text = job_runs.render(run)

    assert job_runs.parse("maintenance", text) == run  # was: 9.87654e+07, read back as 98765400
    assert "lakehouse_maintenance_files_rewritten 98765432\n" in text


@pytest.mark.parametrize("ahead", [timedelta(days=365), timedelta(days=365 * 74)])
def test_a_future_dated_newest_trade_is_stale_not_fresh_forever(ahead: timedelta):
    findings = assess(observation(NOW + ahead, 950, NOW), NOW, THRESHOLDS, RUNS)

    trades = next(f for f in findings if f.part == "table trades")
    assert trades.verdict is Verdict.STALE  # was: ok, age clamped to 0s
    newest = (NOW + ahead).strftime("%Y-%m-%d %H:%M:%SZ")
    assert trades.detail.startswith(f"newest event_time {newest} is in the future: its age cannot be judged "
                                    "(a future-dated row)")


def test_a_newest_event_time_a_little_ahead_of_now_is_clock_skew_and_fresh():
    findings = assess(observation(NOW + timedelta(seconds=MAX_CLOCK_SKEW_SECONDS - 1), 950, NOW), NOW, THRESHOLDS, RUNS)
    assert verdicts(findings)["table trades"] is Verdict.OK
