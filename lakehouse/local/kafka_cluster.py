"""A replicated Apache Kafka on loopback: three KRaft nodes, each broker and controller (combined).

The production shape on one machine: a controller quorum of three (a majority of two survives the
loss of any one node) and topics with replication factor 3 and ``min.insync.replicas=2``, so an
``acks=all`` producer is acknowledged only once two nodes hold a record, and losing one node loses
no acknowledged record and still takes writes. Each node is a ``LocalKafkaBroker`` with its own
ports, data and log under ``STATE_DIR/node-N``; the ports are kept in ``STATE_DIR/cluster.json`` so
``status``/``stop`` find a cluster that another command started.

CLI: ``python -m lakehouse.local.kafka_cluster start|stop|status [--state-dir D]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from lakehouse.local.kafka_broker import BrokerError, LocalKafkaBroker, ensure_topics, new_cluster_id, project_topics
from lakehouse.local.processes import free_port, pid_alive, read_pid, stop_pid, wait_until
from lakehouse.logs import configure_logging
from lakehouse.settings import Settings, load_settings

log = logging.getLogger(__name__)

NODES = 3
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
RECORD_FILE = "cluster.json"


@dataclass(frozen=True)
class NodePorts:
    broker: int
    controller: int


class LocalKafkaCluster:
    """Three combined KRaft nodes on 127.0.0.1; start/stop are idempotent like the single broker's."""

    def __init__(self, jars_dir: Path, state_dir: Path, ports: list[NodePorts] | None = None, heap_mb: int = 384):
        self.jars_dir = jars_dir
        self.state_dir = state_dir
        record = self._read_record()
        self.cluster_id: str = record["cluster_id"] if record else new_cluster_id()
        if ports is None:
            ports = [NodePorts(**node) for node in record["nodes"]] if record else [
                NodePorts(free_port(), free_port()) for _ in range(NODES)
            ]
        voters = ",".join(f"{n + 1}@127.0.0.1:{p.controller}" for n, p in enumerate(ports))
        self.nodes = [
            LocalKafkaBroker(
                jars_dir, state_dir / f"node-{n + 1}", port=p.broker, controller_port=p.controller,
                heap_mb=heap_mb, node_id=n + 1, quorum_voters=voters, cluster_id=self.cluster_id,
                replication_factor=REPLICATION_FACTOR,
            )
            for n, p in enumerate(ports)
        ]

    @classmethod
    def from_settings(cls, settings: Settings, state_dir: Path | None = None) -> LocalKafkaCluster:
        return cls(settings.path(settings.local.kafka_jars_dir), state_dir or settings.state_dir / "kafka-cluster")

    def _read_record(self) -> dict | None:
        try:
            return json.loads((self.state_dir / RECORD_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def running_nodes(self) -> list[int]:
        """Indexes (0-based) of the nodes whose process is alive."""
        return [n for n, node in enumerate(self.nodes) if node.is_running()]

    def start(self, timeout_seconds: float = 120) -> None:
        """Start the nodes that are not running (all at once: the quorum needs a majority), and
        return when each answers metadata requests."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        record = {"cluster_id": self.cluster_id,
                  "nodes": [{"broker": n.port, "controller": n.controller_port} for n in self.nodes]}
        (self.state_dir / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
        launched = [(node, node.launch()) for node in self.nodes if not node.is_running()]
        try:
            for node, process in launched:
                node.wait_ready(process, timeout_seconds)
            self._wait_for_every_broker(timeout_seconds)
        except Exception:
            self.stop()
            raise
        log.info("Kafka cluster up at %s (state %s)", self.bootstrap_servers, self.state_dir)

    def _wait_for_every_broker(self, timeout_seconds: float) -> None:
        """Wait until the cluster's metadata lists every node: an admin request sent before that can
        be routed to a controller the client does not know yet (UnknownBrokerIdError)."""

        def registered() -> int:
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000)
            except KafkaError:
                return 0
            try:
                return len(admin.describe_cluster().get("brokers", []))
            except KafkaError:
                return 0
            finally:
                admin.close()

        if not wait_until(lambda: registered() == len(self.nodes), timeout_seconds, interval_seconds=0.5):
            raise BrokerError(f"only {registered()} of {len(self.nodes)} Kafka nodes registered in {timeout_seconds} s")

    def start_node(self, index: int, timeout_seconds: float = 120) -> None:
        """Bring one node back (after ``kill_node``); it rejoins the quorum and catches up its replicas."""
        self.nodes[index].start(timeout_seconds)

    def kill_node(self, index: int) -> int:
        """SIGKILL one node, as a machine that loses power: no clean shutdown, no leader hand-over."""
        node = self.nodes[index]
        pid = read_pid(node.pid_file)
        if pid is None:
            raise RuntimeError(f"Kafka node {index + 1} is not running")
        os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), 10)
        log.warning("Kafka node %d (pid %d, %s) killed", index + 1, pid, node.bootstrap_servers)
        return pid

    def stop(self, timeout_seconds: float = 30) -> None:
        """Stop every node (clean shutdown first); a no-op for the nodes already down.

        All nodes are asked at once: a node's clean shutdown needs a controller quorum, so the
        last one stopped alone would wait out its timeout."""
        pids = [(node, pid) for node in self.nodes if (pid := read_pid(node.pid_file)) is not None]
        for _, pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
        wait_until(lambda: not any(pid_alive(pid) for _, pid in pids), timeout_seconds)
        for node, pid in pids:
            stop_pid(pid, timeout_seconds=5)  # SIGKILL what did not exit in time
            node.pid_file.unlink(missing_ok=True)
        if pids:
            log.info("Kafka cluster at %s stopped", self.bootstrap_servers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a replicated 3-node Kafka (KRaft) on loopback.")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", type=Path, default=None, help="default: STATE_DIR/kafka-cluster")
    args = parser.parse_args(argv)
    configure_logging()
    settings = load_settings()
    cluster = LocalKafkaCluster.from_settings(settings, args.state_dir)
    if args.command == "start":
        cluster.start()
        created = ensure_topics(cluster.bootstrap_servers, project_topics(settings), settings.kafka.partitions,
                                REPLICATION_FACTOR, MIN_INSYNC_REPLICAS)
        print(f"Kafka cluster running at {cluster.bootstrap_servers}; topics created: {created or 'none (all exist)'}")
    elif args.command == "stop":
        cluster.stop()
        print("Kafka cluster stopped")
    else:
        running = cluster.running_nodes()
        print(f"Kafka cluster: {len(running)} of {NODES} nodes running at {cluster.bootstrap_servers}")
        return 0 if len(running) == NODES else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
