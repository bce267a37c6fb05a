"""The local topologies the pipeline runs on, by settings only: embedded and cluster-on-one-machine.

A topology starts its servers, says which ``LAKEHOUSE__*`` settings every process of the pipeline
(producers, Spark driver, readers) must get to use them, and which ``spark-submit`` options place
the Spark application; then it stops what it started. ``lakehouse.local.demo`` and the topology
tests run the same pipeline on either.

* ``EmbeddedTopology``: one KRaft broker, Spark ``local[*]``, the SQLite catalog and the local
  warehouse of ``conf/lakehouse.toml`` (``make demo``).
* ``ClusterTopology``: three KRaft brokers (replication factor 3, ``min.insync.replicas=2``), a Spark
  standalone master and two workers, the GCS emulator holding a ``gs://`` warehouse, and a
  ``CatalogServer``: PostgreSQL by default (``make demo-cluster``); with ``rest=True`` also Apache
  Iceberg's REST catalog server in front of it (the protocol of BigLake metastore, Polaris, Nessie),
  keeping its catalog in the same database. ``environment(catalog=...)`` says which one a process opens.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from lakehouse.local import gcs_emulator
from lakehouse.local.kafka_broker import LocalKafkaBroker, ensure_topics, project_topics
from lakehouse.local.kafka_cluster import MIN_INSYNC_REPLICAS, REPLICATION_FACTOR, LocalKafkaCluster
from lakehouse.local.postgres import LocalPostgres
from lakehouse.local.processes import free_port
from lakehouse.local.rest_catalog import LocalRestCatalog
from lakehouse.local.spark_cluster import LocalSparkCluster, WorkerShape
from lakehouse.logs import configure_logging
from lakehouse.settings import Settings, load_settings

log = logging.getLogger(__name__)

BUCKET = "lakehouse"
# What each executor of an application on the local cluster gets: one worker's memory minus room
# for the JVM's own overhead, so one executor fits on each worker of a small machine.
EXECUTOR_MEMORY = "768m"
WAREHOUSE = f"gs://{BUCKET}/warehouse"
GCS_PROJECT = "local-project"
# Which catalog a process of the cluster topology opens: the shared JDBC catalog server itself, or
# the REST catalog server in front of it.
CatalogKind = Literal["jdbc", "rest"]


class Topology(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def environment(self) -> dict[str, str]:
        """The ``LAKEHOUSE__*`` variables every process of the pipeline is started with."""
        ...

    def spark_submit_options(self) -> list[str]:
        """Options before the job name in ``./spark-submit.sh OPTIONS JOB``."""
        ...

    def settings(self) -> Settings:
        """The settings a process started with ``environment()`` loads (for readers in this process)."""
        ...


class CatalogServer(Protocol):
    """The catalog every process of a topology opens: started first, stopped last."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def environment(self) -> dict[str, str]:
        """The ``LAKEHOUSE__CATALOG__*`` settings that name it (type, URI, credentials)."""
        ...


@dataclass(frozen=True)
class SqliteCatalog:
    """Iceberg's JDBC catalog on a SQLite file: no server, shared by the processes of one machine."""

    path: Path

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        pass

    def environment(self) -> dict[str, str]:
        return {"LAKEHOUSE__CATALOG__TYPE": "jdbc", "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{self.path}"}


class PostgresCatalog:
    """Iceberg's JDBC catalog on a PostgreSQL server the topology starts (what Cloud SQL is on GCP):
    one catalog for processes on any number of machines."""

    def __init__(self, state_dir: Path, port: int | None = None):
        self.server = LocalPostgres(state_dir, port or free_port())

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def environment(self) -> dict[str, str]:
        return {
            "LAKEHOUSE__CATALOG__TYPE": "jdbc",
            "LAKEHOUSE__CATALOG__URI": self.server.jdbc_uri,
            "LAKEHOUSE__CATALOG__USER": self.server.user,
            "LAKEHOUSE__CATALOG__PASSWORD": self.server.password,
        }


class EmbeddedTopology:
    """The embedded default: the configured single broker, Spark ``local[*]``, the configured catalog."""

    name = "embedded"

    def __init__(self, settings: Settings):
        self._settings = settings
        self.broker = LocalKafkaBroker.from_settings(settings)
        self._started_broker = False

    def start(self) -> None:
        self._started_broker = not self.broker.is_running()
        self.broker.start()
        ensure_topics(self.broker.bootstrap_servers, project_topics(self._settings), self._settings.kafka.partitions)

    def stop(self) -> None:
        if self._started_broker:
            self.broker.stop()

    def environment(self) -> dict[str, str]:
        return {}

    def spark_submit_options(self) -> list[str]:
        return []

    def settings(self) -> Settings:
        return self._settings


