"""A stream whose checkpoint points at messages Kafka deleted (retention ran out while it was stopped,
or the topic was created again) stops and names them; with ``accept_kafka_loss`` it records them as
a gap and goes on from the oldest messages Kafka holds, reading nothing twice. Real broker, Spark
and Iceberg; Kafka's own record deletion stands in for retention."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.kafka_loss import KafkaDataLost, LostRange, lost_ranges, resume_offsets, starting_offsets
from lakehouse.local.processes import free_port
from lakehouse.settings import Settings
from lakehouse.streaming import checkpoint_location
from lakehouse.tables import FEED_EVENTS
from tests.kafka_helpers import new_topic, publish
from tests.test_raw_trades import stored_rows, trade


def test_a_position_kafka_has_deleted_is_a_lost_range_up_to_the_oldest_offset_held() -> None:
    committed, earliest, latest = {0: 100, 1: 40, 2: 7}, {0: 250, 1: 10, 2: 0}, {0: 300, 1: 90, 2: 7}
    assert lost_ranges("t", committed, earliest, latest) == [LostRange("t", 0, 100, 250)]
    assert resume_offsets(committed, earliest, latest) == {0: 250, 1: 40, 2: 7}


def test_offsets_that_went_back_are_a_reset_and_the_new_topic_is_read_from_its_start() -> None:
    committed, earliest, latest = {0: 500, 1: 3}, {0: 0, 1: 0, 2: 0}, {0: 20, 1: 9, 2: 4}
    ranges = lost_ranges("t", committed, earliest, latest)
    assert ranges == [LostRange("t", 0, 500, 20, reset=True)]
    assert "created again" in ranges[0].describe()
    assert resume_offsets(committed, earliest, latest) == {0: 0, 1: 3, 2: 0}  # partition 2 is new: its start
    assert lost_ranges("t", {0: 5}, {}, {}) == [LostRange("t", 0, 5, 0, reset=True)]  # partition gone
    assert lost_ranges("t", {0: 5}, {0: 5}, {0: 5}) == []  # caught up exactly, nothing newer: no loss


def delete_up_to_end(bootstrap_servers: str, topic: str) -> dict[int, int]:
    """Delete every message of ``topic`` held now, as retention would; return the end offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    ends = consumer.end_offsets(partitions)
    consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    admin.delete_records(ends)
    admin.close()
    return {tp.partition: offset for tp, offset in ends.items()}


def test_a_raw_stream_back_after_its_messages_were_deleted_names_them_then_goes_on_once_the_loss_is_accepted(
    spark, lake: Settings, kafka_broker
):
    from lakehouse import raw_trades_stream

    settings = lake
    servers = kafka_broker.bootstrap_servers
    topic = new_topic(servers, settings.kafka.trades_topic, partitions=2)
    symbols = ("LOSSA", "LOSSB")
    trades = [trade(symbol, n) for n in range(300) for symbol in symbols]
    first, deleted, after, later = trades[:200], trades[200:400], trades[400:500], trades[500:]
    publish(servers, topic, [(t.key(), t.to_json_bytes()) for t in first])
    query = raw_trades_stream.start(spark, settings)
    query.processAllAvailable()
    query.stop()
    assert len(stored_rows(settings, symbols)) == len(first)

    publish(servers, topic, [(t.key(), t.to_json_bytes()) for t in deleted])  # the stream is stopped
    ends = delete_up_to_end(servers, topic)
    publish(servers, topic, [(t.key(), t.to_json_bytes()) for t in after])

    with pytest.raises(KafkaDataLost) as stopped:
        raw_trades_stream.start(spark, settings)
    message = str(stopped.value)
    assert f"{topic} partition" in message and "LAKEHOUSE__STREAMING__ACCEPT_KAFKA_LOSS=true" in message
    assert sum(r.end - r.first for r in stopped.value.ranges) == len(deleted)
    assert {r.end for r in stopped.value.ranges} <= set(ends.values())
    assert not spark.streams.active, "no query may start on a loss"

    query = raw_trades_stream.start(spark, settings.with_streaming(accept_kafka_loss=True))
    query.processAllAvailable()
    query.stop()
    ids = [r["trade_id"] for r in stored_rows(settings, symbols)]
    assert len(ids) == len(set(ids)), "a trade was stored twice"
    assert set(ids) == {t.trade_id for t in first + after}

    gaps = load_catalog(settings).load_table(table_identifier(settings, FEED_EVENTS)).scan().to_arrow().to_pylist()
    assert [(g["source"], g["kind"]) for g in gaps] == [("kafka", "gap")]
    assert f"raw_trades: deleted from Kafka before it was read: {topic} partition" in gaps[0]["reason"]
    assert gaps[0]["start_time"] < gaps[0]["end_time"]
    checkpoints = Path(settings.streaming.checkpoint_dir)
    assert [p.name for p in checkpoints.glob("raw_trades.lost-*")], "the old checkpoint is kept aside"

    # The new checkpoint goes on as any other: a restart without the setting reads only what is new.
    publish(servers, topic, [(t.key(), t.to_json_bytes()) for t in later])
    query = raw_trades_stream.start(spark, settings)
    query.processAllAvailable()
    query.stop()
    ids = [r["trade_id"] for r in stored_rows(settings, symbols)]
    assert len(ids) == len(set(ids)) == len(first) + len(after) + len(later)

    # Kafka not answering the check: the stream starts on its checkpoint, as before the check existed.
    down = settings.model_copy(update={"kafka": settings.kafka.model_copy(
        update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})}).with_streaming(kafka_offsets_timeout_seconds=1)
    assert starting_offsets(spark, down, "raw_trades", checkpoint_location(settings, "raw_trades"), topic=topic) is None
