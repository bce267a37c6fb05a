"""The harness of the head-to-head benchmark against Iceberg's Kafka Connect sink works end to end:
a real distributed Connect worker with the sink stores exactly the trades sent, with their times,
in a table of our schema and partition spec (so the benchmark never compares against an empty or
half-filled table). bench/bench_kafka_connect.py, docs/performance.md#against-icebergs-kafka-connect-sink.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bench.iceberg_sink import ConnectWorker, sink_config
from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.settings import Settings
from lakehouse.tables import COMMON_PROPERTIES, TRADES, TableDef
from tests.kafka_helpers import new_topic, publish
from tests.test_raw_trades import trade

SINK_TABLE = replace(TRADES, name="trades_by_connect_sink")


def create_trades_table(settings: Settings, table: TableDef) -> None:
    """``table`` (the trades schema) with the trades partition spec and properties, by pyiceberg: no
    Spark session needed (the benchmark creates both of its tables with Spark's ``ensure_tables``)."""
    from lakehouse.reading.synthetic import partition_spec

    schema = table.schema
    spec = partition_spec(TRADES)  # the trades table's default (day, symbol) spec
    catalog = load_catalog(settings)
    catalog.create_namespace_if_not_exists(settings.catalog.namespace)
    catalog.create_table(table_identifier(settings, table), schema=schema, partition_spec=spec,
                         properties={**COMMON_PROPERTIES, **table.properties})


def test_the_sink_in_a_connect_worker_stores_exactly_the_trades_sent(settings: Settings, kafka_broker, tmp_path: Path):
    create_trades_table(settings, SINK_TABLE)
    topic = new_topic(kafka_broker.bootstrap_servers, "sink.trades", partitions=2)
    control = new_topic(kafka_broker.bootstrap_servers, "sink.control", partitions=1)
    trades = [trade(symbol, n) for n in range(400) for symbol in ("SINKA", "SINKB", "SINKC")]
    publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in trades])

    # The whole topic is read in the task's first poll; after that only a flush interval's timeout
    # brings the next `put`, in which the sink answers a commit round (bench/iceberg_sink.py).
    worker = ConnectWorker(kafka_broker.bootstrap_servers, tmp_path / "connect", group="test-sink", heap_mb=512,
                           offset_flush_interval_ms=1000)
    worker.start()
    table = load_catalog(settings).load_table(table_identifier(settings, SINK_TABLE))
    try:
        worker.put_connector("test-sink", sink_config(settings, topic, table_identifier(settings, SINK_TABLE),
                                                     control, commit_interval_ms=1000, tasks=1))
        deadline = time.monotonic() + 150
        stored = 0
        while stored < len(trades) and time.monotonic() < deadline:
            worker.check("test-sink")
            time.sleep(1)
            table = table.refresh()
            stored = int(table.current_snapshot().summary["total-records"]) if table.current_snapshot() else 0
    finally:
        worker.stop()

    rows = table.scan().to_arrow().to_pylist()
    assert len(rows) == len(trades), f"stored {len(rows)} of {len(trades)} trades"
    by_id = {row["trade_id"]: row for row in rows}
    assert set(by_id) == {t.trade_id for t in trades}, "the sink lost or duplicated a trade"
    for sent in trades:
        row = by_id[sent.trade_id]
        assert (row["symbol"], row["price"], row["volume"]) == (sent.symbol, sent.price, sent.volume)
        assert row["event_time"] == datetime.fromtimestamp(sent.event_time_ms / 1000, UTC)
        assert row["received_time"] == datetime.fromtimestamp(sent.received_time_ms / 1000, UTC)
        assert row["conditions"] == sent.conditions
    assert {(row["kafka_partition"], row["kafka_offset"]) for row in rows} == {
        (p, o) for p in (0, 1) for o in range(sum(1 for row in rows if row["kafka_partition"] == p))
    }, "every record of the topic once, with its Kafka partition and offset"
    spec = table.spec()
    assert [(f.name, str(f.transform)) for f in spec.fields] == [("event_time_day", "day"), ("symbol", "identity")]
