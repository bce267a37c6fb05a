"""Feed events: Kafka feed-events topic (gaps producers recorded) -> Iceberg ``feed_events``."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse import keyed_topic_job
from lakehouse.messages import FeedEvent
from lakehouse.settings import Settings
from lakehouse.tables import FEED_EVENTS
from lakehouse.vendor_feeds import feed_event_rows

JOB = keyed_topic_job.KeyedTopicJob(
    name="feed_events",
    model=FeedEvent,
    table=FEED_EVENTS,
    to_rows=feed_event_rows,
    topic=lambda settings: settings.kafka.feed_events_topic,
    order_by="end_time",
)


def start(spark: SparkSession, settings: Settings) -> StreamingQuery:
    return keyed_topic_job.start(JOB, spark, settings)


def main(argv: list[str] | None = None) -> int:
    return keyed_topic_job.main(JOB, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
