"""The local stack is real: a KRaft broker, Spark's Kafka source, Iceberg via the shared catalog."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.local.processes import pid_alive
from lakehouse.messages import Source, Trade, trade_id
from lakehouse.settings import Settings
from lakehouse.spark import FILESYSTEM_CHECKPOINTS, NIO_LOCAL_FILESYSTEM, local_filesystem_conf
from lakehouse.tables import TRADES
from tests.conftest import TEST_BROKER_JVM_OPTIONS, start_broker
from tests.kafka_helpers import consume_all, new_topic, publish


def make_trade(symbol: str, n: int, base_ms: int = 1_767_261_600_000) -> Trade:
    price, volume, at = 100.0 + n / 100, float(n % 7 + 1), base_ms + n * 250
    return Trade(
        source=Source.FINNHUB, symbol=symbol, price=price, volume=volume, event_time_ms=at,
        conditions=["1"], venue="Q", received_time_ms=at + 5,
        trade_id=trade_id(Source.FINNHUB, symbol, at, price, volume, ["1"]),
    )


def test_broker_round_trips_keyed_json(kafka_broker) -> None:
    topic = new_topic(kafka_broker.bootstrap_servers, "spine.roundtrip", partitions=3)
    sent = [make_trade(symbol, n) for symbol in ("AAPL", "MSFT") for n in range(20)]
    publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in sent])

    received = consume_all(kafka_broker.bootstrap_servers, topic, expected=len(sent))

    trades = [Trade.model_validate_json(r.value) for r in received]
    assert sorted(trades, key=lambda t: t.trade_id) == sorted(sent, key=lambda t: t.trade_id)
    for symbol in ("AAPL", "MSFT"):
        assert [t for t in trades if t.symbol == symbol] == [t for t in sent if t.symbol == symbol]
    partitions_by_symbol: dict[bytes, set[int]] = {}
    for record in received:
        partitions_by_symbol.setdefault(record.key, set()).add(record.partition)
    assert all(len(p) == 1 for p in partitions_by_symbol.values()), "one symbol must stay on one partition"


@pytest.mark.integration  # starts a broker of its own
def test_second_start_is_a_noop_and_stop_leaves_no_process(tmp_path: Path) -> None:
    broker = start_broker(tmp_path)
    pid = int(broker.pid_file.read_text())
    broker.start()
    assert int(broker.pid_file.read_text()) == pid
    running = subprocess.run(["pgrep", "-f", f"{tmp_path}/server.properties"], capture_output=True, text=True)
    assert len(running.stdout.split()) == 1, "a second start must not start a second broker"
    # The JVM options come from KAFKA_JVM_PERFORMANCE_OPTS (the suite sets it), as in Kafka's scripts.
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert os.environ["KAFKA_JVM_PERFORMANCE_OPTS"] == TEST_BROKER_JVM_OPTIONS
    assert [o.encode() for o in TEST_BROKER_JVM_OPTIONS.split()] == [a for a in command_line if a.startswith(b"-XX:")]

    broker.stop()
    broker.stop()  # stopping a stopped broker is not an error

    assert not pid_alive(pid)
    assert not broker.is_running()


def test_spark_reads_kafka_writes_iceberg_and_pyiceberg_reads_it_back(spark, lake: Settings, kafka_broker) -> None:
    from lakehouse import raw_trades_stream
    settings = lake

    sent = [make_trade(symbol, n) for symbol in ("AAPL", "MSFT", "NVDA") for n in range(50)]
    new_topic(kafka_broker.bootstrap_servers, settings.kafka.trades_topic, partitions=settings.kafka.partitions)
    publish(kafka_broker.bootstrap_servers, settings.kafka.trades_topic, [(t.key(), t.to_json_bytes()) for t in sent])

    query = raw_trades_stream.start(spark, settings)
    query.processAllAvailable()
    query.stop()

    table = load_catalog(settings).load_table(table_identifier(settings, TRADES))
    rows = table.scan().to_arrow().to_pylist()
    stored = {row["trade_id"]: row for row in rows}
    assert len(rows) == len(sent) == len(stored)
    for trade in sent:
        row = stored[trade.trade_id]
        assert (row["symbol"], row["price"], row["volume"]) == (trade.symbol, trade.price, trade.volume)
        assert int(row["event_time"].timestamp() * 1000) == trade.event_time_ms
        assert row["conditions"] == trade.conditions


def test_table_written_by_pyiceberg_is_read_by_spark(spark, lake: Settings) -> None:
    import pyarrow as pa
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField, StringType
    settings = lake

    catalog = load_catalog(settings)
    catalog.create_namespace_if_not_exists(settings.catalog.namespace)
    identifier = f"{settings.catalog.namespace}.written_by_pyiceberg"
    schema = Schema(
        NestedField(1, "symbol", StringType(), required=False), NestedField(2, "n", LongType(), required=False)
    )
    table = catalog.create_table(identifier, schema=schema)
    table.append(pa.table({"symbol": ["VCB", "FPT"], "n": [1, 2]}))

    rows = spark.sql(f"SELECT symbol, n FROM {settings.catalog.name}.{identifier} ORDER BY n").collect()

    assert [(r.symbol, r.n) for r in rows] == [("VCB", 1), ("FPT", 2)]
    assert json.loads(json.dumps(table.metadata.location))  # the table lives in the shared warehouse
    assert table.metadata.location.startswith(Path(settings.state_dir, "warehouse").as_uri())


def test_local_files_are_written_through_the_java_nio_filesystem(spark, tmp_path: Path) -> None:
    """Hadoop's own local FileSystem forks `chmod` for every file it creates (no libhadoop in Maven
    jars); the session's ``file:`` FileSystem sets permissions through java.nio instead."""
    jvm = spark._jvm
    hadoop_fs = jvm.org.apache.hadoop.fs
    filesystem = hadoop_fs.FileSystem.get(jvm.java.net.URI("file:///"), spark._jsc.hadoopConfiguration())
    assert filesystem.getClass().getName() == NIO_LOCAL_FILESYSTEM
    assert spark.conf.get("spark.sql.streaming.checkpointFileManagerClass") == FILESYSTEM_CHECKPOINTS

    stream = filesystem.create(hadoop_fs.Path((tmp_path / "probe").as_uri()))
    stream.write(bytearray(b"written"))
    stream.close()
    filesystem.setPermission(hadoop_fs.Path((tmp_path / "probe").as_uri()),
                             hadoop_fs.permission.FsPermission.createImmutable(0o640))

    assert (tmp_path / "probe").read_bytes() == b"written"
    assert (tmp_path / "probe").stat().st_mode & 0o777 == 0o640


