"""Messages Kafka deleted before a stream read them, found before the stream starts again.

A stream that stays down longer than its topic's retention (or whose topic was deleted and created
again) comes back to offsets Kafka no longer holds. Spark's Kafka source would fail the query with
an ``OffsetOutOfRangeException`` on every restart; its ``failOnDataLoss=false`` would skip the
messages with a warning in a log. Neither says what was lost, and the second loses it silently.

So before a Kafka stream starts on an existing checkpoint, its committed position is compared with
the offsets Kafka holds (``lost_ranges``, pure). A loss stops the job with a message that names
each partition's lost offsets (``KafkaDataLost``). With ``streaming.accept_kafka_loss`` the job
records the loss as a ``kafka`` gap in ``feed_events`` (what the reading API's ``feed_gaps`` and the
data-quality notebook show), moves the checkpoint aside and starts a new one exactly where the old
one stopped, or at Kafka's oldest offset where that is gone: nothing held is skipped or read twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lakehouse.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

KAFKA_SOURCE = "kafka"  # feed_events.source of a loss the jobs found in Kafka (producers use their own)


@dataclass(frozen=True)
class LostRange:
    """Offsets ``[first, end)`` of one partition the stream had yet to read and Kafka no longer holds.
    ``reset``: the partition's offsets went back (the topic was created again), so which messages the
    old topic held past ``first`` is unknown; ``end`` is then where the new topic ends."""

    topic: str
    partition: int
    first: int
    end: int
    reset: bool = False

    def describe(self) -> str:
        if self.reset:
            return (f"partition {self.partition}: read to offset {self.first}, but the partition now ends at "
                    f"{self.end} (the topic was deleted and created again; what it held past {self.first} is gone)")
        count = self.end - self.first
        messages = f"{count:,} message{'s' * (count != 1)}"
        return f"partition {self.partition}: offsets {self.first}-{self.end - 1} ({messages})"


def lost_ranges(topic: str, committed: dict[int, int], earliest: dict[int, int],
                latest: dict[int, int]) -> list[LostRange]:
    """What of ``topic`` a stream committed up to ``committed`` (partition -> next offset to read)
    can no longer read, given the offsets Kafka holds now (``earliest`` up to ``latest``). A
    partition Kafka no longer has counts as reset to nothing; a new partition loses nothing (the
    stream reads it from its start)."""
    ranges = []
    for partition, position in sorted(committed.items()):
        first, end = earliest.get(partition, 0), latest.get(partition, 0)
        if position > end or partition not in latest:
            ranges.append(LostRange(topic, partition, position, end, reset=True))
        elif position < first:
            ranges.append(LostRange(topic, partition, position, first))
    return ranges


def resume_offsets(committed: dict[int, int], earliest: dict[int, int], latest: dict[int, int]) -> dict[int, int]:
    """Where a new checkpoint starts once a loss is accepted: each partition's committed position, or
    Kafka's oldest offset where that position is gone or the partition was reset; partitions the old
    checkpoint never saw start at their oldest offset too."""
    start = {partition: earliest.get(partition, 0) for partition in latest}
    for partition, position in committed.items():
        if partition in latest and start[partition] <= position <= latest[partition]:
            start[partition] = position
    return start


def describe_ranges(ranges: list[LostRange]) -> str:
    return "; ".join(f"{r.topic} {r.describe()}" for r in ranges)


def loss_summary(job: str, ranges: list[LostRange]) -> str:
    return (
        f"{job}: Kafka no longer holds messages this job had yet to read: {describe_ranges(ranges)}. They were "
        f"deleted (the topic's retention ran out while the job was stopped or behind, or the topic was created "
        f"again) and cannot be stored"
    )


def loss_message(job: str, ranges: list[LostRange]) -> str:
    """``loss_summary`` and what to do about it."""
    topics = sorted({r.topic for r in ranges})
    return (
        f"{loss_summary(job, ranges)}. To go on from the oldest messages Kafka still holds, recording the loss as a "
        f"'{KAFKA_SOURCE}' gap in feed_events, start the job once with LAKEHOUSE__STREAMING__ACCEPT_KAFKA_LOSS=true; "
        f"to keep more, raise the retention of {', '.join(topics)} above the longest stop you expect."
    )


class KafkaDataLost(RuntimeError):
    """A stream cannot go on where it stopped: Kafka deleted messages it had not read yet."""

    def __init__(self, job: str, ranges: list[LostRange]):
        super().__init__(loss_message(job, ranges))
        self.ranges = ranges


def kafka_offsets_of(offsets_file_text: str) -> dict[str, dict[int, int]]:
    """topic -> partition -> offset from a checkpoint's ``offsets/<n>`` file (format ``v1``, a
    metadata line, then one line per source; a Kafka source's line is ``{"topic":{"0":42}}``; other
    sources' lines, such as Iceberg's, are skipped)."""
    topics: dict[str, dict[int, int]] = {}
    for line in offsets_file_text.splitlines()[2:]:
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(value, dict):
            continue
        for topic, partitions in value.items():
            if isinstance(partitions, dict) and partitions and all(
                    str(p).isdigit() and isinstance(o, int) for p, o in partitions.items()):
                topics[topic] = {int(p): o for p, o in partitions.items()}
    return topics


@dataclass(frozen=True)
class CommittedPosition:
    offsets: dict[int, int]  # partition -> next offset to read
    committed_time: datetime  # when the checkpoint's newest committed micro-batch was committed


class Checkpoint:
    """A streaming checkpoint through Hadoop's file system (local, ``gs://``, ``hdfs://``), as Spark
    itself reaches it."""

    def __init__(self, spark: SparkSession, location: str):
        jvm = spark.sparkContext._jvm
        self._jvm = jvm
        self.location = location
        self._path = jvm.org.apache.hadoop.fs.Path(location)
        self._fs = self._path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def _child(self, *names: str):
        return self._jvm.org.apache.hadoop.fs.Path(self.location.rstrip("/") + "/" + "/".join(names))

    def _batch_ids(self, folder: str) -> set[int]:
        path = self._child(folder)
        if not self._fs.exists(path):
            return set()
        return {int(status.getPath().getName()) for status in self._fs.listStatus(path)
                if status.getPath().getName().isdigit()}

    def position(self, topic: str) -> CommittedPosition | None:
        """``topic``'s offsets after the newest micro-batch both planned and committed (None when the
        checkpoint holds none): where the stream goes on after a restart."""
        committed = self._batch_ids("offsets") & self._batch_ids("commits")
        if not committed:
            return None
        batch = str(max(committed))
        stream = self._fs.open(self._child("offsets", batch))
        try:
            text = self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()
        offsets = kafka_offsets_of(text).get(topic)
        if offsets is None:
            return None
        committed_ms = self._fs.getFileStatus(self._child("commits", batch)).getModificationTime()
        return CommittedPosition(offsets, datetime.fromtimestamp(committed_ms / 1000, UTC))

    def move_aside(self) -> str:
        """Rename the checkpoint to ``<location>.lost-<UTC time>`` and return the new name."""
        moved = f"{self.location.rstrip('/')}.lost-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        if not self._fs.rename(self._path, self._jvm.org.apache.hadoop.fs.Path(moved)):
            raise OSError(f"could not move the checkpoint {self.location} aside to {moved}")
        return moved


def offset_bounds(settings: Settings, topics: Iterable[str], timeout_seconds: float
                  ) -> dict[str, tuple[dict[int, int], dict[int, int]]]:
    """topic -> (oldest offset Kafka holds, end offset) per partition, from the broker (a topic it
    does not have: no partitions). Shared by this check and ``lakehouse status``."""
    from kafka import KafkaConsumer, TopicPartition

    from lakehouse.kafka_security import kafka_python_options

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers,
                             bootstrap_timeout_ms=int(timeout_seconds * 1000), enable_auto_commit=False,
                             **kafka_python_options(settings))
    try:
        result = {}
        for topic in topics:
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            earliest, ends = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
            result[topic] = ({tp.partition: o for tp, o in earliest.items()},
                             {tp.partition: o for tp, o in ends.items()})
        return result
    finally:
        consumer.close()


def record_loss(spark: SparkSession, settings: Settings, job: str, ranges: list[LostRange],
                since: datetime) -> None:
    """One ``kafka`` gap in ``feed_events`` for the loss: from the old checkpoint's last commit to now."""
    from lakehouse.catalog import spark_table_name
    from lakehouse.spark import ensure_tables
    from lakehouse.tables import FEED_EVENTS
    from lakehouse.upserts import upsert

    ensure_tables(spark, settings, (FEED_EVENTS,))
    now = datetime.now(UTC)
    reason = f"{job}: deleted from Kafka before it was read: {describe_ranges(ranges)}"
    row = (KAFKA_SOURCE, "gap", "", since, now, reason[:2000], now)
    frame = spark.createDataFrame([row], "source string, kind string, symbol string, start_time timestamp, "
                                         "end_time timestamp, reason string, ingested_time timestamp")
    upsert(frame, FEED_EVENTS, spark_table_name(settings, FEED_EVENTS), "end_time")


