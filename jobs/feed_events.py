"""Feed events: Kafka feed-events topic (gaps producers recorded) -> Iceberg ``feed_events``."""

from __future__ import annotations

from functools import partial

from lakehouse import keyed_topic_job
from lakehouse.messages import FeedEvent
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


# The shared shape of a keyed-topic job, bound to this one (``start(spark, settings)``, ``main(argv)``).
start = partial(keyed_topic_job.start, JOB)
main = partial(keyed_topic_job.main, JOB, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
