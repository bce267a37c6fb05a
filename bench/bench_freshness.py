"""Freshness: a trade's event time -> readable in ``trades``; a window's end -> its final bar readable.

One run: a fresh KRaft broker, a feed (``bench/feed/LiveTradeFeed.java``, its own JVM) sending
``--rate`` trades/s over ``--symbols`` symbols stamped with the wall clock (as ``finnhub_server
--live`` does), and the raw-trades and bars queries in one Spark session as ``jobs.pipeline`` runs
them. The main thread reads the catalog's pointer to each table's metadata file every ``--poll``
seconds, reloads the table with pyiceberg when a commit moves it (as a reader that follows the
table would), and notes when each trades snapshot and each bar value first became visible.
Afterwards:

* trade delay = time the append that stored it was first seen - its event time (the background
  fold's later rewrite of its file does not count);
* bar delay = time the window's final bar (final trade count) was first seen - the window's end,
  for the windows that closed while the feed ran (0 for a bar already final before its end: a
  symbol that traded only early in the window).

The targets are judged on the steady state: trades (and bars) of the feed after its first
``--warmup`` seconds, which include the JVM's cold start and the first batches; the whole-run figure
is printed too. The default warm-up is five minutes because that is how long the JVM's JIT
compilers take to work through Spark's planner on two cores (a third to half a core until then);
the JIT's share of the CPU in both periods, and the classes Spark generated after the warm-up
(none, in a steady stream), are printed.

The feed and the broker keep normal priority and the pipeline runs at a lower one: in production
the exchange feed and the Kafka cluster do not share the pipeline's two cores. The CPU the feed
and the broker used is printed; the feed reports what it actually sent, so a machine too busy to
offer the asked rate shows.

``--history N`` starts the trades table with N snapshots of history, as a long day of commits
leaves it (21,600 at a 1 s trigger over 6 hours; at most 3,600 once ``maintenance`` has run): each
commit then rewrites, and each reader parses, the metadata file that holds them.

The comparison in the same run: the delay against its target (raw p50 <= 2 s, p99 <= 4 s; bar
within bars trigger + allowed lateness + 2 s).

    .venv/bin/python -m bench.bench_freshness [--rate 5000] [--seconds 420] [--warmup 300] [--history 3600]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    KAFKA_JARS,
    cpu_seconds,
    describe_machine,
    jit_compiler_seconds,
    lakehouse_settings,
    load,
    local_broker,
    percentile,
    require_fast_path,
    write_history_metadata,
)
from lakehouse.catalog import load_catalog, spark_table_name, table_identifier
from lakehouse.local.kafka_broker import ensure_topics
from lakehouse.settings import Settings
from lakehouse.spark import build_spark_session, ensure_tables, generated_classes_compiled
from lakehouse.tables import BARS_1M, LATE_TRADES, QUARANTINE, TRADES

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyspark.sql import SparkSession

PIPELINE_NICENESS = 5
HISTORY_SYMBOL = "HISTORY"  # the one trade a run with --history commits before the feed starts


FEED_SOURCE = Path(__file__).resolve().parent / "feed" / "LiveTradeFeed.java"


class LiveFeed:
    """The feed: ``bench/feed/LiveTradeFeed.java`` in its own JVM, ``rate`` trades/s over ``symbols``
    symbols stamped with the wall clock at send. A JVM publisher, because a Python one took two
    thirds of a core at 5,000 messages/s, a third of what the pipeline under test runs on.

    It reports what it sent: a machine too busy to offer the asked rate shows in the figures.
    """

    def __init__(self, bootstrap: str, topic: str, rate: int, symbols: int, seconds: float, zipf: float = 0.0,
                 late_every: int = 0, late_ms: int = 0) -> None:
        """``late_every``/``late_ms``: stamp every n-th trade that many milliseconds before the clock."""
        late = [str(late_every), str(late_ms)] if late_every else []
        self.process = subprocess.Popen(
            ["java", "-Xmx256m", "-cp", f"{KAFKA_JARS}/*", str(FEED_SOURCE),
             bootstrap, topic, str(rate), str(symbols), str(seconds), str(zipf), *late],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        if self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise RuntimeError(f"the feed did not start: {FEED_SOURCE} (java on PATH, jars in {KAFKA_JARS}?)")

    def go(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def sent(self, timeout: float = 60) -> int:
        """Wait for the feed to finish; the number of messages it sent."""
        out, _ = self.process.communicate(timeout=timeout)
        return int(out.split()[-1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class CommitWatch:
    """A reader's view of one table that reloads it only when a commit moves the catalog's pointer
    to its metadata file: one indexed row read per poll, instead of parsing the whole metadata file
    (0.13 s at 3,600 snapshots, which 4 loads a second made half a core). ``table`` is the view,
    loaded before ``moved`` reports the commit, so what it reports is readable."""

    def __init__(self, catalog: SqlCatalog, identifier: str) -> None:
        from sqlalchemy import text

        namespace, name = identifier.rsplit(".", 1)
        self.catalog, self.identifier = catalog, identifier
        self._pointer = text(
            "SELECT metadata_location FROM iceberg_tables "
            "WHERE catalog_name = :catalog AND table_namespace = :namespace AND table_name = :name"
        ).bindparams(catalog=catalog.name, namespace=namespace, name=name)
        # Autocommit: an open read transaction would hold SQLite's shared lock between polls.
        self._connection = catalog.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self.table = catalog.load_table(identifier)

    def moved(self) -> bool:
        """True when the table has a new commit (``table`` is then reloaded)."""
        if self._connection.execute(self._pointer).scalar_one() == self.table.metadata_location:
            return False
        self.table = self.catalog.load_table(self.identifier)
        return True

    def close(self) -> None:
        self._connection.close()


def seed_history(spark: SparkSession, settings: Settings, snapshots: int) -> None:
    """Give the new trades table the metadata a long day of commits leaves: one trade (a day old,
    of a symbol the feed does not send) committed, then the table registered again with
    ``snapshots`` of history before that commit (``bench.common.write_history_metadata``)."""
    name = spark_table_name(settings, TRADES)
    day_ago = "current_timestamp() - INTERVAL 1 DAY"
    values = {"trade_id": "'history'", "source": "'finnhub'", "symbol": f"'{HISTORY_SYMBOL}'", "price": "1.0",
              "volume": "1.0", "event_time": day_ago, "conditions": "array()", "venue": "NULL",
              "received_time": day_ago, "ingested_time": day_ago, "kafka_partition": "0", "kafka_offset": "0",
              "bar_eligible": "true"}
    spark.sql(f"INSERT INTO {name} VALUES ({', '.join(values[column] for column in TRADES.column_names)})")
    metadata_file = write_history_metadata(settings, TRADES, snapshots)
    spark.sql(f"DROP TABLE {name}")  # the catalog entry only: Iceberg purges files only when asked
    spark.sql(f"CALL {settings.catalog.name}.system.register_table("
              f"table => '{settings.catalog.namespace}.{TRADES.name}', metadata_file => '{metadata_file}')")
    print(f"trades table: {snapshots:,} snapshots of history before the run "
          f"(metadata file {Path(metadata_file).stat().st_size / 2**20:.1f} MiB)")


def batch_phases(progress: list[dict]) -> str:
    """Median seconds of each phase Spark reports for a micro-batch (``addBatch`` is the sink's own
    work; the rest is the streaming engine's: offsets, planning, the checkpoint's write-ahead log)."""
    names = sorted({name for p in progress for name in p["durationMs"] if name != "triggerExecution"})
    return ", ".join(
        f"{name} {percentile([p['durationMs'].get(name, 0) / 1000 for p in progress], 50):.2f} s" for name in names
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=5_000, help="trades/s offered")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--zipf", type=float, default=0.0,
                        help="exponent of Zipf-distributed activity across symbols (0: symbols take turns)")
    parser.add_argument("--seconds", type=float, default=420, help="how long the feed runs")
    parser.add_argument("--raw-trigger", type=float, default=1.0)
    parser.add_argument("--bars-trigger", type=float, default=2.0)
    parser.add_argument("--lateness", type=float, default=10.0, help="allowed lateness of the bars job (s)")
    parser.add_argument("--fold-interval", type=float, default=None,
                        help="seconds between the raw job's background folds (default: the setting's)")
    parser.add_argument("--raw-only", action="store_true",
                        help="run the raw-trades query alone (as on a driver of its own): trade figures only")
    parser.add_argument("--poll", type=float, default=0.05,
                        help="seconds between reads of the catalog's metadata pointers (a table is "
                        "reloaded with pyiceberg only when its pointer moves)")
    parser.add_argument("--warmup", type=float, default=300.0,
                        help="seconds at the start of the feed left out of the steady-state figures")
    parser.add_argument("--history", type=int, default=0,
                        help="snapshots of history the trades table starts with (21,600: 6 h of 1 s commits; "
                        "3,600: what maintenance keeps at most)")
    args = parser.parse_args(argv)
    from pyspark.sql import functions as F

    from lakehouse import raw_trades_stream
    from lakehouse.bars_stream import start_bars_query
    from lakehouse.messages import Trade
    from lakehouse.parsing import MessageParser
    from lakehouse.streaming import in_own_pool

    with (
        tempfile.TemporaryDirectory(prefix="bench-fresh-", ignore_cleanup_errors=True) as state,
        local_broker() as broker,
        contextlib.ExitStack() as stack,
    ):
        settings = lakehouse_settings(state, broker.bootstrap_servers, {
            "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": str(args.raw_trigger),
            "LAKEHOUSE__STREAMING__ALLOWED_LATENESS_SECONDS": str(args.lateness),
        })
        if args.fold_interval is not None:
            settings = settings.with_streaming(fold_interval_seconds=args.fold_interval)
        topic = settings.kafka.trades_topic
        ensure_topics(broker.bootstrap_servers, [topic], settings.kafka.partitions)
        feed = LiveFeed(broker.bootstrap_servers, topic, args.rate, args.symbols, args.seconds, args.zipf)
        stack.callback(feed.stop)
        broker_pid = int(broker.pid_file.read_text())
        # The feed and the broker stand for the exchange and the Kafka cluster, which do not share the
        # pipeline's cores in production: they keep their priority, the Spark driver (started from
        # here, so it inherits this) and the reader get a lower one.
        os.nice(PIPELINE_NICENESS)
        spark = build_spark_session(settings, "bench-freshness")
        ensure_tables(spark, settings, (TRADES, QUARANTINE, BARS_1M, LATE_TRADES))
        print(describe_machine())
        if args.history:
            seed_history(spark, settings, args.history)
        bars_settings = settings.with_streaming(trigger_seconds=args.bars_trigger)
        parse = MessageParser(Trade)
        queries = [in_own_pool(spark, "raw_trades", lambda: raw_trades_stream.start(spark, settings, parse))]
        if not args.raw_only:
            queries.append(in_own_pool(spark, "bars", lambda: start_bars_query(spark, bars_settings)))
        catalog = load_catalog(settings)
        trades_watch = CommitWatch(catalog, table_identifier(settings, TRADES))
        bars_watch = CommitWatch(catalog, table_identifier(settings, BARS_1M))
        stack.callback(trades_watch.close)
        stack.callback(bars_watch.close)
        cpu_before = cpu_seconds(feed.process.pid), cpu_seconds(broker_pid)
        jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())

        def jvm_sample() -> tuple[float, int]:  # (JIT compilers' CPU seconds, classes Spark generated)
            return jit_compiler_seconds(jvm_pid), generated_classes_compiled(spark)

        at_start = jvm_sample()
        at_steady: tuple[float, int] | None = None
        feed.go()
        feed_start = time.time()
        steady_from = feed_start + args.warmup
        snapshot_seen: dict[int, float] = {}
        bar_seen: dict[tuple[str, int], dict[int, float]] = {}
        loads: list[float] = []
        last_load_sample = 0.0
        settle = args.lateness + args.bars_trigger + args.raw_trigger + 10
        while time.time() < feed_start + args.seconds + settle:
            now = time.time()
            if at_steady is None and now >= steady_from:
                at_steady = jvm_sample()
            if trades_watch.moved():
                seen_at = time.time()
                # Every snapshot not seen yet is readable now (two commits can fall between polls).
                for snapshot in trades_watch.table.metadata.snapshots:
                    snapshot_seen.setdefault(snapshot.snapshot_id, seen_at)
            if now - last_load_sample >= 1.0:
                last_load_sample = now
                loads.append(os.getloadavg()[0])
            if not args.raw_only and bars_watch.moved():
                bars_now = bars_watch.table.scan(
                    selected_fields=("symbol", "window_start", "trade_count")).to_arrow().to_pylist()
                seen_at = time.time()
                for bar in bars_now:
                    key = (bar["symbol"], int(bar["window_start"].timestamp()))
                    bar_seen.setdefault(key, {}).setdefault(bar["trade_count"], seen_at)
            for query in queries:
                if not query.isActive:
                    raise RuntimeError(f"{query.name} failed: {query.exception()}")
            time.sleep(max(0.0, args.poll - (time.time() - now)))
        at_steady, at_end = at_steady or at_start, jvm_sample()
        jit_warmup = (at_steady[0] - at_start[0]) / args.warmup
        jit_steady = (at_end[0] - at_steady[0]) / max(time.time() - steady_from, 1e-9)
        classes_steady = at_end[1] - at_steady[1]
        feed_cpu = (cpu_seconds(feed.process.pid) - cpu_before[0]) / (time.time() - feed_start)
        broker_cpu = (cpu_seconds(broker_pid) - cpu_before[1]) / (time.time() - feed_start)
        sent_total = feed.sent()
        require_fast_path(parse)
        durations = {q.name: sorted(p["durationMs"]["triggerExecution"] / 1000 for p in q.recentProgress
                                    if p["numInputRows"]) for q in queries}
        phases = {q.name: batch_phases([p for p in q.recentProgress if p["numInputRows"]]) for q in queries}
        for query in queries:  # stop between micro-batches, not in the middle of one
            idle_by = time.time() + 60
            while query.status["isTriggerActive"] and time.time() < idle_by:
                time.sleep(0.2)
            query.stop()

        name = spark_table_name(settings, TRADES)
        # A trade was first readable in the append that stored it; the background fold later moves it
        # into another file under the fold's snapshot. Each raw batch stamps one ingested_time, so the
        # append snapshots' files (every snapshot's manifest entries, not only the live files) map a
        # trade's ingested_time to the snapshot that made it readable.
        appends = spark.sql(
            f"SELECT e.snapshot_id, e.readable_metrics.ingested_time.lower_bound AS ingested "
            f"FROM {name}.all_entries e JOIN {name}.snapshots s ON e.snapshot_id = s.snapshot_id "
            f"WHERE e.status = 1 AND s.operation = 'append'"
        )
        seen = spark.createDataFrame([(k, v) for k, v in snapshot_seen.items()], "snapshot_id long, seen double")
        first_seen = appends.join(seen, "snapshot_id", "left").groupBy("ingested").agg(F.min("seen").alias("seen"))
        delays = (spark.table(name).where(F.col("symbol") != HISTORY_SYMBOL).select("ingested_time", "event_time")
                  .join(first_seen, F.col("ingested_time") == F.col("ingested"), "left")
                  .select((F.col("seen") - F.unix_micros("event_time") / 1e6).alias("delay"),
                          (F.unix_micros("event_time") / 1e6 >= steady_from).alias("steady")))
        steady_delay = F.when(F.col("steady"), F.col("delay"))
        stats = delays.agg(F.count("*").alias("n"), F.count("delay").alias("timed"),
                           F.count(steady_delay).alias("steady_timed"),
                           F.percentile_approx("delay", [0.5, 0.99], 10_000).alias("p"),
                           F.percentile_approx(steady_delay, [0.5, 0.99], 10_000).alias("steady_p")).first()
        nan = (float("nan"), float("nan"))
        all_p50, all_p99 = stats["p"] if stats["timed"] else nan
        raw_p50, raw_p99 = stats["steady_p"] if stats["steady_timed"] else nan

        final_counts = {(r["symbol"], int(r["ws"])): r["n"] for r in spark.sql(
            "SELECT symbol, unix_seconds(window_start) AS ws, trade_count AS n "
            f"FROM {spark_table_name(settings, BARS_1M)}"
        ).collect()}
        bar_delays, warmup_bar_delays = [], []
        for key, count in final_counts.items():
            end = key[1] + 60
            if key[1] >= feed_start and end <= feed_start + args.seconds:
                first_final = bar_seen.get(key, {}).get(count)
                if first_final is not None:
                    # A bar whose last trade came early is final before its window ends: 0, not less.
                    delay = max(0.0, first_final - end)
                    (bar_delays if key[1] >= steady_from else warmup_bar_delays).append(delay)
        bar_target = args.bars_trigger + args.lateness + 2
        bar_ok = bool(bar_delays) and percentile(bar_delays, 99) <= bar_target
        print(f"feed: {args.rate:,} trades/s over {args.symbols} symbols for {args.seconds:.0f} s, "
              "live event times; "
              f"raw trigger {args.raw_trigger:g} s, bars trigger {args.bars_trigger:g} s, "
              f"allowed lateness {args.lateness:g} s; median load during run {sorted(loads)[len(loads) // 2]:.1f}; "
              f"CPU of the feed {feed_cpu:.2f} cores, of the broker {broker_cpu:.2f} cores")
        offered = sent_total / args.seconds
        print(f"trades offered: {sent_total:,} ({offered:,.0f}/s of {args.rate:,}/s asked); "
              f"stored: {stats['n']:,} in {len(snapshot_seen)} snapshots seen")
        for query_name, took in durations.items():
            print(f"{query_name} micro-batch time: median {percentile(took, 50):.2f} s, "
                  f"max {max(took, default=float('nan')):.2f} s over {len(took)} batches; "
                  f"median per phase: {phases[query_name]}")
        print(f"JIT compiler threads of the Spark JVM: {jit_warmup:.2f} cores during the warm-up, "
              f"{jit_steady:.2f} cores after it; classes generated by Spark after the warm-up: {classes_steady}")
        print(f"whole run, first {args.warmup:g} s (cold JVM, first batches) included: trade p50 {all_p50:.2f} s, "
              f"p99 {all_p99:.2f} s; bars of windows starting in those seconds: "
              f"{', '.join(f'{d:.1f}' for d in sorted(warmup_bar_delays)[:3]) or 'none'} s")
        print(f"steady state (event time after the first {args.warmup:g} s):")
        print(f"trade readable after event time: p50 {raw_p50:.2f} s, p99 {raw_p99:.2f} s "
              f"(target p50 <= 2 s, p99 <= 4 s: {'met' if raw_p50 <= 2 and raw_p99 <= 4 else 'NOT met'})")
        if args.raw_only:
            print(f"ratio: raw p99 / target = {raw_p99 / 4:.2f}, raw-trades query alone ({load()})")
        else:
            print(f"final bar readable after window end: p50 {percentile(bar_delays, 50):.2f} s, "
                  f"p99 {percentile(bar_delays, 99):.2f} s over {len(bar_delays)} windows "
                  f"(target <= {bar_target:g} s: {'met' if bar_ok else 'NOT met'})")
            print(f"ratio: raw p99 / target = {raw_p99 / 4:.2f}; bar p99 / target = "
                  f"{percentile(bar_delays, 99) / bar_target:.2f} ({load()})")
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
