"""What Prometheus metrics cost a producer: CPU per message with the endpoint on (and scraped every
second, 15x more often than a usual scrape interval) vs off, in one run.

Two Finnhub producer processes run side by side for the same time, each against its own local
Finnhub simulator at the same rate, into its own topic of one real local broker; only one has
``metrics.finnhub_port`` set. CPU seconds come from /proc, messages from the topics' end offsets.

    .venv/bin/python -m bench.bench_metrics_cost [--seconds 40] [--rate 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import KafkaConsumer, TopicPartition

from bench.common import cpu_seconds, load, local_broker
from lakehouse.local.kafka_broker import ensure_topics
from lakehouse.local.processes import free_port
from lakehouse.settings import PROJECT_ROOT
from producers.simulators.finnhub_server import FinnhubSimulator

SYMBOLS = "AAPL,MSFT,AMZN,NVDA,TSLA"


def messages_in(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="trades/s each simulator sends")
    args = parser.parse_args()
    with local_broker() as broker:
        bootstrap = broker.bootstrap_servers
        runs = {}
        for name in ("off", "on"):
            topic = f"bench.metrics.{name}"
            ensure_topics(bootstrap, [topic], 4)
            server = FinnhubSimulator(trades_per_symbol=None, rate_per_second=args.rate, live=True).start_in_thread()
            port = free_port() if name == "on" else 0
            env = {**os.environ, "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                   "LAKEHOUSE__KAFKA__TRADES_TOPIC": topic, "LAKEHOUSE__FINNHUB__TOKEN": "bench",
                   "LAKEHOUSE__METRICS__FINNHUB_PORT": str(port)}
            process = subprocess.Popen(
                [sys.executable, "-m", "producers.finnhub", "--url", server.url, "--symbols", SYMBOLS],
                cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            runs[name] = (topic, server, process, port)
        time.sleep(10)  # both connected and publishing
        stop_scraping = threading.Event()
        scrapes = [0]

        def scrape_every_second() -> None:
            while not stop_scraping.wait(1.0):
                with urllib.request.urlopen(f"http://127.0.0.1:{runs['on'][3]}/metrics", timeout=5) as response:
                    response.read()
                scrapes[0] += 1

        scraper = threading.Thread(target=scrape_every_second, daemon=True)
        before = {name: (cpu_seconds(run[2].pid), messages_in(bootstrap, run[0])) for name, run in runs.items()}
        scraper.start()
        time.sleep(args.seconds)
        after = {name: (cpu_seconds(run[2].pid), messages_in(bootstrap, run[0])) for name, run in runs.items()}
        stop_scraping.set()
        scraper.join()
        for _, server, process, _ in runs.values():
            process.terminate()
            process.wait(60)
            server.stop_thread()
    per_message = {}
    for name in ("off", "on"):
        cpu, messages = after[name][0] - before[name][0], after[name][1] - before[name][1]
        per_message[name] = cpu / max(messages, 1)
        print(f"metrics {name:>3}: {messages:9,d} messages, {cpu:6.2f} CPU s, "
              f"{per_message[name] * 1e6:7.1f} CPU us/message")
    print(f"scrapes: {scrapes[0]} in {args.seconds:.0f} s")
    print(f"ratio: {per_message['on'] / per_message['off']:.3f} CPU per message, metrics on / off ({load()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
