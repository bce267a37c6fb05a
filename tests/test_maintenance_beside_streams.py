"""Maintenance at a short interval beside the live streams, on real Kafka, Spark and Iceberg.

The raw-trades job reads a Kafka topic and appends to ``trades``; the bars job streams ``trades``
and MERGEs into ``bars_1m`` (one trade in twenty arrives 30 s late, so known bars are corrected).
First a closed day (three days ago) is streamed in four steps, leaving four small files or more
per (symbol, day) partition; then trades of today flow for ``LIVE_SECONDS``, and until two
maintenance runs went by, while maintenance runs every two seconds in the same application and
``rebuild_bars`` replaces the closed day's bars meanwhile (one run proves both: maintenance beside
the streams, and beside a rebuild of the day it compacts). Afterwards every trade
is stored once, the bars equal DuckDB's computation from the stored trades, the closed partitions
are compacted, and the conflicts met are reported (printed with ``pytest -s``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from lakehouse import raw_trades_stream
from lakehouse.bars_rebuild import rebuild_days
from lakehouse.bars_stream import start_bars_query
from lakehouse.catalog import spark_table_name
from lakehouse.maintenance import (
    FileStats,
    MaintenanceCounters,
    MaintenancePolicy,
    file_stats,
    first_open_day,
    maintain_every,
)
from lakehouse.messages import Source, Trade, trade_id
from lakehouse.settings import Settings
from lakehouse.shutdown import StopRequest
from lakehouse.spark import ensure_tables
from lakehouse.tables import BARS_1M, LATE_TRADES, TRADES
from lakehouse.times import from_epoch_micros
from tests.kafka_helpers import new_topic
from tests.test_bars import reference_bars, stored_bars

log = logging.getLogger(__name__)

SYMBOLS = ("AAPL", "AMZN", "MSFT", "NVDA", "TSLA")
LIVE_SECONDS = 30
MAX_EXTRA_SECONDS = 240  # on a loaded machine a maintenance run takes a minute or more
LATE_EVERY = 20  # one trade in twenty is 30 s late: within the lateness, so it corrects its bar
CLOSED_DAY_STEPS = 4
MAINTAINED = (TRADES, BARS_1M, LATE_TRADES)  # quarantine stays empty here


def live_settings(lake: Settings) -> Settings:
    """The test's own tables, topic and checkpoints, with a 1 s trigger and 60 s of lateness, and the
    raw job folding its appends every 10 s: folds, compactions and rebuilds all race for the same
    files. (Every 3 s, folds ran back to back on a loaded machine and starved the bars query past
    the wait below once in a full suite.)"""
    return lake.with_streaming(trigger_seconds=1.0, allowed_lateness_seconds=60.0, fold_interval_seconds=10.0)


@dataclass
class TradeSource:
    """Trades with exact prices (quarters) and whole volumes, ids unique per symbol and count."""

    sent: dict[str, Trade] = field(default_factory=dict)
    count: int = 0

    def make(self, symbol: str, at_ms: int) -> Trade:
        self.count += 1
        price, volume = 100 + (self.count % 400) / 4, float(self.count % 7 + 1)
        made = Trade(source=Source.FINNHUB, symbol=symbol, price=price, volume=volume, event_time_ms=at_ms,
                     conditions=[], venue=None, received_time_ms=at_ms,
                     trade_id=trade_id(Source.FINNHUB, symbol, at_ms, price, volume, ordinal=self.count))
        self.sent[made.trade_id] = made
        return made


def send(producer: KafkaProducer, topic: str, trades: list[Trade]) -> None:
    for made in trades:
        producer.send(topic, key=made.key(), value=made.to_json_bytes())
    producer.flush(timeout=30)


def wait_until(condition: Callable[[], bool], what: str, timeout_seconds: float,
               explain: Callable[[], str] = lambda: "", queries: Sequence[Any] = ()) -> None:
    """Poll ``condition``; fail at once when one of ``queries`` stopped, and after the timeout with
    ``explain()`` (how far from the condition it stands)."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert all(q.isActive for q in queries), query_errors(queries)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_seconds:.0f} s waiting for {what}: {explain()}")
        time.sleep(0.5)


