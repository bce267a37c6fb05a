"""A Spark standalone cluster on loopback: one master and two workers, each a JVM of its own.

What Dataproc/YARN does to a job, on one machine: ``./spark-submit.sh --master spark://127.0.0.1:PORT``
runs the driver here and the tasks in executor JVMs that the workers launch, so the job's Python
code, jars and settings must travel to them (``--py-files``, ``--jars``, ``spark.executorEnv``)
instead of being found in the driver's process. The daemons come from the pyspark install
(``spark-class``), bind to 127.0.0.1 only, and keep small heaps; each worker offers few cores and
little memory, so the executors of one application fit on a shared 2-core machine.

Each daemon's PID, ports and log live under ``STATE_DIR/master`` and ``STATE_DIR/worker-N`` (the
records of ``lakehouse.local._daemon``), so ``status``/``stop`` find a cluster another command started.

CLI: ``python -m lakehouse.local.spark_cluster start|stop|status [--state-dir D] [--port N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lakehouse.local._daemon import (
    LOG_FILE,
    EmulatorError,
    EmulatorProcess,
    free_port,
    log_tail,
    read_record,
    run_cli,
    spawn,
    stop_recorded,
    wait_until_answers,
    write_record,
)
from lakehouse.local.processes import pid_alive, wait_until
from lakehouse.logs import configure_logging
from lakehouse.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
DEFAULT_STATE_DIR = PROJECT_ROOT / ".state" / "spark-cluster"
DEFAULT_MASTER_PORT = 17077


class SparkClusterError(EmulatorError):
    """The cluster could not be started or reached; the message says why and where the log is."""


def spark_home() -> Path:
    """The Spark distribution inside the pyspark package (what ``make setup`` installed)."""
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").is_file():
        raise SparkClusterError(f"no bin/spark-class in {home}: reinstall pyspark (`make setup`)")
    return home


@dataclass(frozen=True)
class WorkerShape:
    """What one worker offers to executors: cores and memory (MiB); its own heap is ``daemon_heap_mb``."""

    cores: int = 1
    memory_mb: int = 1024


class LocalSparkCluster:
    """Master + ``workers`` workers on 127.0.0.1; start is idempotent, stop a no-op when down."""

    def __init__(
        self,
        state_dir: Path = DEFAULT_STATE_DIR,
        master_port: int = DEFAULT_MASTER_PORT,
        workers: int = 2,
        shape: WorkerShape = WorkerShape(),
        daemon_heap_mb: int = 256,
    ):
        self.state_dir = state_dir.resolve()
        self.master_port = master_port
        self.workers = workers
        self.shape = shape
        self.daemon_heap_mb = daemon_heap_mb

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def _dir(self, daemon: str) -> Path:
        return self.state_dir / daemon

    def worker_names(self) -> list[str]:
        return [f"worker-{n + 1}" for n in range(self.workers)]

    def _environment(self, daemon: str) -> dict[str, str]:
        home = spark_home()
        return {
            **os.environ,
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": "127.0.0.1",  # every listener (RPC, block manager, UI) on loopback
            "SPARK_DAEMON_MEMORY": f"{self.daemon_heap_mb}m",
            "SPARK_WORKER_DIR": str(self._dir(daemon) / "work"),
            "SPARK_LOG_DIR": str(self._dir(daemon)),
        }

    def master_record(self) -> EmulatorProcess | None:
        return read_record(self._dir("master"))

    def _master_status(self, ui: str) -> dict:
        with urllib.request.urlopen(f"{ui}/json/", timeout=5) as response:
            return json.loads(response.read())

    def alive_workers(self) -> int:
        """Workers the master counts as ALIVE (0 when the master is down)."""
        master = self.master_record()
        if master is None:
            return 0
        try:
            return int(self._master_status(master.endpoint).get("aliveworkers", 0))
        except (urllib.error.URLError, OSError, ValueError):
            return 0

    def start(self, timeout_s: float = 120) -> None:
        """Start the master and the workers not running yet; return once every worker is ALIVE."""
        home = spark_home()
        spark_class = str(home / "bin" / "spark-class")
        master = self.master_record()
        if master is None:
            ui_port = free_port()
            argv = [spark_class, MASTER_CLASS, "--host", "127.0.0.1", "--port", str(self.master_port),
                    "--webui-port", str(ui_port)]
            process = spawn(argv, self._dir("master"), self._environment("master"))
            ui = f"http://127.0.0.1:{ui_port}"
            wait_until_answers(process, f"{ui}/json/", "Spark master", self._dir("master") / LOG_FILE, timeout_s)
            master = EmulatorProcess(process.pid, self.master_port, ui, self._dir("master"), marker=MASTER_CLASS)
            write_record(master)
            log.info("Spark master up at %s (UI %s, pid %d)", self.master_url, ui, process.pid)
        # The workers start together: each JVM's start-up is seconds of CPU, and they do not depend on
        # each other, only on the master.
        launched = [(name, self._launch_worker(name)) for name in self.worker_names()]
        for name, started in launched:
            if started is not None:
                self._wait_for_worker(name, *started, timeout_s=timeout_s)
        if not wait_until(lambda: self.alive_workers() >= self.workers, timeout_s, interval_seconds=0.5):
            raise SparkClusterError(
                f"only {self.alive_workers()} of {self.workers} workers registered with {self.master_url} "
                f"within {timeout_s:.0f} s; master log:\n{log_tail(self._dir('master') / LOG_FILE)}"
            )

    def start_worker(self, name: str, timeout_s: float = 120) -> None:
        """Start one worker (again, after ``kill_worker``) unless it runs; return once the master
        counts it ALIVE."""
        alive_before = self.alive_workers()
        started = self._launch_worker(name)
        if started is None:
            return
        self._wait_for_worker(name, *started, timeout_s=timeout_s)
        if not wait_until(lambda: self.alive_workers() > alive_before, timeout_s, interval_seconds=0.5):
            raise SparkClusterError(f"Spark {name} did not register with {self.master_url} in {timeout_s:.0f} s")

    def _launch_worker(self, name: str) -> tuple[subprocess.Popen[bytes], int] | None:
        directory = self._dir(name)
        if read_record(directory) is not None:
            return None
        ui_port = free_port()
        argv = [
            str(spark_home() / "bin" / "spark-class"), WORKER_CLASS, "--host", "127.0.0.1",
            "--cores", str(self.shape.cores), "--memory", f"{self.shape.memory_mb}m",
            "--webui-port", str(ui_port), "--work-dir", str(directory / "work"), self.master_url,
        ]
        return spawn(argv, directory, self._environment(name)), ui_port

    def _wait_for_worker(self, name: str, process: subprocess.Popen[bytes], ui_port: int, timeout_s: float) -> None:
        directory = self._dir(name)
        ui = f"http://127.0.0.1:{ui_port}"
        wait_until_answers(process, f"{ui}/json/", f"Spark {name}", directory / LOG_FILE, timeout_s)
        write_record(EmulatorProcess(process.pid, ui_port, ui, directory, marker=WORKER_CLASS))
        log.info("Spark %s up (UI %s, pid %d)", name, ui, process.pid)

    def kill_worker(self, name: str) -> int:
        """SIGKILL a worker and the executors it launched (its process group): a node lost at once."""
        record = read_record(self._dir(name))
        if record is None:
            raise SparkClusterError(f"Spark {name} is not running")
        os.killpg(record.pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(record.pid), 10)
        (self._dir(name) / "emulator.json").unlink(missing_ok=True)
        log.warning("Spark %s (pid %d) killed", name, record.pid)
        return record.pid

    def stop(self, timeout_s: float = 30) -> None:
        """Stop the workers (and their executors), then the master; a no-op for daemons already down."""
        for name in reversed(self.worker_names()):
            stop_recorded(self._dir(name), timeout_s)
        stop_recorded(self._dir("master"), timeout_s)

    def describe(self) -> str:
        master = self.master_record()
        if master is None:
            return "Spark cluster not running"
        return (f"Spark cluster running: master {self.master_url} (UI {master.endpoint}), "
                f"{self.alive_workers()} of {self.workers} workers alive")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehouse.local.spark_cluster", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--port", type=int, default=DEFAULT_MASTER_PORT, help="the master's RPC port")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    configure_logging()
    cluster = LocalSparkCluster(args.state_dir, args.port, args.workers)
    def start_cluster() -> str:
        started = time.monotonic()
        cluster.start()
        return f"{cluster.describe()} (started in {time.monotonic() - started:.1f} s)"

    def stop_cluster() -> str:
        cluster.stop()
        return "Spark cluster stopped"

    return run_cli(args.command, {
        "start": start_cluster,
        "stop": stop_cluster,
        "status": lambda: (cluster.describe(), 0 if cluster.alive_workers() == cluster.workers else 3),
    })

if __name__ == "__main__":
    raise SystemExit(main())
