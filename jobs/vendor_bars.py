"""Vendor bars: Kafka vendor-bars topic -> Iceberg ``vendor_bars``, upserted on
(source, symbol, interval, bar_start); rejects -> ``quarantine``.

The job is wiring: the stream is defined in ``lakehouse.keyed_topics`` and run by
``lakehouse.keyed_topic_job``.

    python -m jobs.vendor_bars     # settings from conf/lakehouse.toml + LAKEHOUSE__* env
"""

from __future__ import annotations

from collections.abc import Sequence

from lakehouse import keyed_topic_job
from lakehouse.keyed_topics import VENDOR_BARS_STREAM


def main(argv: Sequence[str] | None = None) -> int:
    return keyed_topic_job.main(VENDOR_BARS_STREAM, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
