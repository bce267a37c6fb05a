"""A real Iceberg REST catalog server for the local stack: Apache Iceberg's own ``RESTCatalogServer``.

The server is the class behind the ``apache/iceberg-rest-fixture`` image, from
``org.apache.iceberg:iceberg-open-api`` (classifier ``test-fixtures``) with its runtime classpath,
fetched from Maven Central into ``jars/rest-catalog`` by ``make jars``. It speaks the same REST
protocol as BigLake metastore, Polaris, Nessie, Lakekeeper and Unity, so Spark and pyiceberg are
configured for it exactly as for those (``catalog.type = "rest"``, ``catalog.uri``).

Behind the protocol the server keeps its tables in a JDBC catalog: its own SQLite file under the
state directory, or a shared database (``backing_jdbc_uri``, e.g. the local PostgreSQL). It writes
table metadata into the warehouse itself, so for a ``gs://`` warehouse it is given the GCS settings
(the emulator's endpoint, without authentication, or Application Default Credentials).

The server is configured only through ``CATALOG_*`` environment variables (``CATALOG_JDBC_USER`` is
``jdbc.user``, ``CATALOG_IO__IMPL`` is ``io-impl``). ``RESTCatalogServer.main`` takes a port only and
binds every interface, so it is started through ``java/LoopbackRestCatalogServer.java`` (a single
source file the JVM compiles in memory): the same adapter and servlet on a Jetty connector bound to
``local.rest_catalog_bind_address``, 127.0.0.1 unless the settings say otherwise. Nothing logs the
backend's properties (the JDBC password among them).

CLI: ``python -m lakehouse.local.rest_catalog start|stop|status`` (state under
``.state/rest-catalog``, port ``local.rest_catalog_port``, the warehouse of the settings).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from lakehouse.catalog import warehouse_uri
from lakehouse.local._daemon import CliResult, run_cli
from lakehouse.local.processes import log_tail, port_open, read_pid, stop_pid, wait_until
from lakehouse.logs import configure_logging
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings

log = logging.getLogger(__name__)

SERVER_CLASS = "org.apache.iceberg.rest.RESTCatalogServer"
SERVER_JAR = "iceberg-open-api-*-test-fixtures.jar"
# RESTCatalogServer's pieces on a connector bound to one address (its own main binds them all).
LAUNCHER = Path(__file__).resolve().parent / "java" / "LoopbackRestCatalogServer.java"
GCS_FILE_IO = "org.apache.iceberg.gcp.gcs.GCSFileIO"


class RestCatalogError(RuntimeError):
    """The local REST catalog server could not be started or reached; the message says why."""


def server_environment(
    port: int, warehouse: str, jdbc_uri: str, jdbc_user: str | None = None, jdbc_password: str | None = None,
    gcs_endpoint: str | None = None, gcs_project: str | None = None,
) -> dict[str, str]:
    """The server's ``CATALOG_*`` variables: its port, the backend JDBC catalog and the warehouse's FileIO."""
    env = {
        "CATALOG_REST_PORT": str(port),
        "CATALOG_WAREHOUSE": warehouse,
        "CATALOG_URI": jdbc_uri,
        # Version 1 of the JDBC catalog's schema knows views as well as tables (Java's JdbcCatalog
        # and pyiceberg's SqlCatalog read it too).
        "CATALOG_JDBC_SCHEMA__VERSION": "V1",
    }
    if jdbc_user:
        env["CATALOG_JDBC_USER"] = jdbc_user
    if jdbc_password:
        env["CATALOG_JDBC_PASSWORD"] = jdbc_password
    if warehouse.startswith("gs://"):
        env["CATALOG_IO__IMPL"] = GCS_FILE_IO
        if gcs_project:
            env["CATALOG_GCS_PROJECT__ID"] = gcs_project
        if gcs_endpoint:  # an emulator: no credentials at all
            env["CATALOG_GCS_SERVICE_HOST"] = gcs_endpoint
            env["CATALOG_GCS_NO__AUTH"] = "true"
    return env


class LocalRestCatalog:
    """One ``RESTCatalogServer`` JVM at http://127.0.0.1:``port`` over ``warehouse``."""

    def __init__(
        self,
        state_dir: Path,
        port: int,
        warehouse: str,
        backing_jdbc_uri: str | None = None,
        backing_user: str | None = None,
        backing_password: str | None = None,
        jars_dir: Path | None = None,
        gcs_endpoint: str | None = None,
        gcs_project: str | None = None,
        heap_mb: int = 256,
        bind_address: str = "127.0.0.1",
    ):
        self.state_dir = state_dir.resolve()
        self.port = port
        self.bind_address = bind_address
        self.warehouse = warehouse
        self.backing_jdbc_uri = backing_jdbc_uri or f"jdbc:sqlite:{self.state_dir / 'catalog.db'}"
        self.backing_user = backing_user
        self.backing_password = backing_password
        self.jars_dir = jars_dir or PROJECT_ROOT / "jars" / "rest-catalog"
        self.gcs_endpoint = gcs_endpoint
        self.gcs_project = gcs_project
        self.heap_mb = heap_mb

    @classmethod
    def from_settings(cls, settings: Settings, backing_jdbc_uri: str | None = None) -> LocalRestCatalog:
        """The server for these settings' warehouse (and GCS emulator), on ``local.rest_catalog_port``."""
        return cls(
            state_dir=settings.state_dir / "rest-catalog",
            port=settings.local.rest_catalog_port,
            warehouse=warehouse_uri(settings),
            backing_jdbc_uri=backing_jdbc_uri,
            jars_dir=settings.path(settings.local.rest_catalog_jars_dir),
            gcs_endpoint=settings.gcs.endpoint,
            gcs_project=settings.gcs.project,
            bind_address=settings.local.rest_catalog_bind_address,
        )

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "server.log"

    def is_running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def _java_command(self) -> list[str]:
        if not any(self.jars_dir.glob(SERVER_JAR)):
            raise RestCatalogError(f"REST catalog server jars not found in {self.jars_dir}: run `make jars` first")
        return [
            "java", f"-Xmx{self.heap_mb}m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-Dorg.slf4j.simpleLogger.log.org.eclipse.jetty.server.Server=info",
            "-cp", f"{self.jars_dir}/*", str(LAUNCHER), self.bind_address,
        ]

    def answers(self) -> bool:
        """True when ``GET /v1/config`` returns the server's configuration."""
        try:
            with urllib.request.urlopen(f"{self.uri}/v1/config", timeout=2) as response:
                return response.status == 200 and "defaults" in json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def start(self, timeout_seconds: float = 90) -> None:
        """Start the server unless it runs already; return once it answers REST requests."""
        if self.is_running():
            log.info("REST catalog already running at %s", self.uri)
            return
        if port_open("127.0.0.1", self.port):
            raise RestCatalogError(f"port {self.port} is taken by another process; set local.rest_catalog_port")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **_inherited_environment(),
            **server_environment(
                self.port, self.warehouse, self.backing_jdbc_uri, self.backing_user, self.backing_password,
                self.gcs_endpoint, self.gcs_project,
            ),
        }
        with self.log_file.open("ab") as log_out:
            process = subprocess.Popen(
                self._java_command(), env=env, cwd=self.state_dir,
                stdout=log_out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        ready = wait_until(lambda: process.poll() is not None or self.answers(), timeout_seconds, 0.3)
        if process.poll() is not None or not ready:
            self.stop()
            raise RestCatalogError(
                f"REST catalog did not answer on {self.uri} within {timeout_seconds}s; "
                f"log {self.log_file}:\n{log_tail(self.log_file)}"
            )
        log.info("REST catalog up at %s (pid %s, backend %s)", self.uri, process.pid, self.backing_jdbc_uri)

    def stop(self, timeout_seconds: float = 30) -> None:
        """Stop the server by its PID (SIGTERM: Jetty stops cleanly); a no-op when it is down."""
        pid = read_pid(self.pid_file)
        if pid is not None:
            stop_pid(pid, timeout_seconds)
            log.info("REST catalog (pid %s) stopped", pid)
        self.pid_file.unlink(missing_ok=True)


def _inherited_environment() -> dict[str, str]:
    """What the server JVM keeps of this process's environment: enough to find java, no ``CATALOG_*``
    variable (those configure the server, so a stray one must not reach it)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("CATALOG_")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the local Iceberg REST catalog server.")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--backing-jdbc-uri", default=None,
                        help="keep the catalog in this database (default: a SQLite file in its state directory); "
                             "user and password are catalog.user / catalog.password of the settings")
    args = parser.parse_args(argv)
    configure_logging()
    settings = load_settings()
    server = LocalRestCatalog.from_settings(settings, backing_jdbc_uri=args.backing_jdbc_uri)
    if args.backing_jdbc_uri:
        server.backing_user = settings.catalog.user
        server.backing_password = settings.catalog.password.get_secret_value() if settings.catalog.password else None
    def start_server() -> str:
        server.start()
        return f"REST catalog running: catalog.type=rest catalog.uri={server.uri} warehouse={server.warehouse}"

    def stop_server() -> str:
        server.stop()
        return "REST catalog stopped"

    def show_status() -> CliResult:
        return f"REST catalog running at {server.uri}" if server.is_running() else ("REST catalog not running", 1)

    return run_cli(args.command, {"start": start_server, "stop": stop_server, "status": show_status},
                   errors=(RestCatalogError,))

if __name__ == "__main__":
    sys.exit(main())
