"""Feed events: Kafka feed-events topic (gaps producers recorded) -> Iceberg ``feed_events``.

The job is wiring: the stream is defined in ``lakehouse.keyed_topics`` and run by
``lakehouse.keyed_topic_job``.

    python -m jobs.feed_events     # settings from conf/lakehouse.toml + LAKEHOUSE__* env
"""

from __future__ import annotations

from collections.abc import Sequence

from lakehouse import keyed_topic_job
from lakehouse.keyed_topics import FEED_EVENTS_STREAM


def main(argv: Sequence[str] | None = None) -> int:
    return keyed_topic_job.main(FEED_EVENTS_STREAM, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
