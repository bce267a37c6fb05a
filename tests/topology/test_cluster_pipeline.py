"""The pipeline on the cluster topology, and what it survives: a Spark worker and a Kafka broker
killed (SIGKILL), one after the other, while trades stream in. Every job runs as ``./spark-submit.sh
--master spark://...``, so its code, jars and settings travel to executors in other JVMs, and writes
a ``gs://`` warehouse on the GCS emulator through a shared catalog: the whole pipeline (raw trades
and bars) runs once through Iceberg's REST catalog server, and once through the PostgreSQL JDBC
catalog behind it while the faults strike."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from lakehouse.catalog import load_catalog, spark_table_name, table_identifier
from lakehouse.local.processes import wait_until
from lakehouse.local.topology import ClusterTopology
from lakehouse.settings import Settings
from lakehouse.spark import catalog_conf
from lakehouse.tables import BARS_1M, LATE_TRADES, TRADES
from tests.kafka_helpers import publish
from tests.test_bars import MINUTE_US, epoch_us, reference_bars
from tests.topology.conftest import Lakehouse, SubmittedJob, TradeFeed, lakehouse_on, make_trade

RAW_STARTED = "INFO raw_trades: reading Kafka topic"

# The suite's 600 s per test counts the session's topology start (85-115 s) in the first test, and a
# cluster job's first micro-batch alone took 80-400 s on the shared 2-core machine (load 30-118):
# the JIT compiling Spark in the driver and both executors. The tests' own waits are bounded.
pytestmark = pytest.mark.timeout(1500)


def records_in_topic(bootstrap_servers: str, topic: str) -> int:
    """How many records the topic's log holds (sum of end offsets): a duplicate would count twice."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def stored_ids(lake: Lakehouse) -> tuple[int, set[str]]:
    ids = [row["trade_id"] for row in lake.trades()]
    return len(ids), set(ids)


def report(scenario: str, feed: TradeFeed, lake: Lakehouse, topic_records: int) -> str:
    rows, distinct = stored_ids(lake)
    return (f"{scenario}: sent {feed.sent}, acknowledged {feed.acked} (re-sent {feed.resent}), "
            f"in the topic {topic_records}, stored {rows}, distinct {len(distinct)}")


@dataclass(frozen=True)
class Fault:
    """A fault applied to the cluster mid-stream, and how the cluster is brought back after it."""

    name: str
    apply: Callable[[], object]
    recover: Callable[[], object]


def stream_through_faults(cluster: ClusterTopology, lake: Lakehouse, faults: list[Fault]) -> tuple[TradeFeed, int]:
    """Run the pipeline (raw trades and bars) on the cluster while a feed publishes; once trades
    are stored, apply each fault in turn and check the stream still stores new trades after it (a
    fault's recovery runs before the next fault, so each meets the whole cluster; the last one's
    after the job stops), then stop the feed and wait until every acknowledged trade is stored and
    counted in a bar or kept aside as late. Returns the feed and the number of records in the topic."""
    feed = TradeFeed(cluster.kafka.bootstrap_servers, lake.settings.kafka.trades_topic, ("TOPA", "TOPB", "TOPC"))
    job = SubmittedJob(cluster, lake, "pipeline")
    pending: list[Fault] = []
    try:
        job.wait_for(lambda: job.started(RAW_STARTED), "started")
        feed.start()
        job.wait_for(lambda: stored_ids(lake)[0] > 0, "storing trades")
        for fault in faults:
            while pending:
                pending.pop().recover()
            fault.apply()
            pending.append(fault)
            stored_at_fault = stored_ids(lake)[0]
            waited = job.wait_for(lambda at=stored_at_fault: stored_ids(lake)[0] > at + 500,
                                  f"storing trades after {fault.name}")
            print(f"{fault.name}: 500 more trades stored {waited:.1f} s after it")
        feed.stop()
        waited = job.wait_for(lambda: stored_ids(lake)[0] >= feed.acked, "storing every acknowledged trade")
        print(f"every acknowledged trade stored {waited:.1f} s after the feed stopped")
        job.wait_for(lambda: bars_and_late_trades(lake) >= feed.acked, "counting every trade in a bar or as late")
        time.sleep(6)  # three more triggers: a late duplicate would show now
        assert job.process.poll() is None, f"the job stopped:\n{job.log()[-3000:]}"
    finally:
        feed._stop.set()
        job.stop()
        while pending:
            pending.pop().recover()
    return feed, records_in_topic(cluster.kafka.bootstrap_servers, lake.settings.kafka.trades_topic)


def bars_and_late_trades(lake: Lakehouse) -> int:
    """Trades counted in a bar, plus trades kept aside as too late for theirs."""
    return sum(b["trade_count"] for b in lake.rows(BARS_1M)) + len(lake.rows(LATE_TRADES))


