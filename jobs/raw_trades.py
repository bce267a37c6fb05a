"""Raw trades: Kafka trades topic -> Iceberg ``trades`` (every trade once) + ``quarantine``.

The job is wiring; the logic lives in ``lakehouse.raw_trades_stream``.

    python -m jobs.raw_trades      # settings from conf/lakehouse.toml + LAKEHOUSE__* env
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lakehouse import raw_trades_stream
from lakehouse.job_args import job_metrics, job_parser, job_settings
from lakehouse.kafka_loss import KafkaDataLost
from lakehouse.logs import configure_logging
from lakehouse.ops import stream_metrics
from lakehouse.spark import build_spark_session
from lakehouse.streaming import run_until_stopped

JOB_NAME = raw_trades_stream.JOB_NAME


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(JOB_NAME, __doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    configure_logging()
    settings = job_settings(parser, args.config)
    job_metrics(parser, lambda: stream_metrics.serve_stream_metrics(settings.metrics.streaming_port))  # ops hook
    spark = build_spark_session(settings, JOB_NAME)
    try:
        stream_metrics.start_stream_metrics(spark, settings.metrics.streaming_port)  # port 0: no metrics
        run_until_stopped([raw_trades_stream.start(spark, settings)], JOB_NAME)
    except KafkaDataLost as lost:  # one line that says what was lost and how to go on, no trace
        logging.getLogger(JOB_NAME).error("%s", lost)
        return 1
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
