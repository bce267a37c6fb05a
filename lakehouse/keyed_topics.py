"""The small keyed topics and their tables: vendor bars, feed events and producers' rejects.

Each is one ``KeyedTopicJob`` (``lakehouse.keyed_topic_job``): which topic it reads, which model
judges a message, which table its rows go to and how. ``jobs/vendor_bars.py``, ``jobs/feed_events.py``
and ``jobs/source_rejects.py`` run one each; ``jobs/pipeline.py`` runs all three.
"""

from __future__ import annotations

from lakehouse.keyed_topic_job import KeyedTopicJob
from lakehouse.messages import FeedEvent, QuarantinedInput, VendorBar
from lakehouse.tables import FEED_EVENTS, QUARANTINE, VENDOR_BARS
from lakehouse.vendor_feeds import feed_event_rows, source_reject_rows, vendor_bar_rows

# vnstock OHLCV bars, upserted on (source, symbol, interval, bar_start); rejects -> quarantine.
VENDOR_BARS_STREAM = KeyedTopicJob(
    name="vendor_bars",
    model=VendorBar,
    table=VENDOR_BARS,
    to_rows=vendor_bar_rows,
    topic=lambda settings: settings.kafka.vendor_bars_topic,
    order_by="received_time",
)

# The gaps producers recorded in their feeds.
FEED_EVENTS_STREAM = KeyedTopicJob(
    name="feed_events",
    model=FeedEvent,
    table=FEED_EVENTS,
    to_rows=feed_event_rows,
    topic=lambda settings: settings.kafka.feed_events_topic,
    order_by="end_time",
)

# Frames a source sent that could not become a message, beside the jobs' own rejects, so every
# reject is in one table.
SOURCE_REJECTS_STREAM = KeyedTopicJob(
    name="source_rejects",
    model=QuarantinedInput,
    table=QUARANTINE,
    to_rows=source_reject_rows,
    topic=lambda settings: settings.kafka.quarantine_topic,
    order_by="kafka_offset",
    append_only=True,
)
