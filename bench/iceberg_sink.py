"""Apache Iceberg's Kafka Connect sink in a real Kafka Connect worker: the other side of the
head-to-head benchmark (``bench/bench_kafka_connect.py``) and of its end-to-end test.

The worker is Kafka's own ``connect-runtime`` in **distributed mode** (``ConnectDistributed``: its
configs, offsets and status in Kafka topics, connectors created over its REST API), in a JVM of its
own with the jars ``make jars`` resolved from ``jars/kafka-connect.pom.xml``; the sink is a plugin on
``plugin.path`` (class-loader isolation, as a Connect cluster runs it). It writes into an Iceberg
table of the project's catalog (the SQLite JDBC catalog, with the properties our Spark jobs use).

What the sink needed to read our trade messages (the facts are in the sink's source, 1.10:
``RecordConverter``, ``IcebergSinkConfig``):

* the worker's ``JsonConverter`` without schemas hands the sink a ``Map``; the sink looks each key up
  by the table column's name, so the two ``*_ms`` fields are renamed to the columns they fill
  (``ReplaceField``). An epoch number into a ``timestamptz`` column is read as milliseconds, which our
  fields are: nothing else to configure for time.
* the columns our job fills itself and the message does not carry come from ``InsertField``: the
  Kafka partition and offset, and ``ingested_time`` = the record's Kafka timestamp (the producer's
  send time: a Connect transform has no "now"). ``bar_eligible`` is our conditions rule, which no
  transform computes: a static ``true`` stands in, right for the benchmark's feed (condition "1"
  only), wrong for real data. The sink has no deduplication on ``trade_id`` and no quarantine
  either: a malformed message fails the task.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from lakehouse.catalog import jdbc_uri, warehouse_uri
from lakehouse.local.processes import free_port, log_tail, port_open, wait_until
from lakehouse.settings import PROJECT_ROOT, Settings
from lakehouse.spark import NIO_LOCAL_FILESYSTEM

CONNECT_JARS = PROJECT_ROOT / "jars" / "kafka-connect"
WORKER_JARS = CONNECT_JARS / "worker"
PLUGIN_PATH = CONNECT_JARS / "plugins"
SINK_CLASS = "org.apache.iceberg.connect.IcebergSinkConnector"
DEFAULT_COMMIT_INTERVAL_MS = 300_000  # IcebergSinkConfig.COMMIT_INTERVAL_MS_DEFAULT


class ConnectError(RuntimeError):
    """The worker or the connector did not come up; the message says why."""


def worker_properties(bootstrap: str, group: str, rest_port: int, offset_flush_interval_ms: int | None = None) -> str:
    """A distributed worker on loopback; its three internal topics are named after ``group`` so
    that a second worker with the same group joins the same cluster (a restart after kill -9).

    ``offset_flush_interval_ms`` (Connect's default 60,000) also bounds how long a sink task waits
    for records before its ``put`` is called anyway; the Iceberg sink answers a commit round only
    inside ``put``, so on a topic that has gone quiet a round waits up to that long."""
    flush = [f"offset.flush.interval.ms={offset_flush_interval_ms}"] if offset_flush_interval_ms else []
    return "\n".join([*flush,
        f"bootstrap.servers={bootstrap}",
        f"group.id={group}",
        f"config.storage.topic={group}-configs",
        f"offset.storage.topic={group}-offsets",
        f"status.storage.topic={group}-status",
        "config.storage.replication.factor=1",
        "offset.storage.replication.factor=1",
        "status.storage.replication.factor=1",
        "offset.storage.partitions=1",
        "status.storage.partitions=1",
        "key.converter=org.apache.kafka.connect.storage.StringConverter",
        "value.converter=org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable=false",
        f"listeners=http://127.0.0.1:{rest_port}",
        f"plugin.path={PLUGIN_PATH}",
        # A dead worker's tasks go to the others as soon as its group session (10 s) times out,
        # instead of being held 5 minutes for it to come back (Connect's default delay).
        "scheduled.rebalance.max.delay.ms=0",
    ]) + "\n"


def sink_config(settings: Settings, topic: str, table: str, control_topic: str, commit_interval_ms: int,
                tasks: int) -> dict[str, str]:
    """The connector's configuration: the static table ``table`` (``namespace.name``), our catalog
    (same name, JDBC URI, warehouse and SQLite settings as ``lakehouse.spark.catalog_conf``), the
    exactly-once control topic, and the transforms of the module docstring."""
    return {
        "connector.class": SINK_CLASS,
        "tasks.max": str(tasks),
        "topics": topic,
        "iceberg.tables": table,
        "iceberg.control.topic": control_topic,
        "iceberg.control.commit.interval-ms": str(commit_interval_ms),
        "iceberg.catalog": settings.catalog.name,
        "iceberg.catalog.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        "iceberg.catalog.uri": jdbc_uri(settings),
        "iceberg.catalog.warehouse": warehouse_uri(settings),
        "iceberg.catalog.clients": "1",
        "iceberg.catalog.jdbc.init-catalog-tables": "false",
        "iceberg.catalog.jdbc.journal_mode": "WAL",
        "iceberg.catalog.jdbc.busy_timeout": "60000",
        # The same local FileSystem as our Spark jobs: neither side forks `chmod` per file.
        "iceberg.hadoop.fs.file.impl": NIO_LOCAL_FILESYSTEM,
        "transforms": "names,kafka",
        "transforms.names.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
        "transforms.names.renames": "event_time_ms:event_time,received_time_ms:received_time",
        "transforms.kafka.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.kafka.partition.field": "kafka_partition",
        "transforms.kafka.offset.field": "kafka_offset",
        "transforms.kafka.timestamp.field": "ingested_time",
        "transforms.kafka.static.field": "bar_eligible",
        "transforms.kafka.static.value": "true",
    }


class ConnectWorker:
    """One distributed Connect worker JVM (started in a session of its own, so that ``kill`` is a
    kill -9 of exactly that JVM and nothing else)."""

    def __init__(self, bootstrap: str, state_dir: Path, group: str = "bench-connect", heap_mb: int = 2048,
                 offset_flush_interval_ms: int | None = None) -> None:
        if not any(WORKER_JARS.glob("connect-runtime-*.jar")) or not (PLUGIN_PATH / "iceberg").is_dir():
            raise ConnectError(f"Kafka Connect jars not found in {CONNECT_JARS}: run `make jars` first")
        self.bootstrap, self.state_dir, self.group, self.heap_mb = bootstrap, state_dir, group, heap_mb
        self.offset_flush_interval_ms = offset_flush_interval_ms
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        state_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "connect.log"

    def start(self, timeout_seconds: float = 120) -> None:
        """Launch the JVM and return once its REST API answers (the worker has joined its group)."""
        config = self.state_dir / "worker.properties"
        config.write_text(worker_properties(self.bootstrap, self.group, self.port, self.offset_flush_interval_ms))
        log4j = self.state_dir / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.logger.org.apache.iceberg.connect=INFO\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        command = ["java", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC", f"-Dlog4j.configuration=file:{log4j}",
                   "-cp", f"{WORKER_JARS}/*", "org.apache.kafka.connect.cli.ConnectDistributed", str(config)]
        with self.log_file.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
        up = wait_until(lambda: self.process.poll() is not None or self._answers(), timeout_seconds, 0.5)
        if not up or self.process.poll() is not None:
            self.kill()
            raise ConnectError(f"Connect worker did not start:\n{log_tail(self.log_file)}")

    def _answers(self) -> bool:
        if not port_open("127.0.0.1", self.port):
            return False
        with contextlib.suppress(OSError, urllib.error.URLError):
            return self._request("GET", "/connectors") is not None
        return False

    def _request(self, method: str, path: str, body: dict | None = None) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        return json.loads(text) if text else {}

    def put_connector(self, name: str, config: dict[str, str], timeout_seconds: float = 120) -> None:
        """Create (or reconfigure) ``name`` and return once every task of it runs."""
        deadline = time.monotonic() + timeout_seconds
        while True:  # a worker that has just joined may answer 409 (rebalance in progress) for a while
            try:
                self._request("PUT", f"/connectors/{name}/config", config)
                break
            except urllib.error.HTTPError as error:
                if error.code != 409 or time.monotonic() > deadline:
                    raise ConnectError(f"creating {name}: {error.code} {error.read().decode()}") from error
                time.sleep(1)
        self.wait_running(name, int(config.get("tasks.max", "1")), deadline - time.monotonic())

    def status(self, name: str) -> dict:
        """The connector's status; empty when the worker does not know it or did not answer in time
        (its REST thread starves on a machine at load 60: not a failure of the sink)."""
        try:
            return self._request("GET", f"/connectors/{name}/status")  # type: ignore[return-value]
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            return {}

    def wait_running(self, name: str, tasks: int, timeout_seconds: float) -> None:
        """Until ``name`` and ``tasks`` tasks run; fail with the task's trace when one failed."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            self.check(name)
            status = self.status(name)
            states = [task.get("state") for task in status.get("tasks", [])]
            if status.get("connector", {}).get("state") == "RUNNING" and states.count("RUNNING") >= tasks:
                return
            time.sleep(0.5)
        raise ConnectError(f"{name} not running after {timeout_seconds:.0f} s: {self.status(name)}\n"
                           f"{log_tail(self.log_file)}")

    def check(self, name: str) -> None:
        """Raise when the worker died or a task of ``name`` failed (the trace is in the message)."""
        if self.process is None or self.process.poll() is not None:
            raise ConnectError(f"Connect worker exited:\n{log_tail(self.log_file)}")
        for task in self.status(name).get("tasks", []):
            if task.get("state") == "FAILED":
                raise ConnectError(f"{name} task {task.get('id')} failed: {task.get('trace', '')[:3000]}")

    def kill(self) -> None:
        """kill -9 of the worker JVM: no shutdown hook, no last commit, as a crashed machine."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout_seconds: float = 60) -> None:
        """SIGTERM (the worker stops its tasks and leaves its group), kill -9 if it does not exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            self.kill()
