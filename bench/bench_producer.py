"""Producer throughput into a real local Kafka broker: the shared KafkaSink vs flush-per-message.

Both publish the same Trade messages (JSON, key = symbol, acks=all) to a fresh single-node KRaft
broker started for the run. The naive producer waits for each record's acknowledgement before
sending the next, which is what "flush per message" costs; it runs on a prefix of the messages,
since at its pace the full set would take minutes.

    .venv/bin/python bench/bench_producer.py [--messages 200000] [--naive-messages 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from kafka import KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import load
from lakehouse.local.kafka_broker import LocalKafkaBroker, ensure_topics
from lakehouse.local.processes import free_port
from lakehouse.messages import Source, Trade, trade_id
from lakehouse.settings import PROJECT_ROOT
from producers.kafka_sink import KafkaSink, SinkConfig
from producers.simulators.trade_stream import generated_trades

SYMBOLS = ["AAPL", "MSFT", "AMZN", "NVDA", "TSLA", "GOOG", "META", "NFLX"]


def make_trades(count: int) -> list[Trade]:
    streams = [generated_trades(s) for s in SYMBOLS]
    trades = []
    for i in range(count):
        item = next(streams[i % len(SYMBOLS)])
        trades.append(
            Trade(
                source=Source.FINNHUB,
                symbol=item["s"],
                price=item["p"],
                volume=item["v"],
                event_time_ms=item["t"],
                conditions=item["c"],
                received_time_ms=item["t"] + 5,
                trade_id=trade_id(Source.FINNHUB, item["s"], item["t"], item["p"], item["v"], item["c"], i),
            )
        )
    return trades


def bench_sink(bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]]) -> float:
    sink = KafkaSink(SinkConfig(bootstrap, client_id="bench-sink"))
    started = time.perf_counter()
    for key, value in payloads:
        sink.publish_raw(topic, key, value)
    assert sink.close(), sink.stats
    elapsed = time.perf_counter() - started
    assert sink.stats.acked == len(payloads)
    return len(payloads) / elapsed


def bench_naive(bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]]) -> float:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", client_id="bench-naive")
    started = time.perf_counter()
    for key, value in payloads:
        producer.send(topic, key=key, value=value)
        producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return len(payloads) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--naive-messages", type=int, default=5_000)
    args = parser.parse_args()
    trades = make_trades(args.messages)
    payloads = [(t.key(), t.to_json_bytes()) for t in trades]
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as state:
        broker = LocalKafkaBroker(PROJECT_ROOT / "jars" / "kafka", Path(state), free_port(), free_port())
        broker.start(timeout_seconds=90)
        try:
            ensure_topics(broker.bootstrap_servers, ["bench.sink", "bench.naive"], 4)
            bench_naive(broker.bootstrap_servers, "bench.naive", payloads[:200])  # warm-up
            naive = bench_naive(broker.bootstrap_servers, "bench.naive", payloads[: args.naive_messages])
            sink = bench_sink(broker.bootstrap_servers, "bench.sink", payloads)
        finally:
            broker.stop()
    size = sum(len(v) for _, v in payloads) / len(payloads)
    print(
        f"messages: {args.messages} via KafkaSink, {args.naive_messages} via flush-per-message; "
        f"{size:.0f} bytes/message, acks=all, 4 partitions, local KRaft broker"
    )
    print(f"KafkaSink (batched, gzip, idempotent): {sink:10,.0f} msg/s")
    print(f"naive flush-per-message:              {naive:10,.0f} msg/s")
    print(f"ratio: {sink / naive:.1f}x (target >= 20x: {'met' if sink >= 20 * naive else 'not met'}) ({load()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