def test_the_raw_trades_pool_comes_first_when_queries_share_the_cores(spark) -> None:
    """jobs.pipeline runs each query in a pool of its own (streaming.in_own_pool); the raw-trades
    query, which every other one reads, gets the next free core and four times the others' share."""
    scheduler = spark.sparkContext._jsc.sc()
    raw, bars = (scheduler.getPoolForName(name).get() for name in ("raw_trades", "bars"))
    assert (raw.weight(), raw.minShare()) == (4, 2)
    assert (bars.weight(), bars.minShare()) == (1, 0)
    for pool in ("vendor_bars", "feed_events", "source_rejects"):  # every pool jobs.pipeline uses
        assert scheduler.getPoolForName(pool).isDefined(), pool


def test_the_java_nio_filesystem_is_configured_only_when_its_jar_was_fetched() -> None:
    jar = "/x/jars/spark/hadoop-bare-naked-local-fs-0.1.0.jar"
    assert local_filesystem_conf(["/x/jars/spark/iceberg.jar", jar]) == {
        "spark.driver.extraClassPath": jar, "spark.hadoop.fs.file.impl": NIO_LOCAL_FILESYSTEM,
        "spark.sql.streaming.checkpointFileManagerClass": FILESYSTEM_CHECKPOINTS,
    }
    assert local_filesystem_conf(["/x/jars/spark/iceberg.jar"]) == {}
