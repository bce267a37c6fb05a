"""`make demo` / `make demo-cluster`: the real pipeline on a local topology, end to end, then the latest bars.

Starts the topology (``lakehouse.local.topology``: embedded, or the cluster of three brokers, a Spark
master and two workers, a gs:// warehouse on the GCS emulator), then, as separate processes given
the topology's settings: the Finnhub-protocol replay server and the Finnhub producer, the
vnstock-protocol server and a vnstock backfill, and the streaming pipeline
(``./spark-submit.sh [--master ...] pipeline``). Waits until 1-minute bars are readable, lets them
grow, stops every process it started (the pipeline's clean stop catches its bars up with the trades
it stored), prints the latest bars per symbol through pyiceberg, and stops the topology; it stops
everything also when interrupted (SIGINT/SIGTERM: ``lakehouse.shutdown``).

This module only launches processes; it imports neither producers nor jobs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.local.processes import free_port, log_tail, port_open, stop_pid, wait_until
from lakehouse.local.topology import ClusterTopology, EmbeddedTopology, Topology
from lakehouse.logs import configure_logging
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings
from lakehouse.shutdown import StopRequest
from lakehouse.tables import BARS_1M, QUARANTINE, TRADES, VENDOR_BARS

log = logging.getLogger("demo")


class Processes:
    """The processes the demo started, each with its own log, stopped in reverse order."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None):
        self.log_dir = log_dir
        self.env = env or {}  # the topology's settings, for every process
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as out:
            process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env={**os.environ, **self.env, **(env or {})}, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.started.append((name, process))
        log.info("started %s (pid %s), log %s", name, process.pid, self.log_dir / f"{name}.log")
        return process

    def check_alive(self, may_finish: tuple[str, ...] = ()) -> None:
        for name, process in self.started:
            if process.poll() is not None and not (name in may_finish and process.returncode == 0):
                log_file = self.log_dir / f"{name}.log"
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_tail(log_file)}")

    def stop_all(self) -> None:
        """Stop what is still running (a second call stops nothing)."""
        for name, process in reversed(self.started):
            if process.poll() is None:
                # A Spark driver stops its queries between micro-batches on SIGTERM; signal it alone
                # first, so the JVM is not torn down under a running batch.
                for driver in python_descendants(process.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(driver, signal.SIGTERM)
                if python_descendants(process.pid):
                    wait_until(lambda p=process: p.poll() is not None, 60)
                stop_pid(process.pid, timeout_seconds=60)
                log.info("stopped %s", name)


def python_descendants(pid: int) -> list[int]:
    """PIDs of Python processes below ``pid`` (the driver that spark-submit's JVM launched)."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children_file = Path(f"/proc/{parent}/task/{parent}/children")
        try:
            children = [int(c) for c in children_file.read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        for child in children:
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0]
            except FileNotFoundError:
                continue
            if b"python" in command:
                found.append(child)
            frontier.append(child)
    return found


def count_rows(settings: Settings, table) -> int:
    """Row count from the current snapshot's summary: metadata only, no data file is read."""
    try:
        snapshot = load_catalog(settings).load_table(table_identifier(settings, table)).current_snapshot()
    except Exception:  # the table may not exist until the pipeline's first batch
        return 0
    return int(snapshot.summary["total-records"]) if snapshot and snapshot.summary else 0


def latest_bars(settings: Settings, per_symbol: int = 3) -> str:
    bars = load_catalog(settings).load_table(table_identifier(settings, BARS_1M)).scan().to_pandas()
    if bars.empty:
        return "(no bars yet)"
    latest = bars.sort_values("window_start").groupby("symbol").tail(per_symbol)
    columns = ["symbol", "window_start", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
    return latest[columns].sort_values(["symbol", "window_start"]).to_string(index=False)


def run(topology: Topology, seconds: float, rate: float, stop: StopRequest) -> None:
    python = sys.executable
    started_at = time.monotonic()
    try:
        topology.start()
        up_s = time.monotonic() - started_at
        log.info("%s topology up in %.1f s", topology.name, up_s)
        if not stop.is_set():
            stream_and_show(topology, seconds, rate, stop, python)
    finally:
        down_at = time.monotonic()
        topology.stop()
        log.info("%s topology down in %.1f s", topology.name, time.monotonic() - down_at)


def stream_and_show(topology: Topology, seconds: float, rate: float, stop: StopRequest, python: str) -> None:
    settings = topology.settings()
    processes = Processes(settings.state_dir / "demo" / "logs", topology.environment())
    try:
        finnhub_port, vnstock_port = free_port(), free_port()
        processes.start("finnhub-server", [python, "-m", "producers.simulators.finnhub_server",
                                           "--port", str(finnhub_port), "--rate", str(rate), "--live"])
        processes.start("vnstock-server", [python, "-m", "producers.simulators.vnstock_server",
                                           "--port", str(vnstock_port)])
        wait_until(lambda: port_open("127.0.0.1", finnhub_port) and port_open("127.0.0.1", vnstock_port), 30)
        processes.start("finnhub-producer", [python, "-m", "producers.finnhub"], env={
            "LAKEHOUSE__FINNHUB__URL": f"ws://127.0.0.1:{finnhub_port}",
            "LAKEHOUSE__FINNHUB__TOKEN": "demo-token",
        })
        last_week = date.today() - timedelta(days=7)
        processes.start("vnstock-backfill", [
            python, "-m", "producers.vnstock_feed", "--backfill", f"{last_week}:{date.today()}",
        ], env={"LAKEHOUSE__VNSTOCK__BASE_URL": f"http://127.0.0.1:{vnstock_port}/api/"})
        processes.start("pipeline", [str(PROJECT_ROOT / "spark-submit.sh"), *topology.spark_submit_options(),
                                     "pipeline"])

        started = time.monotonic()
        bars_before = count_rows(settings, BARS_1M)  # a demo run before this one left its bars
        first_bars_at = None
        while time.monotonic() - started < seconds or first_bars_at is None:
            processes.check_alive(may_finish=("vnstock-backfill",))
            if stop.wait(10):
                log.info("stop requested: stopping the pipeline and the topology")
                return
            trades, bars = count_rows(settings, TRADES), count_rows(settings, BARS_1M)
            if bars > bars_before and first_bars_at is None:
                first_bars_at = time.monotonic() - started
                log.info("first bars readable %.0f s after start", first_bars_at)
            log.info("%.0f s: %s trades, %s bars, %s vendor bars", time.monotonic() - started, trades, bars,
                     count_rows(settings, VENDOR_BARS))
            if first_bars_at is None and time.monotonic() - started > 600:
                raise RuntimeError(f"no bars after 10 minutes; see logs in {processes.log_dir}")
        # Stopped first: the pipeline's clean stop brings the bars up to its last stored trades, so
        # what is printed is what stays, and the bars agree with the trades.
        processes.stop_all()
        print(f"\nLatest 1-minute bars per symbol (UTC), read back through pyiceberg after the stop, "
              f"at {datetime.now(UTC):%H:%M:%S}:")
        print(latest_bars(settings))
        print(f"\ntrades: {count_rows(settings, TRADES)}, bars: {count_rows(settings, BARS_1M)}, "
              f"vendor bars: {count_rows(settings, VENDOR_BARS)}, quarantined: {count_rows(settings, QUARANTINE)}")
        print(f"topology: {topology.name}  catalog: {settings.catalog.uri}  warehouse: {settings.catalog.warehouse}  "
              f"logs: {processes.log_dir}")
        print("To look at it in a browser: `make dashboard`, then open http://127.0.0.1:8050/")
    finally:
        processes.stop_all()


def topology_named(name: str, settings: Settings, catalog: str = "jdbc") -> Topology:
    if name == "cluster":
        return ClusterTopology(settings, settings.state_dir / "cluster", rest=catalog == "rest")
    return EmbeddedTopology(settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the pipeline end to end on replayed market data.")
    parser.add_argument("--topology", choices=["embedded", "cluster"], default="embedded",
                        help="embedded: one broker, local[*] (default); cluster: 3 brokers, a Spark master "
                             "and 2 workers, a gs:// warehouse on the GCS emulator")
    parser.add_argument("--catalog", choices=["jdbc", "rest"], default="jdbc",
                        help="cluster topology only: the PostgreSQL JDBC catalog (default) or Iceberg's REST "
                             "catalog server in front of it")
    parser.add_argument("--seconds", type=float, default=150, help="how long to let data flow (default 150)")
    parser.add_argument("--rate", type=float, default=200, help="replayed trades per second (default 200)")
    args = parser.parse_args(argv)
    configure_logging()
    stop = StopRequest("demo").install()
    started = time.monotonic()
    run(topology_named(args.topology, load_settings(), args.catalog), args.seconds, args.rate, stop)
    print(f"demo on the {args.topology} topology: {time.monotonic() - started:.0f} s from start to all stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