def assert_bars_equal_an_independent_computation(lake: Lakehouse, stored: list[dict]) -> None:
    """Every stored trade not kept aside as late is in exactly the bar DuckDB computes for it."""
    late = {t["trade_id"] for t in lake.rows(LATE_TRADES)}
    bars = lake.rows(BARS_1M)
    expected = reference_bars([t for t in stored if t["trade_id"] not in late])
    got = {(b["symbol"], epoch_us(b["window_start"])): (b["open"], b["high"], b["low"], b["close"], b["volume"],
                                                       b["trade_count"], b["vwap"]) for b in bars}
    assert all((b["window_end"] - b["window_start"]).total_seconds() * 1e6 == MINUTE_US for b in bars)
    assert expected, "no bars expected: equal sets would prove nothing"
    assert got.keys() == expected.keys()
    for key, bar in got.items():
        assert bar[:6] == expected[key][:6], key
        assert abs(bar[6] - expected[key][6]) < 1e-9, key


def spark_and_pyiceberg_see_the_same_snapshot(spark: Any, settings: Settings) -> None:
    """A Spark reader (this process's local session, the cluster's catalog registered beside its own)
    and a pyiceberg reader agree on the newest snapshot of the trades table and on its rows."""
    for key, value in catalog_conf(settings).items():
        spark.conf.set(key, value)
    trades = spark_table_name(settings, TRADES)
    newest = spark.sql(f"SELECT snapshot_id FROM {trades}.snapshots ORDER BY committed_at DESC LIMIT 1").first()
    table = load_catalog(settings).load_table(table_identifier(settings, TRADES))
    assert table.current_snapshot().snapshot_id == newest.snapshot_id
    rows_in_spark = spark.sql(f"SELECT count(*) AS n FROM {trades} VERSION AS OF {newest.snapshot_id}").first().n
    assert table.scan(snapshot_id=newest.snapshot_id).to_arrow().num_rows == rows_in_spark > 0


def test_pipeline_through_the_rest_catalog_stores_every_trade_once_and_bars_equal_an_independent_computation(
    cluster: ClusterTopology, spark: Any,
) -> None:
    lake = lakehouse_on(cluster, "cluster_pipeline_rest", "rest")
    assert lake.settings.catalog.uri == cluster.rest_catalog.uri
    sent = [make_trade(symbol, n) for n in range(200) for symbol in ("CLUA", "CLUB")]
    publish(cluster.kafka.bootstrap_servers, lake.settings.kafka.trades_topic,
            [(t.key(), t.to_json_bytes()) for t in sent])
    job = SubmittedJob(cluster, lake, "pipeline")
    try:
        job.wait_for(lambda: job.started(RAW_STARTED), "started")
        job.wait_for(lambda: len(lake.trades()) >= len(sent), "storing every trade")
        job.wait_for(lambda: bars_and_late_trades(lake) >= len(sent), "counting every trade in a bar or as late")
    finally:
        job.stop()

    stored = lake.trades()
    assert sorted(t["trade_id"] for t in stored) == sorted(t.trade_id for t in sent)
    assert_bars_equal_an_independent_computation(lake, stored)
    warehouse = lake.catalog.load_table(table_identifier(lake.settings, BARS_1M)).metadata_location
    assert warehouse.startswith("gs://"), warehouse
    spark_and_pyiceberg_see_the_same_snapshot(spark, lake.settings)


def test_a_spark_worker_and_then_a_kafka_broker_killed_mid_stream_lose_and_duplicate_no_trade_and_bars_stay_exact(
    cluster: ClusterTopology, spark: Any,
) -> None:
    """Both faults in one pipeline run through the JDBC catalog (a cluster job's start is the dearest
    step here): a Spark worker SIGKILLed, the stream carries on with the other and stores new trades,
    the worker rejoins; then a Kafka broker SIGKILLed, and the stream again stores new trades. No
    acknowledged trade is lost, none is stored twice, the idempotent producer's retries wrote no
    record twice, and the bars equal DuckDB's over the stored trades."""
    lake = lakehouse_on(cluster, "faults", "jdbc")

    def kill_worker() -> None:
        cluster.spark.kill_worker("worker-1")
        assert wait_until(lambda: cluster.spark.alive_workers() == 1, 30), "the master still counts 2 workers"

    feed, in_topic = stream_through_faults(cluster, lake, [
        Fault("a Spark worker killed", kill_worker, lambda: cluster.spark.start_worker("worker-1")),
        Fault("a Kafka broker killed", lambda: cluster.kafka.kill_node(1), lambda: cluster.kafka.start_node(1)),
    ])
    print(report("Spark worker, then Kafka broker killed", feed, lake, in_topic))
    stored = lake.trades()
    distinct = {t["trade_id"] for t in stored}
    assert feed.acked == feed.sent == len(feed.sent_ids)
    assert in_topic == feed.acked, "the idempotent producer's retries wrote a record twice"
    assert distinct == feed.sent_ids
    assert len(stored) == len(distinct) == feed.acked
    assert_bars_equal_an_independent_computation(lake, stored)
    spark_and_pyiceberg_see_the_same_snapshot(spark, lake.settings)
