"""A real PostgreSQL server on loopback for the shared JDBC catalog (what Cloud SQL is on GCP).

The server build comes from the PyPI package ``pgserver`` (its ``pginstall/bin``: initdb, postgres),
so a fresh machine needs neither apt nor Docker. This module runs those binaries itself, like the
Kafka broker: data, config, password and log under one state directory, a PID file for the
postmaster, start idempotent, stop a no-op when it is down.

* Listens on 127.0.0.1 only (no Unix socket); every connection authenticates with a password
  (scram-sha-256). The password is generated once and kept in ``state_dir/password`` (mode 0600),
  never printed.
* PostgreSQL refuses to run as root; as root the server runs as the system user ``lakehouse-pg``
  (created on first use), which owns the data directory.

CLI: ``python -m lakehouse.local.postgres start|stop|status`` (state under ``.state/postgres``,
port ``local.postgres_port``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import pwd
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from lakehouse.local.processes import log_tail, pid_alive, port_open, read_pid, stop_pid, wait_until
from lakehouse.logs import configure_logging
from lakehouse.settings import Settings, load_settings

log = logging.getLogger(__name__)

SERVER_PACKAGE = "pgserver"
# PostgreSQL will not run as root: the server's own system user when this process is root.
SYSTEM_USER = "lakehouse-pg"


class PostgresError(RuntimeError):
    """The local PostgreSQL server could not be installed, started or reached; the message says why."""


def server_bin_dir() -> Path:
    """The ``bin`` folder of the PostgreSQL build shipped inside the ``pgserver`` wheel."""
    spec = importlib.util.find_spec(SERVER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError(f"PostgreSQL binaries not found: install them with `pip install {SERVER_PACKAGE}` "
                            "(`make setup` does)")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise PostgresError(f"{SERVER_PACKAGE} has no postgres binary at {bin_dir}")
    return bin_dir


def server_options(port: int) -> list[str]:
    """``postgres`` command-line settings: loopback TCP only, sized for a shared laptop."""
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": "",
        "max_connections": "200",  # each Spark catalog instance keeps a small pool of its own
        "shared_buffers": "64MB",
        "logging_collector": "off",
        "log_min_messages": "warning",
    }
    return [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]


class LocalPostgres:
    """One PostgreSQL cluster in ``state_dir`` serving database ``database`` to ``user`` on 127.0.0.1:``port``."""

    def __init__(
        self, state_dir: Path, port: int, user: str = "lakehouse", database: str = "lakehouse",
        password: str | None = None,
    ):
        self.state_dir = state_dir.resolve()
        self.port = port
        self.user = user
        self.database = database
        self._password = password

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalPostgres:
        return cls(settings.state_dir / "postgres", settings.local.postgres_port)

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "postgres.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self.state_dir / "password"

    @property
    def password(self) -> str:
        """The password of ``user``: the one given, else the one generated at first start."""
        if self._password is None:
            try:
                self._password = self.password_file.read_text().strip()
            except FileNotFoundError:
                raise PostgresError(f"no password at {self.password_file}: start the server first") from None
        return self._password

    @property
    def jdbc_uri(self) -> str:
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{self.database}"

    def is_running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def _run_as(self) -> dict[str, object]:
        """``subprocess`` arguments that drop root to the server's system user (nothing otherwise)."""
        if os.geteuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                check=True, capture_output=True,
            )
            entry = pwd.getpwnam(SYSTEM_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _grant_to_server_user(self, run_as: dict[str, object]) -> None:
        """The server's system user owns the state directory and can reach it and the binaries."""
        if not run_as:
            return
        uid, gid = int(run_as["user"]), int(run_as["group"])  # type: ignore[call-overload]
        for path in (self.state_dir, self.data_dir):
            os.chown(path, uid, gid)
        for folder in (*self.state_dir.parents, *server_bin_dir().parents):
            mode = folder.stat().st_mode
            if mode & 0o001 == 0:  # others must traverse every folder above (o+x), nothing more
                folder.chmod(mode | 0o001)

    def _initdb(self, run_as: dict[str, object]) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self._password is None and not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24))
            self.password_file.chmod(0o600)
        pwfile = self.state_dir / ".initdb-password"
        pwfile.write_text(self.password)
        try:
            if run_as:
                os.chown(pwfile, int(run_as["user"]), int(run_as["group"]))  # type: ignore[call-overload]
            result = subprocess.run(
                [str(server_bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                 f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                 "-E", "UTF8", "--locale=C"],
                capture_output=True, text=True, timeout=180, **run_as,  # type: ignore[arg-type]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PostgresError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def start(self, timeout_seconds: float = 60) -> None:
        """Start the server unless it runs already; return once ``database`` accepts connections."""
        if self.is_running():
            log.info("PostgreSQL already running at %s", self.jdbc_uri)
            return
        if port_open("127.0.0.1", self.port):
            raise PostgresError(f"port {self.port} is taken by another process; set local.postgres_port")
        run_as = self._run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._grant_to_server_user(run_as)
        self._initdb(run_as)
        with self.log_file.open("ab") as log_out:
            process = subprocess.Popen(
                [str(server_bin_dir() / "postgres"), "-D", str(self.data_dir), *server_options(self.port)],
                stdout=log_out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                **run_as,  # type: ignore[arg-type]
            )
        self.pid_file.write_text(str(process.pid))
        ready = wait_until(lambda: process.poll() is not None or self._accepts_connections(), timeout_seconds, 0.3)
        if process.poll() is not None or not ready:
            self.stop()
            raise PostgresError(
                f"PostgreSQL did not come up on 127.0.0.1:{self.port} within {timeout_seconds}s; "
                f"log {self.log_file}:\n{log_tail(self.log_file)}"
            )
        self._create_database()
        log.info("PostgreSQL up at %s (pid %s, state %s)", self.jdbc_uri, process.pid, self.state_dir)

    def connect(self, database: str | None = None):  # -> psycopg2 connection
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password,
            dbname=database or self.database, connect_timeout=5,
        )

    def _accepts_connections(self) -> bool:
        import psycopg2

        try:
            self.connect("postgres").close()
            return True
        except psycopg2.OperationalError:
            return False

    def _create_database(self) -> None:
        connection = self.connect("postgres")
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            connection.close()

    def stop(self, timeout_seconds: float = 30) -> None:
        """Stop the server by its PID; a no-op when it is down.

        SIGINT is PostgreSQL's "fast" shutdown: it ends client sessions (Spark keeps pooled catalog
        connections open for as long as it runs) and checkpoints; SIGTERM would wait for them all.
        """
        pid = read_pid(self.pid_file)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            if not wait_until(lambda: not pid_alive(pid), timeout_seconds):
                stop_pid(pid, 5)
            log.info("PostgreSQL (pid %s) stopped", pid)
        self.pid_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the local PostgreSQL server of the shared JDBC catalog.")
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    configure_logging()
    server = LocalPostgres.from_settings(load_settings())
    try:
        if args.command == "start":
            server.start()
            print(
                f"PostgreSQL running: catalog.uri={server.jdbc_uri} catalog.user={server.user}; "
                f"the password is in {server.password_file} (LAKEHOUSE__CATALOG__PASSWORD)"
            )
        elif args.command == "stop":
            server.stop()
            print("PostgreSQL stopped")
        else:
            running = server.is_running()
            print(f"PostgreSQL {'running at ' + server.jdbc_uri if running else 'not running'}")
            return 0 if running else 1
    except PostgresError as error:
        print(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
