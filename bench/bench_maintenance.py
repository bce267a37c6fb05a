"""Maintenance beside the live streams: do both stay up, and what does maintenance cost the streams?

One run: a fresh KRaft broker; a closed day (three days ago) of trades pre-loaded on the topic and
streamed in ``--max-offsets``-message batches, so its partitions hold many small files; then the
feed (``bench/feed/LiveTradeFeed.java``) sends ``--rate`` trades/s over ``--symbols`` symbols,
stamped with the wall clock, every twentieth 30 s late (the bars job MERGEs it into a bar it has
written). The raw-trades and bars queries run in this process as ``jobs.pipeline`` runs them.
While the feed runs, phases of ``--phase`` seconds alternate: maintenance off, then maintenance on
every ``--interval`` seconds (``lakehouse.maintenance.maintain_every``, what the maintenance job
runs) in a thread of the streams' own application, stopped at the end of its phase by its stop
request. (As its own ``spark-submit`` application it took more than two minutes to start on a
loaded 2-core machine, longer than a phase.)

Printed: trades sent / stored / distinct; maintenance runs, commit conflicts, retries and failed
steps (its counters); data files per closed-day partition before and after;
and the streams' batch durations with maintenance off and on, in the same run, with their ratio.

    .venv/bin/python -m bench.bench_maintenance [--rate 1500] [--symbols 20] [--phase 150] [--phases 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_freshness import LiveFeed
from bench.common import (
    describe_machine,
    lakehouse_settings,
    load,
    local_broker,
    percentile,
    publish_with_spark,
    trade_messages,
)
from lakehouse import raw_trades_stream
from lakehouse.bars_stream import start_bars_query
from lakehouse.catalog import spark_table_name
from lakehouse.local.kafka_broker import ensure_topics
from lakehouse.maintenance import (
    MaintenanceCounters,
    MaintenancePolicy,
    file_stats,
    first_open_day,
    maintain_every,
)
from lakehouse.shutdown import StopRequest
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.streaming import in_own_pool
from lakehouse.tables import BARS_1M, LATE_TRADES, QUARANTINE, TRADES


@dataclass
class Batches:
    """Each query's micro-batch durations (s), by whether maintenance was running then."""

    seconds: dict[tuple[str, bool], list[float]] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)

    def sample(self, queries, maintenance_on: bool) -> None:
        for query in queries:
            progress = query.lastProgress
            if not progress or self.seen.get(query.name) == progress["batchId"]:
                continue
            self.seen[query.name] = progress["batchId"]
            if progress.get("numInputRows", 0):
                duration = progress["durationMs"]["triggerExecution"] / 1000
                self.seconds.setdefault((query.name, maintenance_on), []).append(duration)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1500)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--phase", type=float, default=150.0, help="seconds of each phase (off, on, off, on...)")
    parser.add_argument("--phases", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of feed before the first phase")
    parser.add_argument("--interval", type=float, default=20.0, help="maintenance --interval")
    parser.add_argument("--closed-day-trades", type=int, default=200_000)
    parser.add_argument("--max-offsets", type=int, default=10_000, help="raw job's maxOffsetsPerTrigger")
    args = parser.parse_args(argv)
    print(describe_machine())
    feed_seconds = args.warmup + args.phase * args.phases
    with tempfile.TemporaryDirectory(prefix="bench-maintenance-") as state, local_broker() as broker:
        settings_env = {
            "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "LAKEHOUSE__LOCAL__STATE_DIR": state,
            "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state}/catalog.db",
            "LAKEHOUSE__CATALOG__WAREHOUSE": f"{state}/warehouse",
            "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": f"{state}/checkpoints",
            "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "1",
            "LAKEHOUSE__STREAMING__ALLOWED_LATENESS_SECONDS": "60",
            "LAKEHOUSE__STREAMING__MAX_OFFSETS_PER_TRIGGER": str(args.max_offsets),
        }
        settings = lakehouse_settings(state, broker.bootstrap_servers, settings_env)
        topic = settings.kafka.trades_topic
        ensure_topics(broker.bootstrap_servers, [topic], settings.kafka.partitions)
        spark = build_spark_session(settings, "bench-maintenance")
        ensure_tables(spark, settings)
        closed_day = datetime.now(UTC).replace(hour=14, minute=30, second=0, microsecond=0) - timedelta(days=3)
        publish_with_spark(spark, trade_messages(spark, args.closed_day_trades, args.symbols,
                                                 int(closed_day.timestamp() * 1000), 6 * 3600 * 1000, "closed"),
                           broker.bootstrap_servers, topic)
        queries = [in_own_pool(spark, "raw_trades", lambda: raw_trades_stream.start(spark, settings)),
                   in_own_pool(spark, "bars", lambda: start_bars_query(spark, settings))]
        trades_table = spark_table_name(settings, TRADES)
        while spark.table(trades_table).count() < args.closed_day_trades:
            time.sleep(2)
        open_from = first_open_day(datetime.now(UTC), MaintenancePolicy())

        def closed(table) -> str:
            stats = file_stats(spark, spark_table_name(settings, table), (f"{table.day_column}_day", open_from))
            return (f"{stats.data_files} files in {stats.partitions} partitions "
                    f"({stats.files_per_partition:.1f} per partition, max {stats.max_files_per_partition})")

        before = {t.name: closed(t) for t in (TRADES, BARS_1M)}
        print(f"closed day streamed: {args.closed_day_trades:,} trades; {load()}")

        feed = LiveFeed(broker.bootstrap_servers, topic, args.rate, args.symbols, feed_seconds,
                        late_every=20, late_ms=30_000)  # every 20th trade 30 s late
        batches = Batches()
        counters = MaintenanceCounters()
        policy = MaintenancePolicy(allowed_lateness=timedelta(seconds=60))
        tables = (TRADES, BARS_1M, LATE_TRADES, QUARANTINE)
        feed.go()
        started = time.monotonic()
        try:
            while time.monotonic() - started < args.warmup:
                batches.sample(queries, maintenance_on=False)  # warm-up: sampled, then dropped
                time.sleep(0.5)
            batches.seconds.clear()
            for phase in range(args.phases):
                on = phase % 2 == 1
                stop = StopRequest("bench maintenance")
                maintenance = threading.Thread(target=maintain_every, args=(
                    spark, settings.catalog.name, settings.catalog.namespace, tables, policy, counters,
                    args.interval, stop)) if on else None
                if maintenance is not None:
                    maintenance.start()
                phase_end = time.monotonic() + args.phase
                print(f"phase {phase + 1}: maintenance {'on' if on else 'off'}; {load()}", flush=True)
                while time.monotonic() < phase_end:
                    batches.sample(queries, maintenance_on=on)
                    for query in queries:
                        if not query.isActive:
                            raise RuntimeError(f"{query.name} stopped: {query.exception()}")
                    time.sleep(0.5)
                if maintenance is not None:
                    stop.request()
                    while maintenance.is_alive():  # the run in hand finishes: still "on"
                        batches.sample(queries, maintenance_on=True)
                        time.sleep(0.5)
                    print(f"  maintenance stopped: {counters.summary()}", flush=True)
            sent = feed.sent(timeout=120)
        finally:
            feed.stop()
        expected = args.closed_day_trades + sent
        deadline = time.monotonic() + 300
        while spark.table(trades_table).count() < expected and time.monotonic() < deadline:
            time.sleep(2)
        row = spark.sql(f"SELECT count(*) AS n, count(DISTINCT trade_id) AS d FROM {trades_table}").first()
        after = {t.name: closed(t) for t in (TRADES, BARS_1M)}
        for query in queries:
            query.stop()
        spark.stop()

    runs = counters.runs_completed
    conflicts, retries = sum(counters.commit_conflicts.values()), sum(counters.retries.values())
    failed = sum(counters.step_failures.values())
    print(describe_machine())
    print(f"trades: sent {expected:,} (closed day {args.closed_day_trades:,} + live {sent:,}), "
          f"stored {row.n:,}, distinct {row.d:,}")
    print(f"maintenance: every {args.interval:.0f} s, {args.phases // 2} phases of {args.phase:.0f} s; "
          f"{runs} runs completed, {conflicts} commit conflicts, {retries} retries, {failed} steps failed")
    for name in before:
        print(f"{name} closed-day partitions: before {before[name]}; after {after[name]}")
    ratios = []
    for name in ("raw_trades", "bars_1m"):
        off = batches.seconds.get((name, False), [])
        on = batches.seconds.get((name, True), [])
        if off and on:
            p50_off, p50_on = percentile(off, 50), percentile(on, 50)
            p90_off, p90_on = percentile(off, 90), percentile(on, 90)
            print(f"{name} batches: off {len(off)} p50 {p50_off:.2f} s p90 {p90_off:.2f} s; on {len(on)} "
                  f"p50 {p50_on:.2f} s p90 {p90_on:.2f} s; ratio on/off p50 {p50_on / p50_off:.2f}, "
                  f"p90 {p90_on / p90_off:.2f}")
            ratios.append(f"{name} batch p50 on/off {p50_on / p50_off:.2f}")
    print(f"ratio: {'; '.join(ratios) or 'no batches in one of the phases'}; stored = distinct = sent: "
          f"{'yes' if row.n == row.d == expected else 'NO'}; {runs} maintenance runs, {failed} failed steps")
    return 0 if row.n == row.d == expected and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