class ClusterTopology:
    """The production shape on loopback, under ``state_dir``; every server on free ports.

    ``catalog`` is the shared catalog every process opens; None: a PostgreSQL JDBC catalog on a
    server under ``state_dir`` (``SqliteCatalog`` serves the processes of one machine without one).
    ``rest``: also run Iceberg's REST catalog server, keeping its catalog in ``catalog``'s database
    (catalog name ``rest_backend`` there, beside the JDBC catalog's own); processes then open it
    unless ``environment(catalog="jdbc")`` is asked for.
    """

    name = "cluster"

    def __init__(
        self, base: Settings, state_dir: Path, catalog: CatalogServer | None = None, fresh: bool = True,
        rest: bool = False,
    ):
        self.base = base
        self.state_dir = state_dir.resolve()
        if fresh and self.state_dir.exists():
            ClusterTopology(base, state_dir, catalog, fresh=False, rest=True).stop()  # leftovers of an earlier run
            shutil.rmtree(self.state_dir)
        self.catalog = catalog or PostgresCatalog(self.state_dir / "postgres")
        # The REST server writes table metadata into the gs:// warehouse itself: it is told the
        # emulator's port before either starts.
        self.gcs_port = free_port()
        self.rest_catalog = LocalRestCatalog(
            self.state_dir / "rest-catalog", free_port(), WAREHOUSE,
            jars_dir=base.path(base.local.rest_catalog_jars_dir),
            gcs_endpoint=f"http://127.0.0.1:{self.gcs_port}", gcs_project=GCS_PROJECT,
            bind_address=base.local.rest_catalog_bind_address,
        ) if rest else None
        self.kafka = LocalKafkaCluster(base.path(base.local.kafka_jars_dir), self.state_dir / "kafka")
        self.spark = LocalSparkCluster(self.state_dir / "spark", master_port=free_port(), shape=WorkerShape(1, 1024))
        self.gcs: gcs_emulator.EmulatorProcess | None = None

    def start(self) -> None:
        try:
            self.catalog.start()
            self.gcs = gcs_emulator.start(self.state_dir / "gcs", port=self.gcs_port)
            gcs_emulator.storage_client(self.gcs.endpoint).create_bucket(BUCKET)
            if self.rest_catalog is not None:
                backing = self.catalog.environment()
                self.rest_catalog.backing_jdbc_uri = backing["LAKEHOUSE__CATALOG__URI"]
                self.rest_catalog.backing_user = backing.get("LAKEHOUSE__CATALOG__USER")
                self.rest_catalog.backing_password = backing.get("LAKEHOUSE__CATALOG__PASSWORD")
                self.rest_catalog.start()
            self.kafka.start()
            settings = self.settings()
            ensure_topics(self.kafka.bootstrap_servers, project_topics(settings), settings.kafka.partitions,
                          REPLICATION_FACTOR, MIN_INSYNC_REPLICAS)
            self.spark.start()
        except BaseException:
            self.stop()
            raise
        log.info("cluster topology up: Kafka %s, Spark %s, warehouse gs://%s on %s, catalog %s",
                 self.kafka.bootstrap_servers, self.spark.master_url, BUCKET, self.gcs.endpoint,
                 self.environment()["LAKEHOUSE__CATALOG__URI"])

    def stop(self) -> None:
        """Stop every server of the topology that runs; safe to call twice or after a failed start."""
        self.spark.stop()
        self.kafka.stop()
        gcs_emulator.stop(self.state_dir / "gcs")
        if self.rest_catalog is not None:
            self.rest_catalog.stop()
        self.catalog.stop()

    def catalog_environment(self, catalog: CatalogKind | None = None) -> dict[str, str]:
        """The ``LAKEHOUSE__CATALOG__*`` settings of ``catalog`` (default: REST when it runs)."""
        if catalog is None:
            catalog = "rest" if self.rest_catalog is not None else "jdbc"
        if catalog == "jdbc":
            return self.catalog.environment()
        if self.rest_catalog is None:
            raise RuntimeError("the cluster topology was not started with its REST catalog (rest=True)")
        return {"LAKEHOUSE__CATALOG__TYPE": "rest", "LAKEHOUSE__CATALOG__URI": self.rest_catalog.uri}

    def environment(self, catalog: CatalogKind | None = None) -> dict[str, str]:
        if self.gcs is None:
            raise RuntimeError("the cluster topology is not started")
        return {
            **self.catalog_environment(catalog),
            "LAKEHOUSE__LOCAL__STATE_DIR": str(self.state_dir),
            "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "LAKEHOUSE__KAFKA__REPLICATION_FACTOR": str(REPLICATION_FACTOR),
            "LAKEHOUSE__KAFKA__MIN_INSYNC_REPLICAS": str(MIN_INSYNC_REPLICAS),
            "LAKEHOUSE__CATALOG__WAREHOUSE": WAREHOUSE,
            "LAKEHOUSE__GCS__ENDPOINT": self.gcs.endpoint,
            "LAKEHOUSE__GCS__PROJECT": GCS_PROJECT,
            # Checkpoints stay on the driver's disk: on one machine the executors see it too.
            "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": str(self.state_dir / "checkpoints"),
        }

    def spark_submit_options(self) -> list[str]:
        return [
            "--master", self.spark.master_url,
            "--conf", f"spark.executor.memory={EXECUTOR_MEMORY}",
            # The driver listens for its executors on loopback too, like every daemon of the topology.
            "--conf", "spark.driver.host=127.0.0.1",
            "--conf", "spark.driver.bindAddress=127.0.0.1",
        ]

    def settings(self, catalog: CatalogKind | None = None) -> Settings:
        return load_settings(environ=self.environment(catalog))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.local.topology",
        description="Stop whatever runs of the cluster topology `make demo-cluster` keeps under STATE_DIR/cluster "
                    "(after a demo that was killed before it could stop it).",
    )
    parser.add_argument("command", choices=["stop"])
    parser.parse_args(argv)
    configure_logging()
    settings = load_settings()
    state = settings.state_dir / "cluster"
    if not state.exists():
        print(f"no cluster topology under {state}: nothing to stop")
        return 0
    ClusterTopology(settings, state, fresh=False, rest=True).stop()
    print("cluster topology stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
