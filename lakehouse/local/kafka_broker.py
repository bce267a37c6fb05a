"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) for the local stack.

Runs the broker jars that ``make jars`` fetched from Maven Central (``jars/kafka``) in a JVM of its
own, bound to 127.0.0.1, with its data, config and log under one state directory. Start is
idempotent (a PID file marks a running broker), stop is a no-op when it is already down.

CLI: ``python -m lakehouse.local.kafka_broker start|stop|status``.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, NotControllerError, TopicAlreadyExistsError, UnknownBrokerIdError

from lakehouse.local.processes import log_tail, port_open, read_pid, stop_pid, wait_until
from lakehouse.logs import configure_logging
from lakehouse.settings import Settings, load_settings

log = logging.getLogger(__name__)


DEFAULT_PERFORMANCE_OPTIONS = "-XX:+UseG1GC"


class BrokerError(RuntimeError):
    """The local broker could not be started or reached; the message says why."""


@dataclass(frozen=True)
class SaslPlainListener:
    """A second client listener on loopback, SASL_PLAINTEXT with the PLAIN mechanism, accepting
    ``users`` (name -> password): what a broker that demands authentication looks like to the
    project's clients (Managed Kafka's SASL_SSL is the same SASL exchange inside TLS). Brokers and
    the controller keep talking over the PLAINTEXT listeners."""

    port: int
    users: Mapping[str, str]

    def properties(self) -> list[str]:
        users = " ".join(f'user_{name}="{password}"' for name, password in self.users.items())
        return [
            "sasl.enabled.mechanisms=PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
        ]


def server_properties(
    data_dir: Path,
    port: int,
    controller_port: int,
    node_id: int = 1,
    quorum_voters: str | None = None,
    replication_factor: int = 1,
    sasl: SaslPlainListener | None = None,
) -> str:
    """KRaft config for one combined broker+controller node on loopback, tuned for a laptop.

    ``quorum_voters`` (``id@host:port,...``) makes the node one voter of a multi-node quorum; with
    ``replication_factor`` > 1 the internal topics are replicated that many times and a write is
    acknowledged (acks=all) only once ``replication_factor - 1`` replicas have it, so losing one
    node loses no acknowledged record and still accepts writes.
    """
    min_insync = max(1, replication_factor - 1)
    sasl_listener = f",SASL_PLAINTEXT://127.0.0.1:{sasl.port}" if sasl else ""
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node_id}",
            f"controller.quorum.voters={quorum_voters or f'{node_id}@127.0.0.1:{controller_port}'}",
            f"listeners=PLAINTEXT://127.0.0.1:{port}{sasl_listener},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}{sasl_listener}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            *(sasl.properties() if sasl else []),
            f"log.dirs={data_dir}",
            "num.partitions=4",
            f"offsets.topic.replication.factor={replication_factor}",
            "offsets.topic.num.partitions=4",
            f"transaction.state.log.replication.factor={replication_factor}",
            f"transaction.state.log.min.isr={min_insync}",
            f"default.replication.factor={replication_factor}",
            f"min.insync.replicas={min_insync}",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.retention.hours=168",
            "log.segment.bytes=268435456",
            "num.network.threads=2",
            "num.io.threads=2",
        ]
    ) + "\n"


def new_cluster_id() -> str:
    """A KRaft cluster id; every node of one cluster is formatted with the same one."""
    cluster_id = "-"
    while cluster_id.startswith("-"):  # the format tool would read a leading dash as an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return cluster_id


