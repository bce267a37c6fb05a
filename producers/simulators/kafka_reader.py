"""Read a Kafka topic from the beginning to its current end: how tests and demos check what landed.

Reads by partition (no consumer group), so messages of one key come back in the order they were
written. Values are decoded JSON objects.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition


def read_topic(bootstrap_servers: str, topic: str, timeout_seconds: float = 30.0) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
        request_timeout_ms=20000,
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not assigned:
            return []
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end = consumer.end_offsets(assigned)
        by_partition: dict[int, list[dict[str, Any]]] = {tp.partition: [] for tp in assigned}
        deadline = time.monotonic() + timeout_seconds
        while any(consumer.position(tp) < end[tp] for tp in assigned):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its end within {timeout_seconds}s")
            for tp, records in consumer.poll(timeout_ms=500).items():
                by_partition[tp.partition].extend(json.loads(r.value) for r in records)
        return [message for p in sorted(by_partition) for message in by_partition[p]]
    finally:
        consumer.close()
