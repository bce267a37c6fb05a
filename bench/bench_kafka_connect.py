"""Head to head: our raw-trades job vs Apache Iceberg's Kafka Connect sink, same trades, same run.

One KRaft broker, one catalog (the project's SQLite JDBC catalog), one Spark session for our job
(``lakehouse.raw_trades_stream.start``, unchanged, ``local[2]``) and one distributed Kafka Connect worker for
theirs (``bench/iceberg_sink.py``: ``iceberg-kafka-connect`` 1.10.1, ``tasks.max`` 2 for the 2 cores,
its exactly-once control topic). Each side writes a table of the trades schema and partition spec of
its own; the two never run at once. Figures, each printed as a ratio ours/theirs:

1. freshness: the live feed (``bench/feed/LiveTradeFeed.java``, ``--rate`` trades/s stamped with the
   wall clock) for ``--seconds``; a reader polls the catalog's pointer (``CommitWatch``) and a
   trade's delay is the time its snapshot was first seen minus its event time (p50/p99 over the
   trades after ``--warmup`` s). Ours at its ``--trigger``; the sink at each of ``--intervals``
   (ms, ascending) until one sustains the feed (everything sent readable within two intervals + 10 s
   of the feed's end), and at its default 300 s with a ``--default-seconds`` feed;
2. throughput (ours first: it warms the Spark JVM): a backlog of ``--backlog`` trades
   (``bench.common.trade_messages``) drained into an empty table, from start (query started /
   connector created) to all readable in the catalog; the sink at the interval it sustained in 1,
   ours with ``maxOffsetsPerTrigger`` ``--max-offsets``;
3. files and snapshots per hour, extrapolated from the freshness runs' steady state;
4. duplicates after a kill -9 mid-stream: a backlog of ``--kill-backlog`` trades, the writer killed
   once it has committed some and restarted (ours: ``spark-submit.sh raw_trades`` in a process of
   its own; theirs: the worker JVM, a new worker of the same Connect group resuming the connector);
   stored vs distinct ``trade_id`` vs acknowledged (written to Kafka).

The defaults are sized for the shared 2-core machine (about 20 minutes, 5 of them the wait for the
sink's first commit at its default interval); every size is an option.

    .venv/bin/python -m bench.bench_kafka_connect [--backlog 300000] [--rate 2000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_freshness import CommitWatch, LiveFeed
from bench.common import describe_machine, lakehouse_settings, load, local_broker, publish_with_spark, trade_messages
from bench.iceberg_sink import DEFAULT_COMMIT_INTERVAL_MS, ConnectWorker, sink_config
from lakehouse.catalog import load_catalog, spark_table_name, table_identifier
from lakehouse.local.kafka_broker import ensure_topics
from lakehouse.settings import Settings
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.tables import QUARANTINE, TRADES

START_MS = 1_772_000_000_000
SINK_TASKS = 2  # one per core, as local[2] runs two tasks


@dataclass
class Freshness:
    """One live run of one writer."""

    label: str
    sent: int
    stored: int
    distinct: int
    p50: float
    p99: float
    snapshots_per_hour: float
    files_per_hour: float
    sustained: bool


class Bench:
    """What the phases share: the broker, the settings, the Spark session, the Connect worker. Every
    run writes a ``trades`` table (and our job its ``quarantine``) in a namespace of its own."""

    def __init__(self, state: str, broker, args: argparse.Namespace) -> None:
        self.state, self.broker, self.args = Path(state), broker, args
        self.settings = lakehouse_settings(state, broker.bootstrap_servers, {
            "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": str(args.trigger)})
        self.spark = build_spark_session(self.settings, "bench-kafka-connect")
        self.catalog = load_catalog(self.settings)
        self.worker: ConnectWorker | None = None
        self.runs = 0

    def run_settings(self, side: str, topic: str) -> Settings:
        """Settings of a new run: its topic, a namespace and a checkpoint of its own, an empty table."""
        self.runs += 1
        settings = self.settings.model_copy(update={
            "kafka": self.settings.kafka.model_copy(update={"trades_topic": topic}),
            "catalog": self.settings.catalog.model_copy(update={"namespace": f"{side}_{self.runs}"}),
        }).with_streaming(checkpoint_dir=f"{self.state}/checkpoints/run-{self.runs}")
        ensure_tables(self.spark, settings, (TRADES, QUARANTINE) if side == "ours" else (TRADES,))
        return settings

    def topic(self, name: str, partitions: int | None = None) -> str:
        ensure_topics(self.broker.bootstrap_servers, [name], partitions or self.settings.kafka.partitions)
        return name

    def stored(self, settings: Settings) -> int:
        """Trades readable now, from the current snapshot's summary (one metadata read)."""
        current = self.catalog.load_table(table_identifier(settings, TRADES)).current_snapshot()
        return int(current.summary["total-records"]) if current else 0

    def counts(self, settings: Settings) -> tuple[int, int]:
        """(rows stored, distinct trade ids), counted by Spark over every row."""
        row = self.spark.sql(f"SELECT count(*) AS n, count(DISTINCT trade_id) AS d "
                             f"FROM {spark_table_name(settings, TRADES)}").first()
        return row["n"], row["d"]

    def ours(self, settings: Settings, **streaming):
        """Our raw-trades job, in this Spark session."""
        from lakehouse import raw_trades_stream

        return raw_trades_stream.start(self.spark, settings.with_streaming(**streaming))

    def connect(self) -> ConnectWorker:
        """The Connect worker, started on first use (and again after a kill)."""
        if self.worker is None or self.worker.process is None or self.worker.process.poll() is not None:
            self.worker = ConnectWorker(self.broker.bootstrap_servers, self.state / "connect")
            self.worker.start()
        return self.worker

    def theirs(self, settings: Settings, interval_ms: int) -> str:
        """The sink from the run's topic into its table, with a control topic of its own; its name."""
        name = f"iceberg-sink-{self.runs}"
        control = self.topic(f"control-{name}", 1)
        self.connect().put_connector(name, sink_config(
            settings, settings.kafka.trades_topic, table_identifier(settings, TRADES), control, interval_ms,
            SINK_TASKS))
        return name

    def delete(self, name: str) -> None:
        """Remove a connector (its tasks stop; the worker stays for the next run)."""
        if self.worker is not None:
            with contextlib.suppress(OSError):
                self.worker._request("DELETE", f"/connectors/{name}")
            time.sleep(2)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.spark.stop()