class LocalKafkaBroker:
    """One KRaft node. Alone by default; ``node_id``, ``quorum_voters``, ``cluster_id`` and
    ``replication_factor`` make it one node of a replicated cluster (``kafka_cluster``)."""

    def __init__(
        self,
        jars_dir: Path,
        state_dir: Path,
        port: int,
        controller_port: int,
        heap_mb: int = 512,
        node_id: int = 1,
        quorum_voters: str | None = None,
        cluster_id: str | None = None,
        replication_factor: int = 1,
        sasl: SaslPlainListener | None = None,
    ):
        self.jars_dir = jars_dir
        self.sasl = sasl
        self.state_dir = state_dir
        self.port = port
        self.controller_port = controller_port
        self.heap_mb = heap_mb
        self.node_id = node_id
        self.quorum_voters = quorum_voters
        self.cluster_id = cluster_id
        self.replication_factor = replication_factor

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalKafkaBroker:
        return cls(
            jars_dir=settings.path(settings.local.kafka_jars_dir),
            state_dir=settings.state_dir / "kafka",
            port=settings.kafka.local_broker_port,
            controller_port=settings.kafka.local_controller_port,
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "broker.log"

    def is_running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def _java_command(self, main_class: str, *args: str) -> list[str]:
        if not any(self.jars_dir.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"Kafka broker jars not found in {self.jars_dir}: run `make jars` first")
        # KAFKA_JVM_PERFORMANCE_OPTS replaces the GC and JIT options, as in Kafka's own scripts.
        performance = os.environ.get("KAFKA_JVM_PERFORMANCE_OPTS", DEFAULT_PERFORMANCE_OPTIONS).split()
        return [
            "java", f"-Xmx{self.heap_mb}m", f"-Xms{min(self.heap_mb, 256)}m", *performance,
            f"-Dlog4j.configuration=file:{self.state_dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.state_dir}",
            "-cp", f"{self.jars_dir}/*", main_class, *args,
        ]

    def _format_storage(self, config: Path, data_dir: Path) -> None:
        if (data_dir / "meta.properties").exists():
            return
        cluster_id = self.cluster_id or new_cluster_id()
        result = subprocess.run(
            self._java_command("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
            capture_output=True, text=True, timeout=120,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{result.stdout}\n{result.stderr}")

    def start(self, timeout_seconds: float = 60) -> None:
        """Start the broker unless it runs already; return once it accepts connections."""
        if self.is_running():
            log.info("Kafka broker already running at %s", self.bootstrap_servers)
            return
        process = self.launch()
        self.wait_ready(process, timeout_seconds)

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the JVM without waiting: a node of a multi-node quorum answers only once a
        majority of the voters runs, so a cluster launches every node before it waits for any."""
        if port_open("127.0.0.1", self.port):
            raise BrokerError(f"port {self.port} is taken by another process; set kafka.local_broker_port")
        data_dir = self.state_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        config = self.state_dir / "server.properties"
        config.write_text(server_properties(
            data_dir, self.port, self.controller_port, self.node_id, self.quorum_voters, self.replication_factor,
            self.sasl,
        ))
        (self.state_dir / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.logger.kafka.server.KafkaServer=INFO\n"
            "log4j.logger.kafka.server.BrokerServer=INFO\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        self._format_storage(config, data_dir)
        with self.log_file.open("ab") as log_out:
            process = subprocess.Popen(
                self._java_command("kafka.Kafka", str(config)),
                stdout=log_out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        return process

    def wait_ready(self, process: subprocess.Popen[bytes], timeout_seconds: float) -> None:
        """Return once the launched broker accepts connections and answers metadata requests."""
        ready = wait_until(
            lambda: process.poll() is not None or port_open("127.0.0.1", self.port), timeout_seconds
        )
        if process.poll() is not None or not ready:
            self.stop()
            raise BrokerError(
                f"Kafka broker did not come up on {self.bootstrap_servers} within {timeout_seconds}s; "
                f"log {self.log_file}:\n{log_tail(self.log_file)}"
            )
        self._wait_for_metadata(timeout_seconds)
        log.info("Kafka broker up at %s (pid %s, state %s)", self.bootstrap_servers, process.pid, self.state_dir)

    def _wait_for_metadata(self, timeout_seconds: float) -> None:
        def answers() -> bool:
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000)
            except KafkaError:
                return False
            try:
                admin.list_topics()
                return True
            except KafkaError:
                return False
            finally:
                admin.close()

        if not wait_until(answers, timeout_seconds, interval_seconds=0.5):
            raise BrokerError(f"Kafka broker at {self.bootstrap_servers} does not answer metadata requests")

    def stop(self, timeout_seconds: float = 30) -> bool:
        """Stop the broker by its PID (clean shutdown first); a no-op when it is down. Whether one ran."""
        pid = read_pid(self.pid_file)
        if pid is not None:
            stop_pid(pid, timeout_seconds)
            log.info("Kafka broker (pid %s) stopped", pid)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None


def ensure_topics(
    bootstrap_servers: str,
    topics: list[str],
    partitions: int,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the ones created. Safe to call repeatedly.

    ``min_insync_replicas`` is set on each new topic: with acks=all, how many replicas must hold a
    record before the producer gets its acknowledgement."""
    configs = {"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas else {}
    attempts = 5
    for attempt in range(1, attempts + 1):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=30000)
        try:
            existing = set(admin.list_topics())
            created = []
            for topic in [t for t in topics if t not in existing]:
                try:
                    admin.create_topics([NewTopic(topic, partitions, replication_factor, topic_configs=configs)])
                    created.append(topic)
                except TopicAlreadyExistsError:
                    pass
            return created
        except (UnknownBrokerIdError, NotControllerError) as exc:
            # A cluster that has just formed may name a controller the client has no address for
            # yet; a fresh client a moment later gets metadata that lists it.
            if attempt == attempts:
                raise
            log.info("creating topics on %s: %s; retrying", bootstrap_servers, type(exc).__name__)
            time.sleep(attempt)
        finally:
            admin.close()
    raise AssertionError("unreachable")


def project_topics(settings: Settings) -> list[str]:
    k = settings.kafka
    return [k.trades_topic, k.vendor_bars_topic, k.feed_events_topic, k.quarantine_topic]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the local single-node Kafka broker (KRaft).")
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    configure_logging()
    settings = load_settings()
    broker = LocalKafkaBroker.from_settings(settings)
    if args.command == "start":
        broker.start()
        created = ensure_topics(
            broker.bootstrap_servers, project_topics(settings), settings.kafka.partitions,
            settings.kafka.replication_factor, settings.kafka.min_insync_replicas,
        )
        print(f"Kafka broker running at {broker.bootstrap_servers}; topics created: {created or 'none (all exist)'}")
    elif args.command == "stop":
        print("Kafka broker stopped" if broker.stop() else "no Kafka broker was running")
    else:
        running = broker.is_running()
        print(f"Kafka broker {'running at ' + broker.bootstrap_servers if running else 'not running'}")
        return 0 if running else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
