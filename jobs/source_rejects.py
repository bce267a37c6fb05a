"""Source rejects: the producers' quarantine topic (frames a source sent that could not become a
message) -> Iceberg ``quarantine``, beside the jobs' own rejects, so every reject is in one table."""

from __future__ import annotations

from functools import partial

from lakehouse import keyed_topic_job
from lakehouse.messages import QuarantinedInput
from lakehouse.tables import QUARANTINE
from lakehouse.vendor_feeds import source_reject_rows

JOB = keyed_topic_job.KeyedTopicJob(
    name="source_rejects",
    model=QuarantinedInput,
    table=QUARANTINE,
    to_rows=source_reject_rows,
    topic=lambda settings: settings.kafka.quarantine_topic,
    order_by="kafka_offset",
    append_only=True,
)


# The shared shape of a keyed-topic job, bound to this one (``start(spark, settings)``, ``main(argv)``).
start = partial(keyed_topic_job.start, JOB)
main = partial(keyed_topic_job.main, JOB, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