def bars_difference(stored: dict[tuple[str, int], tuple], reference: dict[tuple[str, int], tuple]) -> str:
    missing, extra = sorted(reference.keys() - stored.keys()), sorted(stored.keys() - reference.keys())
    differ = sorted(k for k in reference.keys() & stored.keys() if stored[k] != reference[k])
    return (f"{len(stored)} bars stored, {len(reference)} expected; {len(missing)} missing {missing[:3]}, "
            f"{len(extra)} extra {extra[:3]}, {len(differ)} differ "
            f"{[(k, stored[k], reference[k]) for k in differ[:2]]}")


def stored_trades(spark: Any, settings: Settings) -> list[dict[str, Any]]:
    from pyspark.sql import functions as F

    rows = spark.table(spark_table_name(settings, TRADES)).select(
        "trade_id", "source", "symbol", "price", "volume", "conditions", "kafka_partition", "kafka_offset",
        F.unix_micros("event_time").alias("event_us"),
    ).collect()
    return [{**row.asDict(), "event_time": from_epoch_micros(row.event_us)} for row in rows]


def closed_stats(spark: Any, settings: Settings, table: Any, open_from: date) -> FileStats:
    return file_stats(spark, spark_table_name(settings, table), (f"{table.day_column}_day", open_from))


@dataclass
class LiveRunResult:
    sent: int
    stored: int
    distinct: int
    counters: MaintenanceCounters
    before: dict[str, FileStats]
    after: dict[str, FileStats]
    rebuilds: int


