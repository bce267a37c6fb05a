"""Raw-trades throughput on the Spark standalone cluster versus ``local[2]``, in one run.

One cluster topology (``lakehouse.local.topology.ClusterTopology``: 3 KRaft brokers, a master and two
1-core workers) serves both runs. The trades topic is pre-loaded once with ``--messages`` trades
through the project's producer (acks=all, replication factor 3); then ``./spark-submit.sh raw_trades``
drains it twice, each into a namespace and checkpoint of its own, the same in everything but
``--master``: ``local[2]`` (driver and tasks in one JVM, 2 task threads) and ``spark://...`` (tasks
in one executor per worker, 1 core each: 2 task slots too). Both write a ``file:`` warehouse through
the SQLite catalog, so what differs is where the tasks run and what crosses between JVMs.

Throughput = trades committed after the first snapshot / time from the first to the last snapshot
(Iceberg's own commit times): the first batch, with the JVM's start-up and JIT, is left out.

    .venv/bin/python -m bench.bench_cluster [--messages 300000] [--batch 50000]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import describe_machine, load
from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.local.kafka_broker import ensure_topics
from lakehouse.local.kafka_cluster import MIN_INSYNC_REPLICAS, REPLICATION_FACTOR
from lakehouse.local.topology import ClusterTopology, SqliteCatalog
from lakehouse.messages import Source, Trade, trade_id
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings
from lakehouse.tables import TRADES
from producers.kafka_sink import KafkaSink, SinkConfig

START_MS = 1_772_000_000_000  # 2026-02-25 06:13 UTC; only the spread of event times matters
SYMBOLS = 50
TOPIC = "bench.cluster.trades"


def preload(bootstrap: str, count: int) -> float:
    """Publish ``count`` trades over ``SYMBOLS`` symbols; returns the seconds it took (all acknowledged)."""
    sink = KafkaSink(SinkConfig(bootstrap, client_id="bench-cluster", linger_ms=50))
    started = time.monotonic()
    for n in range(count):
        symbol, at = f"S{n % SYMBOLS:02d}", START_MS + n * 7
        price, volume = 100 + (n % 97) / 8, float(n % 9 + 1)
        sink.publish(TOPIC, Trade(
            source=Source.FINNHUB, symbol=symbol, price=price, volume=volume, event_time_ms=at,
            conditions=[], venue="XNAS", received_time_ms=at + 3,
            trade_id=trade_id(Source.FINNHUB, symbol, at, price, volume, []),
        ))
    if not sink.close(timeout_seconds=300):
        raise RuntimeError(f"pre-load: not every trade was acknowledged ({sink.stats})")
    return time.monotonic() - started


def snapshots(settings: Settings) -> list[tuple[int, int]]:
    """(commit time ms, total records) of each trades snapshot, oldest first."""
    try:
        table = load_catalog(settings).load_table(table_identifier(settings, TRADES))
    except Exception:  # not created yet
        return []
    return sorted((s.timestamp_ms, int(s.summary["total-records"])) for s in table.snapshots() if s.summary)


def drain(label: str, master_options: list[str], env: dict[str, str], count: int, log_dir: Path) -> dict:
    """Run the raw-trades job until it has stored ``count`` trades; its figures from the snapshots."""
    settings = load_settings(environ=env)
    log_file = log_dir / f"{label}.log"
    started = time.monotonic()
    with log_file.open("ab") as log:
        process = subprocess.Popen([str(PROJECT_ROOT / "spark-submit.sh"), *master_options, "raw_trades"],
                                   env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        while not (snapshots(settings) and snapshots(settings)[-1][1] >= count):
            if process.poll() is not None:
                raise RuntimeError(f"{label}: the job exited with {process.returncode}; log {log_file}")
            if time.monotonic() - started > 1800:
                raise RuntimeError(f"{label}: not done in 30 minutes; log {log_file}")
            time.sleep(2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
    commits = snapshots(settings)
    (first_ms, first_total), (last_ms, last_total) = commits[0], commits[-1]
    seconds = (last_ms - first_ms) / 1000
    return {"label": label, "batches": len(commits), "trades": last_total,
            "first_batch_trades": first_total, "seconds": seconds,
            "trades_per_s": (last_total - first_total) / seconds if seconds > 0 else float("nan"),
            "wall_s": time.monotonic() - started, "load": load()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=50_000, help="maxOffsetsPerTrigger of each run")
    args = parser.parse_args(argv)
    print(describe_machine())
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as state:
        # Both runs use one SQLite catalog: the catalog server is not what this compares.
        topology = ClusterTopology(load_settings(environ={}), Path(state) / "topology",
                                   catalog=SqliteCatalog(Path(state) / "catalog.db"))
        up = time.monotonic()
        topology.start()
        try:
            print(f"cluster topology up in {time.monotonic() - up:.1f} s ({load()})")
            ensure_topics(topology.kafka.bootstrap_servers, [TOPIC], 4, REPLICATION_FACTOR, MIN_INSYNC_REPLICAS)
            preload_s = preload(topology.kafka.bootstrap_servers, args.messages)
            print(f"pre-loaded {args.messages} trades in {preload_s:.1f} s")
            results = []
            for label, options in (("local[2]", ["--master", "local[2]"]),
                                   ("standalone 2x1", topology.spark_submit_options())):
                name = "bench_local" if label.startswith("local") else "bench_cluster"
                env = {**topology.environment(),
                       "LAKEHOUSE__KAFKA__TRADES_TOPIC": TOPIC,
                       "LAKEHOUSE__CATALOG__NAMESPACE": name,
                       "LAKEHOUSE__CATALOG__WAREHOUSE": f"{state}/warehouse",
                       "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": f"{state}/checkpoints/{name}",
                       "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "0",
                       "LAKEHOUSE__STREAMING__MAX_OFFSETS_PER_TRIGGER": str(args.batch)}
                result = drain(label, options, env, args.messages, Path(state))
                results.append(result)
                print(f"{label:>15}: {result['trades_per_s']:,.0f} trades/s over {result['batches']} commits "
                      f"({result['trades'] - result['first_batch_trades']:,} trades in {result['seconds']:.1f} s after "
                      f"the first batch; {result['wall_s']:.0f} s from submit; {result['load']})")
            local, cluster = results
            print(f"ratio: standalone / local[2] = {cluster['trades_per_s'] / local['trades_per_s']:.2f}")
        finally:
            topology.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