def starting_offsets(spark: SparkSession, settings: Settings, job: str, checkpoint: str, *, topic: str) -> str | None:
    """Check a stream's checkpoint against what Kafka holds before the stream starts on it.

    Returns None when the stream can go on from its checkpoint (or has none yet). On a loss, raises
    ``KafkaDataLost``, or with ``streaming.accept_kafka_loss`` records it, moves the checkpoint
    aside and returns the ``startingOffsets`` JSON the new checkpoint starts from."""
    stored = Checkpoint(spark, checkpoint)
    position = stored.position(topic)
    if position is None:
        return None
    try:
        earliest, latest = offset_bounds(settings, [topic], settings.streaming.kafka_offsets_timeout_seconds)[topic]
    except Exception as error:  # Kafka not up yet: Spark's source waits for it as before
        log.warning("%s: could not compare the checkpoint with what Kafka holds (%s: %s); starting on the "
                    "checkpoint as it is", job, type(error).__name__, error)
        return None
    ranges = lost_ranges(topic, position.offsets, earliest, latest)
    if not ranges:
        return None
    if not settings.streaming.accept_kafka_loss:
        raise KafkaDataLost(job, ranges)
    log.warning("%s", loss_summary(job, ranges))
    record_loss(spark, settings, job, ranges, position.committed_time)
    moved = stored.move_aside()
    start = resume_offsets(position.offsets, earliest, latest)
    log.warning("%s: loss accepted and recorded in feed_events; old checkpoint kept at %s; a new one starts at %s",
                job, moved, start)
    return json.dumps({topic: {str(p): o for p, o in sorted(start.items())}})