def run_beside_streams(spark: Any, lake: Settings, kafka_broker: Any) -> LiveRunResult:
    settings = live_settings(lake)
    catalog, namespace = settings.catalog.name, settings.catalog.namespace
    ensure_tables(spark, settings)
    topic = new_topic(kafka_broker.bootstrap_servers, settings.kafka.trades_topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all", linger_ms=5)
    source = TradeSource()
    trades_table = spark_table_name(settings, TRADES)
    queries = [raw_trades_stream.start(spark, settings), start_bars_query(spark, settings)]
    stop = StopRequest(f"maintenance beside {settings.catalog.namespace}")
    counters = MaintenanceCounters()
    maintenance: threading.Thread | None = None
    try:
        # A closed day, streamed in steps: several small files in each of its partitions.
        closed_day = datetime.now(UTC).replace(hour=14, minute=30, second=0, microsecond=0) - timedelta(days=3)
        start_ms = int(closed_day.timestamp() * 1000)
        for step in range(CLOSED_DAY_STEPS):
            send(producer, topic, [source.make(symbol, start_ms + (step * 200 + n) * 150)
                                   for n in range(200) for symbol in SYMBOLS])
            wait_until(lambda: spark.table(trades_table).count() == len(source.sent), "the closed day's trades", 120)
        now = datetime.now(UTC)
        # max_manifests=1: trades' manifests are rewritten at every run, beside its appends and folds.
        policy = MaintenancePolicy(allowed_lateness=timedelta(seconds=60), step_attempts=4,
                                   backoff_first_seconds=1.0, max_manifests=1)
        open_from = first_open_day(now, policy)
        before = {t.name: closed_stats(spark, settings, t, open_from) for t in (TRADES, BARS_1M)}

        maintenance = threading.Thread(target=maintain_every, name="maintenance", args=(
            spark, catalog, namespace, MAINTAINED, policy, counters, 2.0, stop))
        maintenance.start()
        rebuilds = 0
        live_until = time.monotonic() + LIVE_SECONDS
        next_rebuild = time.monotonic() + 5

        def live() -> bool:  # at least LIVE_SECONDS, and until two maintenance runs went by
            return time.monotonic() < live_until or (
                counters.runs_completed < 2 and time.monotonic() < live_until + MAX_EXTRA_SECONDS)

        while live():
            now_ms = int(time.time() * 1000)
            batch = []
            for symbol in SYMBOLS:
                for n in range(10):
                    late = (source.count + 1) % LATE_EVERY == 0
                    batch.append(source.make(symbol, now_ms - 30_000 if late else now_ms - 10 * n))
            send(producer, topic, batch)
            if time.monotonic() >= next_rebuild:
                rebuild_days(spark, settings, [closed_day.date()])
                rebuilds += 1
                next_rebuild = time.monotonic() + 10
            assert all(q.isActive for q in queries), query_errors(queries)
            assert maintenance.is_alive()
            time.sleep(0.2)

        expected = len(source.sent)
        wait_until(lambda: spark.table(trades_table).count() >= expected, "every trade stored", 180,
                   lambda: f"{spark.table(trades_table).count()} of {expected}", queries)
        stored = stored_trades(spark, settings)
        reference = reference_bars(stored)
        wait_until(lambda: stored_bars(spark, settings) == reference, "the bars of every trade", 300,
                   lambda: bars_difference(stored_bars(spark, settings), reference) + bars_history(spark, settings),
                   queries)
        assert all(q.isActive for q in queries), query_errors(queries)
        assert maintenance.is_alive()
        stop.request()
        maintenance.join(timeout=180)
        assert not maintenance.is_alive()
        after = {t.name: closed_stats(spark, settings, t, open_from) for t in (TRADES, BARS_1M)}
        return LiveRunResult(
            sent=expected, stored=len(stored), distinct=len({t["trade_id"] for t in stored}),
            counters=counters, before=before, after=after, rebuilds=rebuilds,
        )
    finally:
        stop.request()
        for query in queries:
            query.stop()
        if maintenance is not None:
            maintenance.join(timeout=180)
        producer.close()


def query_errors(queries: list[Any]) -> str:
    """The full text of each query's exception (pytest cuts a list's repr to a line)."""
    return "\n\n".join(f"query {q.name}: {q.exception()}" for q in queries)


def bars_history(spark: Any, settings: Settings) -> str:
    """The bars table's commits, oldest first: which writer changed how many rows (for a failure)."""
    rows = spark.sql(
        f"SELECT committed_at, operation, summary FROM {spark_table_name(settings, BARS_1M)}.snapshots "
        "ORDER BY committed_at").collect()
    keys = ("lakehouse.bars-batch", "lakehouse.rebuild", "added-records", "deleted-records", "total-records")
    return "\nbars_1m commits:\n" + "\n".join(
        f"{r.committed_at:%H:%M:%S.%f} {r.operation} " + " ".join(f"{k}={r.summary.get(k)}" for k in keys
                                                                   if r.summary.get(k) is not None)
        for r in rows)


def report(result: LiveRunResult) -> str:
    files = "; ".join(
        f"{name} closed partitions {result.before[name].partitions}: {result.before[name].data_files} -> "
        f"{result.after[name].data_files} files (max {result.before[name].max_files_per_partition} -> "
        f"{result.after[name].max_files_per_partition} per partition)"
        for name in result.before
    )
    return (f"trades sent {result.sent}, stored {result.stored}, distinct {result.distinct}; "
            f"maintenance {result.counters.summary()}; rebuilds {result.rebuilds}; {files}")


def assert_coexisted(result: LiveRunResult) -> None:
    print(report(result))  # the figures of the run, for the report (pytest -s)
    assert result.sent == result.stored == result.distinct
    assert result.counters.runs_completed >= 2  # both while the feed ran
    assert not result.counters.step_failures, result.counters.step_failures
    trades_before, trades_after = result.before["trades"], result.after["trades"]
    # The closed day is stored before maintenance starts: in appended day files, in day-symbol files
    # the raw job's own fold (every 10 s) wrote, or both, as the fold's timing fell; maintenance
    # leaves one file per symbol either way.
    assert trades_before.data_files > 0
    assert trades_after.data_files == len(SYMBOLS) and trades_after.max_files_per_partition == 1
    assert result.after["bars_1m"].max_files_per_partition == 1


# Minutes of streaming on purpose (the issue asks for maintenance beside live streams): more than the
# suite's default timeout when the machine is shared.
@pytest.mark.timeout(1200)
def test_maintenance_every_two_seconds_beside_the_streams_and_a_rebuild_keeps_every_trade_and_bar_exact(
    spark, lake: Settings, kafka_broker
) -> None:
    result = run_beside_streams(spark, lake, kafka_broker)
    assert result.rebuilds >= 2
    assert_coexisted(result)