def wait_stored(bench: Bench, settings: Settings, expected: int, timeout: float, alive) -> float:
    """Poll until ``expected`` trades are readable; the monotonic time they were. ``alive()`` raises
    when the writer died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bench.stored(settings) >= expected:
            return time.monotonic()
        alive()
        time.sleep(0.1)
    raise RuntimeError(f"{expected:,} trades not readable within {timeout:.0f} s ({bench.stored(settings):,} are)")


def throughput_ours(bench: Bench, topic: str, count: int) -> float:
    """Our trades/s: the backlog in ``topic`` drained, from the query's start to all readable."""
    settings = bench.run_settings("ours", topic)
    started = time.monotonic()
    query = bench.ours(settings, trigger_seconds=0.0, max_offsets_per_trigger=bench.args.max_offsets)
    try:
        done = wait_stored(bench, settings, count, 1800, lambda: query.isActive or query.awaitTermination(1))
    finally:
        query.stop()
    rate = count / (done - started)
    print(f"throughput, ours: {count:,} trades drained in {done - started:.1f} s = {rate:,.0f} trades/s "
          f"(maxOffsetsPerTrigger {bench.args.max_offsets:,}; {load()})")
    assert bench.counts(settings) == (count, count)
    return rate


def throughput_sink(bench: Bench, topic: str, count: int, interval_ms: int) -> float:
    """The sink's trades/s at commit interval ``interval_ms``: the backlog in ``topic`` drained, from
    the connector's creation to all readable."""
    bench.connect()
    settings = bench.run_settings("theirs", topic)
    started = time.monotonic()
    name = bench.theirs(settings, interval_ms)
    try:
        done = wait_stored(bench, settings, count, 1800, lambda: bench.worker.check(name))
    finally:
        bench.delete(name)
    rate = count / (done - started)
    print(f"throughput, sink: {count:,} trades drained in {done - started:.1f} s = {rate:,.0f} trades/s "
          f"(commit interval {interval_ms} ms, {SINK_TASKS} tasks; {load()})")
    assert bench.counts(settings) == (count, count)
    return rate


