"""Producing and consuming test messages through the real broker with kafka-python."""

from __future__ import annotations

import json
from collections.abc import Iterable

from kafka import KafkaConsumer, KafkaProducer

from lakehouse.local.kafka_broker import ensure_topics


def publish(bootstrap_servers: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    """Send (key, value) pairs and wait until the broker acknowledged all of them."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5)
    count = 0
    for key, value in messages:
        producer.send(topic, key=key, value=value)
        count += 1
    producer.flush(timeout=30)
    producer.close()
    return count


def consume_all(bootstrap_servers: str, topic: str, expected: int, timeout_ms: int = 20000) -> list:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=timeout_ms,
    )
    records = []
    for record in consumer:
        records.append(record)
        if len(records) >= expected:
            break
    consumer.close()
    return records


def new_topic(bootstrap_servers: str, name: str, partitions: int = 2) -> str:
    ensure_topics(bootstrap_servers, [name], partitions)
    return name


def as_json(payload: dict) -> bytes:
    return json.dumps(payload).encode()
