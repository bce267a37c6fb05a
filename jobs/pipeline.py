"""The whole streaming pipeline in one Spark application: raw trades, 1-minute bars, vendor bars,
feed events and producers' rejects. One driver instead of five saves memory on a small machine;
on a cluster each job can equally run on its own (./spark-submit.sh raw_trades, bars, ...).

The job is wiring; the streams live in ``lakehouse.raw_trades_stream``, ``lakehouse.bars_stream``
and ``lakehouse.keyed_topics``.

    python -m jobs.pipeline        # settings from conf/lakehouse.toml + LAKEHOUSE__* env
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lakehouse import keyed_topic_job, raw_trades_stream
from lakehouse.bars_stream import catch_up_bars, start_bars_query
from lakehouse.job_args import job_metrics, job_parser, job_settings
from lakehouse.kafka_loss import KafkaDataLost
from lakehouse.keyed_topics import FEED_EVENTS_STREAM, SOURCE_REJECTS_STREAM, VENDOR_BARS_STREAM
from lakehouse.logs import configure_logging
from lakehouse.ops.stream_metrics import serve_stream_metrics, start_stream_metrics
from lakehouse.shutdown import StopRequest
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.streaming import in_own_pool, run_until_stopped

JOB_NAME = "pipeline"
log = logging.getLogger(JOB_NAME)


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(JOB_NAME, __doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    configure_logging()
    settings = job_settings(parser, args.config)
    job_metrics(parser, lambda: serve_stream_metrics(settings.metrics.streaming_port))  # ops hook: Prometheus
    stop = StopRequest(JOB_NAME).install()  # a signal while the queries start is served too
    spark = build_spark_session(settings, JOB_NAME)
    try:
        ensure_tables(spark, settings)
        start_stream_metrics(spark, settings.metrics.streaming_port)  # port 0: no metrics
        starts = {  # the pool of each query (``in_own_pool``) is named after it
            "raw_trades": lambda: raw_trades_stream.start(spark, settings),
            "bars": lambda: start_bars_query(spark, settings),
            **{stream.name: (lambda s=stream: keyed_topic_job.start(s, spark, settings))
               for stream in (VENDOR_BARS_STREAM, FEED_EVENTS_STREAM, SOURCE_REJECTS_STREAM)},
        }
        queries = [in_own_pool(spark, pool, start) for pool, start in starts.items()]
        log.info("pipeline running: %s", ", ".join(q.name for q in queries))
        # Raw trades stop first; the bars then take in what it stored last, so the two agree.
        run_until_stopped(queries, JOB_NAME, stop=stop, after_stop=[lambda: catch_up_bars(spark, settings)])
    except KafkaDataLost as lost:  # one line that says what was lost and how to go on, no trace
        log.error("%s", lost)
        return 1
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
