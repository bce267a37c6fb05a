"""Feed events: Kafka feed-events topic (gaps producers recorded) -> Iceberg ``feed_events``."""

from __future__ import annotations

import argparse

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from lakehouse import keyed_topic_job
from lakehouse.logs import configure_logging
from lakehouse.messages import FeedEvent
from lakehouse.settings import Settings, load_settings
from lakehouse.spark import build_spark_session
from lakehouse.streaming import run_until_stopped
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
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    configure_logging()
    settings = load_settings()
    run_until_stopped([start(build_spark_session(settings, JOB.name), settings)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