def freshness(bench: Bench, side: str, seconds: float, warmup: float, interval_ms: int = 0) -> Freshness:
    """One live run of one writer (``side`` ours or theirs) on a fresh topic and table."""
    from pyspark.sql import functions as F

    topic = bench.topic(f"live-{bench.runs + 1}")
    settings = bench.run_settings(side, topic)
    if side == "theirs":
        bench.connect()
    feed = LiveFeed(bench.broker.bootstrap_servers, topic, bench.args.rate, bench.args.symbols, seconds,
                    bench.args.zipf)
    watch = CommitWatch(bench.catalog, table_identifier(settings, TRADES))
    seen: dict[int, float] = {}
    if side == "ours":
        query = bench.ours(settings)
        alive = lambda: query.isActive or query.awaitTermination(1)  # noqa: E731
        ready_by = time.monotonic() + 300
        while query.lastProgress is None:  # planned and polling, as the sink's tasks are once RUNNING
            alive()
            if time.monotonic() > ready_by:
                raise RuntimeError("our job made no progress report within 300 s")
            time.sleep(0.2)
    else:
        name = bench.theirs(settings, interval_ms)
        alive = lambda: bench.worker.check(name)  # noqa: E731
    def note_commits() -> None:
        """When each new snapshot was first seen; then check the writer is alive and wait a tick."""
        if watch.moved():
            now = time.time()
            for snapshot in watch.table.metadata.snapshots:
                seen.setdefault(snapshot.snapshot_id, now)
        alive()
        time.sleep(0.05)

    try:
        feed.go()
        feed_start = time.time()
        settle = 2 * interval_ms / 1000 + 10 if side == "theirs" else 2 * bench.args.trigger + 10
        while time.time() < feed_start + seconds + 1:
            note_commits()
        sent = feed.sent()
        sustained = True
        deadline = time.time() + settle
        while bench.stored(settings) < sent:
            if time.time() > deadline:
                sustained = False
                break
            note_commits()
    finally:
        feed.stop()
        watch.close()
        if side == "ours":
            batches = [p["durationMs"]["triggerExecution"] / 1000 for p in query.recentProgress if p["numInputRows"]]
            print(f"freshness, ours, micro-batches: {len(batches)} with data, median "
                  f"{sorted(batches)[len(batches) // 2] if batches else float('nan'):.2f} s, "
                  f"max {max(batches, default=float('nan')):.2f} s")
            query.stop()
        else:
            bench.delete(name)

    name_ = spark_table_name(settings, TRADES)
    steady_from = feed_start + warmup
    files = bench.spark.sql(f"SELECT data_file.file_path AS file, snapshot_id FROM {name_}.entries WHERE status < 2")
    seen_frame = bench.spark.createDataFrame(list(seen.items()), "snapshot_id long, seen double")
    delays = (bench.spark.table(name_).select("_file", "event_time", "trade_id")
              .join(files, F.col("_file") == F.col("file")).join(seen_frame, "snapshot_id", "left")
              .where(F.unix_micros("event_time") / 1e6 >= steady_from)
              .select((F.col("seen") - F.unix_micros("event_time") / 1e6).alias("delay")))
    p50, p99 = delays.agg(F.percentile_approx("delay", [0.5, 0.99], 10_000)).first()[0] or (float("nan"),) * 2
    stored, distinct = bench.counts(settings)
    # Commits and files over the steady part of the feed, per hour (an extrapolation of that window).
    snapshots = bench.spark.sql(f"SELECT snapshot_id, committed_at FROM {name_}.snapshots").collect()
    window = [s.snapshot_id for s in snapshots
              if steady_from <= s.committed_at.timestamp() <= feed_start + seconds]
    added_files = (bench.spark.table(f"{name_}.entries").where("status < 2")
                   .where(F.col("snapshot_id").isin(window)).count()) if window else 0
    hours = (seconds - warmup) / 3600
    label = "ours" if side == "ours" else f"sink at {interval_ms / 1000:g} s"
    result = Freshness(label, sent, stored, distinct, p50, p99, len(window) / hours, added_files / hours, sustained)
    verdict = "sustained" if sustained else "fell behind"
    print(f"freshness, {label}: p50 {p50:.2f} s, p99 {p99:.2f} s after event time (trades after the first "
          f"{warmup:g} s of a {seconds:g} s feed at {bench.args.rate:,}/s); {verdict}"
          f"; {len(window)} commits, {added_files} files in the steady window; sent {sent:,}, stored {stored:,} "
          f"({distinct:,} distinct; {load()})")
    return result


