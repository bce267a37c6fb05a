"""The producers' Kafka sink against a real broker that goes away: a stop while Kafka is down keeps
what it has not acknowledged in its spool file, and the next start sends it first."""

from __future__ import annotations

import itertools
import time
import tracemalloc
from pathlib import Path

import pytest

from lakehouse.local.kafka_broker import ensure_topics
from producers.kafka_sink import RECORD_OVERHEAD_BYTES, KafkaSink, SinkClosedError, SinkConfig, read_spool, write_spool
from producers.simulators.kafka_reader import read_topic
from tests.conftest import start_broker


def test_a_stop_while_kafka_is_down_spools_what_was_not_acknowledged_and_the_next_start_sends_it(
    tmp_path: Path,
) -> None:
    broker = start_broker(tmp_path / "kafka")
    spool = tmp_path / "producer" / "unacknowledged.jsonl"
    config = SinkConfig(broker.bootstrap_servers, request_timeout_ms=2_000, spool_file=spool)
    try:
        ensure_topics(broker.bootstrap_servers, ["t"], 2)
        sink = KafkaSink(config)
        for n in range(100):
            sink.publish_raw("t", b"K%d" % (n % 3), b"%d" % n)
        assert sink.flush(30)
        broker.stop()
        for n in range(100, 400):
            sink.publish_raw("t", b"K%d" % (n % 3), b"%d" % n)
        assert not sink.close(timeout_seconds=2)
        assert sorted(int(value) for _, _, value in read_spool(spool)) == list(range(100, 400))

        broker.start(timeout_seconds=90)
        again = KafkaSink(config)  # sends the spool first
        again.publish_raw("t", b"K0", b"400")
        assert again.close(timeout_seconds=30)
        assert not spool.exists() and not spool.with_name(spool.name + ".replaying").exists()
        landed = read_topic(broker.bootstrap_servers, "t", timeout_seconds=30)
        # Every record, the spooled ones sent by the next start. A record the broker wrote as it went
        # down, but never acknowledged, is spooled too and lands twice: at least once is the promise
        # (the jobs store a trade once by its id).
        assert set(landed) == set(range(401)), "a record was lost"
    finally:
        broker.stop()


def test_the_buffer_bound_holds_the_memory_pending_records_really_take(tmp_path: Path) -> None:
    """32 MiB counted as key and value bytes alone held 142,729 records and ~290 MB of memory."""
    bound = 8 * 1024 * 1024
    broker = start_broker(tmp_path / "kafka")
    try:
        ensure_topics(broker.bootstrap_servers, ["t"], 2)
        sink = KafkaSink(SinkConfig(broker.bootstrap_servers, max_pending_bytes=bound))
        value = b"x" * 230
        sink.publish_raw("t", b"SYM0", value)
        assert sink.flush(30)  # the client knows the topic's partitions, so it queues without a broker
        broker.stop()
        tracemalloc.start()  # the Python heap the pending records take, whatever the allocator keeps
        try:
            give_up = time.monotonic() + 8
            with pytest.raises(SinkClosedError):  # back-pressure, until the caller gives up
                for n in itertools.count():
                    sink.publish_raw("t", b"SYM%d" % (n % 50), value, should_stop=lambda: time.monotonic() > give_up)
            grown = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert sink.stats.pending <= bound // (len(value) + RECORD_OVERHEAD_BYTES) + 1
        assert grown < 2 * bound, f"{grown / 2**20:.0f} MiB grown for a bound of {bound / 2**20:.0f} MiB"
        sink.close(timeout_seconds=0.1)
    finally:
        broker.stop()


def test_spooled_records_kafka_will_not_take_are_kept_and_the_sink_starts_anyway(
    kafka_broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spool naming a topic the broker does not have (deleted since, or another broker) blocked
    the start for ever."""
    import producers.kafka_sink

    monkeypatch.setattr(producers.kafka_sink, "SPOOL_SEND_PATIENCE_SECONDS", 2.0)
    spool = tmp_path / "unacknowledged.jsonl"
    write_spool(spool, [("no-such-topic", b"K", b"1"), ("no-such-topic", b"K", b"2")])
    ensure_topics(kafka_broker.bootstrap_servers, ["spool-ok"], 1)
    sink = KafkaSink(SinkConfig(kafka_broker.bootstrap_servers, spool_file=spool))
    sink.publish_raw("spool-ok", b"K", b"3")
    assert sink.close(timeout_seconds=30)
    assert [value for _, _, value in read_spool(spool)] == [b"1", b"2"]
    assert read_topic(kafka_broker.bootstrap_servers, "spool-ok", timeout_seconds=30) == [3]
