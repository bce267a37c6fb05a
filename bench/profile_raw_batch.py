"""Where a raw-trades micro-batch spends its time: each step of ``jobs.raw_trades.write_batch`` timed.

Pre-loads a topic, reads ``--rows`` messages as one static Kafka DataFrame (what foreachBatch is
handed) and runs the batch function's steps one by one, each forced with a Spark action, then the
whole ``write_batch`` twice (empty table, then a table already holding the same event-time range).

    .venv/bin/python -m bench.profile_raw_batch [--rows 500000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_raw_trades import START_MS, fresh_tables
from bench.common import describe_machine, lakehouse_settings, local_broker, publish_with_spark, trade_messages
from lakehouse.catalog import spark_table_name
from lakehouse.local.kafka_broker import ensure_topics
from lakehouse.spark import build_spark_session
from lakehouse.tables import TRADES


def timed(label: str, action):
    started = time.perf_counter()
    result = action()
    print(f"  {label:<48} {time.perf_counter() - started:6.2f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    args = parser.parse_args(argv)
    state = tempfile.mkdtemp(prefix="bench-profile-")
    try:
        with local_broker() as broker:
            settings = lakehouse_settings(state, broker.bootstrap_servers)
            topic = settings.kafka.trades_topic
            ensure_topics(broker.bootstrap_servers, [topic], 4)
            spark = build_spark_session(settings, "bench-profile")
            print(describe_machine())
            publish_with_spark(spark, trade_messages(spark, 2 * args.rows, 50, START_MS, 3_600_000),
                               broker.bootstrap_servers, topic)
            from pyspark.sql import functions as F

            from jobs.raw_trades import write_batch
            from lakehouse.messages import Trade
            from lakehouse.parsing import REJECT_REASON, parse_messages
            from lakehouse.trades import event_time_ranges, first_of_each_trade, trade_rows

            def kafka_reader():
                return (spark.read.format("kafka").option("kafka.bootstrap.servers", broker.bootstrap_servers)
                        .option("subscribe", topic))

            sizes = {r["partition"]: r["count"] for r in kafka_reader().load().groupBy("partition").count().collect()}

            def offsets(half: int) -> str:
                return json.dumps({topic: {str(p): n // 2 * half for p, n in sizes.items()}})

            def kafka_batch(half: int):
                """The first (0) or second (1) half of every partition."""
                return (kafka_reader().option("startingOffsets", offsets(half))
                        .option("endingOffsets", offsets(half + 1)).load())

            fresh_tables(spark, settings)
            batch = kafka_batch(0).persist()
            print(f"steps on {args.rows:,} messages:")
            timed("read Kafka (cache raw batch)", batch.count)
            parsed = parse_messages(batch, Trade).persist()
            timed("parse (from_json + rules, cached)", parsed.count)
            timed("reject count", lambda: parsed.where(F.col(REJECT_REASON).isNotNull()).count())
            trades = first_of_each_trade(trade_rows(parsed.where(F.col(REJECT_REASON).isNull()))).persist()
            timed("dedupe by trade_id (min_by, cached)", trades.count)
            timed("event_time_ranges (collect)", lambda: event_time_ranges(trades))
            timed("stored ids in ranges (empty table)", lambda: spark.table(spark_table_name(settings, TRADES))
                  .where(F.col("event_time") > F.lit("1970-01-01")).select("trade_id").count())
            timed("append to Iceberg (no anti-join)", lambda: trades.writeTo(spark_table_name(settings, TRADES))
                  .append())
            parsed.unpersist()
            trades.unpersist()
            fresh_tables(spark, settings)
            timed("write_batch, empty table", lambda: write_batch(settings, "profile", batch, 0))
            second = kafka_batch(1).persist()
            second.count()
            timed("write_batch, table holds the batch before", lambda: write_batch(settings, "profile", second, 1))
            timed("write_batch, replayed (already committed)", lambda: write_batch(settings, "profile", second, 1))
            spark.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
