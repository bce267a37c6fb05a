"""1-minute OHLCV bars, downstream of the raw trades table: the appends to ``trades`` -> ``bars_1m``,
and trades that come after their bar closed (the allowed lateness,
LAKEHOUSE__STREAMING__ALLOWED_LATENESS_SECONDS) -> ``late_trades``.

The job is wiring; the logic lives in ``lakehouse.bars_stream``.

    python -m jobs.bars            # settings from conf/lakehouse.toml + LAKEHOUSE__* env
"""

from __future__ import annotations

from collections.abc import Sequence

from lakehouse.bars_stream import JOB_NAME, start_bars_query
from lakehouse.job_args import at_least, job_metrics, job_parser, job_settings
from lakehouse.logs import configure_logging
from lakehouse.ops import stream_metrics
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.streaming import run_until_stopped
from lakehouse.tables import BARS_1M, LATE_TRADES, TRADES


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(JOB_NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--max-rows-per-batch", type=at_least(1, int), default=None,
                        help="soft cap on trades per micro-batch (Iceberg streaming-max-rows-per-micro-batch)")
    args = parser.parse_args(argv)
    configure_logging()
    settings = job_settings(parser, args.config)
    job_metrics(parser, lambda: stream_metrics.serve_stream_metrics(settings.metrics.streaming_port))  # ops hook
    spark = build_spark_session(settings, "lakehouse-bars")
    try:
        ensure_tables(spark, settings, (TRADES, BARS_1M, LATE_TRADES))
        stream_metrics.start_stream_metrics(spark, settings.metrics.streaming_port)  # port 0: no metrics
        query = start_bars_query(spark, settings, max_rows_per_batch=args.max_rows_per_batch)
        run_until_stopped([query], JOB_NAME)  # SIGTERM/SIGINT stop the query between micro-batches
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
