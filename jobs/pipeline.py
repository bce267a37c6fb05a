"""The whole streaming pipeline in one Spark application: raw trades, 1-minute bars, vendor bars,
feed events and producers' rejects. One driver instead of five saves memory on a small machine;
on a cluster each job can equally run on its own (./spark-submit.sh raw_trades, bars, ...)."""

from __future__ import annotations

import argparse
import logging

from jobs import bars, feed_events, raw_trades, source_rejects, vendor_bars
from lakehouse.logs import configure_logging
from lakehouse.ops.stream_metrics import start_stream_metrics
from lakehouse.settings import load_settings
from lakehouse.shutdown import StopRequest
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.streaming import in_own_pool, run_until_stopped

log = logging.getLogger("pipeline")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.replace("\n", " ")).parse_args(argv)
    configure_logging()
    settings = load_settings()
    stop = StopRequest("pipeline").install()  # a signal while the queries start is served too
    spark = build_spark_session(settings, "pipeline")
    try:
        ensure_tables(spark, settings)
        start_stream_metrics(spark, settings.metrics.streaming_port)  # ops hook: Prometheus, 0 = off
        starts = {
            "raw_trades": lambda: raw_trades.start(spark, settings),
            "bars": lambda: bars.start_bars_query(spark, settings),
            "vendor_bars": lambda: vendor_bars.start(spark, settings),
            "feed_events": lambda: feed_events.start(spark, settings),
            "source_rejects": lambda: source_rejects.start(spark, settings),
        }
        queries = [in_own_pool(spark, pool, start) for pool, start in starts.items()]
        log.info("pipeline running: %s", ", ".join(q.name for q in queries))
        run_until_stopped(queries, "pipeline", stop=stop)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
