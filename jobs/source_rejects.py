"""Source rejects: the producers' quarantine topic (frames a source sent that could not become a
message) -> Iceberg ``quarantine``, beside the jobs' own rejects.

The job is wiring: the stream is defined in ``lakehouse.keyed_topics`` and run by
``lakehouse.keyed_topic_job``.

    python -m jobs.source_rejects     # settings from conf/lakehouse.toml + LAKEHOUSE__* env
"""

from __future__ import annotations

from collections.abc import Sequence

from lakehouse import keyed_topic_job
from lakehouse.keyed_topics import SOURCE_REJECTS_STREAM


def main(argv: Sequence[str] | None = None) -> int:
    return keyed_topic_job.main(SOURCE_REJECTS_STREAM, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
