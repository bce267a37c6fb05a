"""Vendor bars: Kafka vendor-bars topic -> Iceberg ``vendor_bars``, upserted on
(source, symbol, interval, bar_start); rejects -> ``quarantine``."""

from __future__ import annotations

from functools import partial

from lakehouse import keyed_topic_job
from lakehouse.messages import VendorBar
from lakehouse.tables import VENDOR_BARS
from lakehouse.vendor_feeds import vendor_bar_rows

JOB = keyed_topic_job.KeyedTopicJob(
    name="vendor_bars",
    model=VendorBar,
    table=VENDOR_BARS,
    to_rows=vendor_bar_rows,
    topic=lambda settings: settings.kafka.vendor_bars_topic,
    order_by="received_time",
)


# The shared shape of a keyed-topic job, bound to this one (``start(spark, settings)``, ``main(argv)``).
start = partial(keyed_topic_job.start, JOB)
main = partial(keyed_topic_job.main, JOB, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