def kill_nine(bench: Bench, side: str, count: int) -> tuple[int, int, int]:
    """(stored, distinct, acknowledged) after a kill -9 of the writer mid-stream and a restart."""
    from lakehouse.local.processes import kill_process_tree, submit_job, terminate_group

    topic = bench.topic(f"kill-{side}")
    publish_with_spark(bench.spark, trade_messages(bench.spark, count, bench.args.symbols, START_MS, 3_600_000,
                                                   id_prefix=f"kill-{side}"), bench.broker.bootstrap_servers, topic)
    settings = bench.run_settings(side, topic)
    log_file = bench.state / f"kill-{side}.log"
    if side == "ours":
        env = {**os.environ,
               "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": bench.broker.bootstrap_servers,
               "LAKEHOUSE__KAFKA__TRADES_TOPIC": topic,
               "LAKEHOUSE__LOCAL__STATE_DIR": str(bench.state),
               "LAKEHOUSE__CATALOG__URI": settings.catalog.uri,
               "LAKEHOUSE__CATALOG__WAREHOUSE": settings.catalog.warehouse,
               "LAKEHOUSE__CATALOG__NAMESPACE": settings.catalog.namespace,
               "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": settings.streaming.checkpoint_dir,
               "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "0",
               "LAKEHOUSE__STREAMING__MAX_OFFSETS_PER_TRIGGER": str(max(count // 8, 1))}
        job = submit_job("raw_trades", env, log_file)
        alive = lambda: job.poll() is None or (_ for _ in ()).throw(  # noqa: E731
            RuntimeError(f"raw_trades died: {log_file.read_text()[-3000:]}"))
        try:
            wait_stored(bench, settings, 1, 300, alive)
            kill_process_tree(job)
            at_kill = bench.stored(settings)
            job = submit_job("raw_trades", env, log_file)
            wait_stored(bench, settings, count, 600, alive)
        finally:
            terminate_group(job)
    else:
        name = bench.theirs(settings, bench.args.kill_interval)
        wait_stored(bench, settings, 1, 300, lambda: bench.worker.check(name))
        bench.worker.kill()
        at_kill = bench.stored(settings)
        bench.connect()  # a new worker of the same group: it reads the connector from Kafka and resumes it
        try:
            bench.worker.wait_running(name, SINK_TASKS, 180)
            wait_stored(bench, settings, count, 600, lambda: bench.worker.check(name))
            time.sleep(2 * bench.args.kill_interval / 1000 + 5)  # a late duplicate commit would land by now
        finally:
            bench.delete(name)
    stored, distinct = bench.counts(settings)
    assert at_kill < count, f"{side}: the kill came after the last commit ({at_kill:,} of {count:,} stored)"
    print(f"kill -9, {'ours' if side == 'ours' else 'sink'}: killed at {at_kill:,} of {count:,} stored; after the "
          f"restart stored {stored:,}, distinct {distinct:,}, acknowledged {count:,} -> "
          f"{stored - distinct:,} duplicates, {count - distinct:,} lost ({load()})")
    return stored, distinct, count


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs else "inf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=300_000, help="trades drained for throughput")
    parser.add_argument("--max-offsets", type=int, default=100_000, help="our job's maxOffsetsPerTrigger then")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--zipf", type=float, default=0.0)
    parser.add_argument("--rate", type=int, default=2_000, help="trades/s of the live feed")
    parser.add_argument("--seconds", type=float, default=60, help="live feed of each freshness run")
    parser.add_argument("--warmup", type=float, default=20, help="seconds of each live run left out")
    parser.add_argument("--trigger", type=float, default=1.0, help="our job's trigger (s) in the live runs")
    parser.add_argument("--intervals", default="1000,5000",
                        help="sink commit intervals (ms) tried, ascending, until one sustains the feed")
    parser.add_argument("--default-seconds", type=float, default=20,
                        help="live feed of the run at the sink's default 300 s interval (0: skip it)")
    parser.add_argument("--kill-backlog", type=int, default=60_000)
    parser.add_argument("--kill-interval", type=int, default=2_000, help="sink commit interval (ms) there")
    parser.add_argument("--kill-only", default="", help="ours,theirs: only the kill -9 runs of these sides")
    args = parser.parse_args(argv)
    # A SIGTERM (a timeout, Ctrl-C of a wrapper) unwinds through the finally blocks: the worker JVM,
    # the Spark session and the broker are stopped, not left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.intervals = [int(i) for i in args.intervals.split(",") if i]

    with (
        tempfile.TemporaryDirectory(prefix="bench-connect-", ignore_cleanup_errors=True) as state,
        local_broker() as broker,
    ):
        bench = Bench(state, broker, args)
        try:
            print(describe_machine())
            if args.kill_only:
                for side in args.kill_only.split(","):
                    kill_nine(bench, side, args.kill_backlog)
                return 0
            backlog = bench.topic("backlog")
            publish_with_spark(bench.spark, trade_messages(bench.spark, args.backlog, args.symbols, START_MS,
                                                           3_600_000), broker.bootstrap_servers, backlog)
            print(f"data: {args.backlog:,} trades over {args.symbols} symbols, {bench.settings.kafka.partitions} "
                  f"Kafka partitions; live feed {args.rate:,}/s over {args.symbols} symbols (zipf {args.zipf:g})")
            # Our backlog run first: it is also the Spark JVM's warm-up (a cold JVM's first batch took
            # over a minute at load 40), as the sink's first live run warms the worker's JVM.
            ours_rate = throughput_ours(bench, backlog, args.backlog)
            ours = freshness(bench, "ours", args.seconds, args.warmup)
            sink, sink_interval = None, args.intervals[-1]
            for sink_interval in args.intervals:
                sink = freshness(bench, "theirs", args.seconds, args.warmup, sink_interval)
                if sink.sustained:
                    break
            # The sink's backlog at the interval it sustained a live feed at: each side as it runs live.
            sink_rate = throughput_sink(bench, backlog, args.backlog, sink_interval)
            default = None
            if args.default_seconds:
                default = freshness(bench, "theirs", args.default_seconds, 0, DEFAULT_COMMIT_INTERVAL_MS)

            ours_kill = kill_nine(bench, "ours", args.kill_backlog)
            sink_kill = kill_nine(bench, "theirs", args.kill_backlog)

            print(f"head to head, throughput ours/sink: {ratio(ours_rate, sink_rate)} "
                  f"({ours_rate:,.0f} / {sink_rate:,.0f} trades/s; higher is ours ahead)")
            print(f"head to head, freshness p50 ours/sink at {sink.label.removeprefix('sink at ')}: "
                  f"{ratio(ours.p50, sink.p50)}; p99 {ratio(ours.p99, sink.p99)} "
                  f"(ours {ours.p50:.2f}/{ours.p99:.2f} s, sink {sink.p50:.2f}/{sink.p99:.2f} s; lower is ours ahead)")
            if default:
                print(f"head to head, freshness p50 ours/sink at its default 300 s: {ratio(ours.p50, default.p50)}; "
                      f"p99 {ratio(ours.p99, default.p99)} (sink {default.p50:.1f}/{default.p99:.1f} s)")
            snapshots = ratio(ours.snapshots_per_hour, sink.snapshots_per_hour)
            print(f"head to head, snapshots per hour ours/sink: {snapshots}"
                  f" ({ours.snapshots_per_hour:,.0f} / {sink.snapshots_per_hour:,.0f}; extrapolated; sink at its "
                  f"default 300 s: 12)")
            print(f"head to head, data files per hour ours/sink: {ratio(ours.files_per_hour, sink.files_per_hour)}"
                  f" ({ours.files_per_hour:,.0f} / {sink.files_per_hour:,.0f}; extrapolated, before maintenance)")
            print(f"head to head, duplicates after kill -9 ours/sink: {ours_kill[0] - ours_kill[1]} / "
                  f"{sink_kill[0] - sink_kill[1]} (lost {ours_kill[2] - ours_kill[1]} / {sink_kill[2] - sink_kill[1]})")
            ahead = ours_rate > sink_rate and ours.p99 < sink.p99
            print(f"ratio: throughput ours/sink {ratio(ours_rate, sink_rate)}, freshness p99 ours/sink "
                  f"{ratio(ours.p99, sink.p99)}, duplicates {ours_kill[0] - ours_kill[1]}/{sink_kill[0] - sink_kill[1]}"
                  f" (goal: ahead on both at once with zero duplicates: {'met' if ahead else 'NOT met'}; {load()})")
        finally:
            bench.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
