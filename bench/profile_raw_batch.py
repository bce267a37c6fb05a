"""Where a raw-trades micro-batch spends its time: the ``RawTradesWriter`` steps, each timed.

Pre-loads a topic, reads ``--rows`` messages as one static Kafka DataFrame (what foreachBatch is
handed), runs the batch's steps one by one (each forced with a Spark action), then the whole writer
on consecutive batches (empty table, a table holding the previous batch, a replay), and prints the
physical plan of the trades write so the shuffles can be counted.

    .venv/bin/python -m bench.profile_raw_batch [--rows 500000] [--batches 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_raw_trades import START_MS, fresh_tables
from bench.common import describe_machine, lakehouse_settings, load, local_broker, publish_with_spark, trade_messages
from lakehouse.local.kafka_broker import ensure_topics
from lakehouse.spark import build_spark_session


def timed(label: str, action):
    started = time.perf_counter()
    result = action()
    print(f"  {label:<52} {time.perf_counter() - started:6.2f} s", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="messages per batch")
    parser.add_argument("--batches", type=int, default=3, help="consecutive batches for the whole writer")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-profile-", ignore_cleanup_errors=True) as state,
        local_broker() as broker,
    ):
        settings = lakehouse_settings(state, broker.bootstrap_servers)
        topic = settings.kafka.trades_topic
        ensure_topics(broker.bootstrap_servers, [topic], 4)
        spark = build_spark_session(settings, "bench-profile")
        print(describe_machine())
        total = args.rows * (args.batches + 1)
        publish_with_spark(spark, trade_messages(spark, total, 50, START_MS, 3_600_000),
                           broker.bootstrap_servers, topic)
        from pyspark.sql import functions as F

        from lakehouse.messages import Trade
        from lakehouse.parsing import REJECT_REASON, MessageParser
        from lakehouse.raw_trades_stream import RawTradesWriter
        from lakehouse.trades import TradeRows

        sizes = {row["partition"]: row["count"] for row in spark.read.format("kafka")
                 .option("kafka.bootstrap.servers", broker.bootstrap_servers).option("subscribe", topic)
                 .load().groupBy("partition").count().collect()}
        slices = args.batches + 1

        def kafka_batch(index: int):
            """Batch ``index``: the index-th of ``slices`` equal slices of every partition."""

            def offsets(k: int) -> str:
                return json.dumps({topic: {str(p): n * k // slices for p, n in sizes.items()}})

            return (spark.read.format("kafka").option("kafka.bootstrap.servers", broker.bootstrap_servers)
                    .option("subscribe", topic).option("startingOffsets", offsets(index))
                    .option("endingOffsets", offsets(index + 1)).load())

        fresh_tables(spark, settings)
        print(f"steps on {args.rows:,} messages ({load()}):")
        batch = kafka_batch(0).persist()
        timed("read Kafka (cache the raw batch)", batch.count)
        parsed = MessageParser(Trade)(batch).persist()
        timed("parse: from_json + rules (cached)", parsed.count)
        shape = TradeRows()
        trades = shape.first_of_each_trade(shape.rows(parsed.where(F.col(REJECT_REASON).isNull())), 2)
        timed("dedupe by trade_id (to noop)", lambda: trades.write.format("noop").mode("overwrite").save())
        parsed.unpersist()
        batch.unpersist()

        writer = RawTradesWriter(settings, "profile")
        print(f"whole writer, {args.batches} consecutive batches then a replay ({load()}):")
        for index in range(args.batches):
            frame = kafka_batch(index).persist()
            frame.count()  # read from Kafka outside the timing: the writer's own work only
            timed(f"batch {index}", lambda frame=frame, index=index: writer(frame, index))
            frame.unpersist()
        frame = kafka_batch(args.batches - 1)
        restarted = RawTradesWriter(settings, "profile")  # a replay comes from a restarted process
        timed("replay of the last batch (already committed)", lambda: restarted(frame, args.batches - 1))
        print(f"rows per second of writer time is the figure to compare ({load()})")
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
