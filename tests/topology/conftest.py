"""The cluster topology, started once for the topology tests: 3 KRaft brokers, a Spark standalone
master and 2 workers, the GCS emulator with a gs:// warehouse, the shared PostgreSQL catalog and
Iceberg's REST catalog server in front of it; stopped after. Each test picks the catalog it goes
through (``lakehouse_on(..., catalog="jdbc"|"rest")``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pytest
from pyiceberg.catalog import Catalog

from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.local.kafka_broker import ensure_topics
from lakehouse.local.kafka_cluster import MIN_INSYNC_REPLICAS, REPLICATION_FACTOR
from lakehouse.local.topology import CatalogKind, ClusterTopology
from lakehouse.messages import Source, Trade, trade_id
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings
from lakehouse.tables import TRADES, TableDef
from producers.kafka_sink import KafkaSink, SinkConfig
from tests.conftest import TEST_JVM_OPTIONS

JOB_TIMEOUT_S = 480  # a cluster job's first micro-batch took up to 400 s at a load average of 40-118
BASE_MS = 1_767_261_600_000  # 2026-01-01T10:00:00Z


# Package scope: torn down after the last topology test, not at the end of the session. The
# scope runs first (the longest), and the idle cluster (three brokers, a Spark master and two
# workers, PostgreSQL, the REST server) kept 8% of the two cores busy for the rest of the run.
@pytest.fixture(scope="package")
def cluster() -> Iterator[ClusterTopology]:
    # Not under pytest's basetemp: the PostgreSQL server runs as its own system user, which must
    # traverse every folder above its data, and any pytest session that starts on this machine
    # makes /tmp/pytest-of-USER private again (mode 0700), which would lock the server out mid-test.
    state = Path(tempfile.mkdtemp(prefix="lakehouse-topology-"))
    topology = ClusterTopology(load_settings(environ={}), state / "cluster", rest=True)
    started = time.monotonic()
    try:
        topology.start()
        print(f"\ncluster topology up in {time.monotonic() - started:.1f} s")
        yield topology
    finally:
        stopping = time.monotonic()
        topology.stop()
        print(f"\ncluster topology down in {time.monotonic() - stopping:.1f} s")
        shutil.rmtree(state, ignore_errors=True)


@dataclass
class Lakehouse:
    """One test's own namespace, trades topic and checkpoints on the shared cluster topology."""

    env: dict[str, str]
    settings: Settings
    log_dir: Path

    @cached_property
    def catalog(self) -> Catalog:
        """The lakehouse's catalog, through pyiceberg: opened once, not at every poll."""
        return load_catalog(self.settings)

    def rows(self, table: TableDef) -> list[dict]:
        """Every row of one of the lakehouse's tables, read through pyiceberg (no Spark); none
        before the job has created it."""
        try:
            loaded = self.catalog.load_table(table_identifier(self.settings, table))
        except Exception:  # not created yet by the job
            return []
        return loaded.scan().to_arrow().to_pylist()

    def trades(self) -> list[dict]:
        return self.rows(TRADES)


def lakehouse_on(cluster: ClusterTopology, name: str, catalog: CatalogKind = "jdbc") -> Lakehouse:
    """A lakehouse of its own, opened through ``catalog``: the PostgreSQL JDBC catalog or the REST server."""
    topic = f"{name}.trades"
    ensure_topics(cluster.kafka.bootstrap_servers, [topic], 4, REPLICATION_FACTOR, MIN_INSYNC_REPLICAS)
    env = {
        **cluster.environment(catalog),
        # A JDBC catalog keeps its tables under its name: a reader must open it by the same one, and
        # a Spark reader beside the session's own catalog needs a name other than the default.
        "LAKEHOUSE__CATALOG__NAME": f"cluster_{catalog}",
        "LAKEHOUSE__KAFKA__TRADES_TOPIC": topic,
        "LAKEHOUSE__CATALOG__NAMESPACE": name,
        "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": str(cluster.state_dir / "checkpoints" / name),
        "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "2",
    }
    log_dir = cluster.state_dir / "logs" / name
    log_dir.mkdir(parents=True, exist_ok=True)
    return Lakehouse(env, load_settings(environ=env), log_dir)


class SubmittedJob:
    """``./spark-submit.sh --master spark://... JOB`` as a real process; stopped with SIGTERM."""

    def __init__(self, cluster: ClusterTopology, lake: Lakehouse, job: str):
        self.log_file = lake.log_dir / f"{job}.log"
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [str(PROJECT_ROOT / "spark-submit.sh"), *cluster.spark_submit_options(),
                 # The executors' JVMs too run C1 alone, as the test session's drivers do (tests/conftest.py).
                 "--conf", f"spark.executor.extraJavaOptions={TEST_JVM_OPTIONS}", job],
                env={**os.environ, **lake.env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], bool], what: str, timeout_s: float = JOB_TIMEOUT_S) -> float:
        """Poll ``condition`` while the job runs; fail with the job's log if it dies or times out."""
        started = time.monotonic()
        while not condition():
            assert self.process.poll() is None, f"the job died while waiting for {what}:\n{self.log()[-5000:]}"
            assert time.monotonic() - started < timeout_s, f"not {what} in {timeout_s} s:\n{self.log()[-5000:]}"
            time.sleep(1)
        return time.monotonic() - started

    def started(self, line: str) -> bool:
        return self.log_file.exists() and line in self.log()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def make_trade(symbol: str, n: int) -> Trade:
    """The n-th trade of ``symbol``: one every 1.5 s of event time, a price that moves."""
    price, volume, at = round(100 + (n % 13) / 4, 2), float(n % 7 + 1), BASE_MS + n * 1500
    return Trade(
        source=Source.FINNHUB, symbol=symbol, price=price, volume=volume, event_time_ms=at,
        conditions=[], venue="XNAS", received_time_ms=at + 5,
        trade_id=trade_id(Source.FINNHUB, symbol, at, price, volume, []),
    )


@dataclass
class TradeFeed:
    """A producer thread publishing trades through the project's KafkaSink (acks=all, idempotent)
    at about ``per_second``, until stopped; then it flushes and records what Kafka acknowledged."""

    bootstrap_servers: str
    topic: str
    symbols: tuple[str, ...]
    per_second: float = 200
    sent: int = 0
    acked: int = 0
    resent: int = 0
    sent_ids: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> TradeFeed:
        self._thread = threading.Thread(target=self._run, name="trade-feed", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            sink = KafkaSink(SinkConfig(self.bootstrap_servers, client_id="topology-test", linger_ms=10))
            n, started = 0, time.monotonic()
            while not self._stop.is_set():
                for symbol in self.symbols:
                    trade = make_trade(symbol, n)
                    sink.publish(self.topic, trade)
                    self.sent_ids.add(trade.trade_id)
                    self.sent += 1
                n += 1
                time.sleep(max(0.0, started + self.sent / self.per_second - time.monotonic()))
            assert sink.close(timeout_seconds=120), f"unacknowledged records: {sink.stats}"
            self.acked, self.resent = sink.stats.acked, sink.stats.resent
        except BaseException as error:  # reported by stop()
            self.error = error

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(180)
        if self.error is not None:
            raise self.error
