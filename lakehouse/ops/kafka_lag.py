"""Kafka lag per topic and per streaming job, for the dashboard's pipeline view.

The same facts ``lakehouse status`` judges (``lakehouse.ops.status_probe``): a job's position is
the offsets of its newest committed micro-batch in its checkpoint (Structured Streaming keeps no
consumer group), the topic's end is the broker's latest offsets, and the lag is the messages in
between (``lakehouse.ops.status.lag_messages``). Only reads: the broker is asked with a consumer
that joins no group and commits nothing, and the checkpoints are read as files.

Checkpoints are read from the local file system (``streaming.checkpoint_dir``); on a cluster whose
checkpoints live in ``gs://`` the view shows each topic's end offsets without a job's position.
"""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.logs import error_line
from lakehouse.ops.status import lag_messages
from lakehouse.ops.status_probe import end_offsets, job_positions, project_topics
from lakehouse.settings import Settings


class KafkaUnavailableError(RuntimeError):
    """The broker did not answer within the timeout."""


@dataclass(frozen=True)
class TopicLag:
    """One row of the lag table: a topic and a job reading it (``job`` None: no job's checkpoint does)."""

    topic: str
    partitions: int
    end_offset: int  # summed over partitions: the messages ever written to the topic
    job: str | None = None
    committed_offset: int | None = None  # summed over partitions, as of the job's newest committed batch
    batch_id: int | None = None
    lag: int | None = None  # messages on the topic the job has not committed


def topic_lags(settings: Settings, timeout_seconds: float) -> list[TopicLag]:
    """A row per (topic, job) for the project's topics and every topic a checkpoint reads.

    Raises ``KafkaUnavailableError`` when the broker does not answer."""
    positions = job_positions(settings.path(settings.streaming.checkpoint_dir))
    topics = list(dict.fromkeys([*project_topics(settings), *(p.topic for p in positions)]))
    try:
        ends = end_offsets(settings, topics, timeout_seconds)
    except Exception as error:  # kafka-python raises several types for one fact: no broker answered
        raise KafkaUnavailableError(
            f"Kafka at {settings.kafka.bootstrap_servers} did not answer within {timeout_seconds:g} s "
            f"({error_line(error)})") from error
    rows = []
    for topic in topics:
        partitions = ends.get(topic, {})
        readers = [p for p in positions if p.topic == topic]
        end_total = sum(partitions.values())
        if not readers:
            rows.append(TopicLag(topic, len(partitions), end_total))
        for position in readers:
            rows.append(TopicLag(topic, len(partitions), end_total, position.job,
                                 sum(position.committed_offsets.values()), position.batch_id,
                                 lag_messages(partitions, position.committed_offsets)))
    return rows
