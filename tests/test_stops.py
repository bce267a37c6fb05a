"""Clean stops, whichever process is signalled: every job and producer, stopped by SIGTERM or SIGINT
to the process a supervisor started, to its process group (Ctrl-C), or to the Spark job's Python
driver, stops at its next safe point, exits 0 and leaves no process behind; a second signal a
second or more later ends it at once.

Each run starts the real process (``spark-submit.sh`` for the Spark jobs) on the session's broker
and a warehouse of its own, signals it once it runs, and prints its exit code and stop time. The
runs of a group start together and are signalled together: a group costs about one run's time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lakehouse.local.kafka_broker import ensure_topics, project_topics
from lakehouse.reading.synthetic import create_tables
from lakehouse.settings import PROJECT_ROOT, load_settings
from lakehouse.tables import FEED_EVENTS
from tests.listening import beyond_loopback, listening_addresses

STOP_TIMEOUT_SECONDS = 150
READY_TIMEOUT_SECONDS = 300  # every run of a group starts together, on two cores


@dataclass(frozen=True)
class Case:
    name: str
    command: list[str]
    ready: str  # a log line that says the process is running its loop
    spark: bool = True
    env: tuple[tuple[str, str], ...] = ()


def spark_job(job: str, *args: str) -> list[str]:
    return [str(PROJECT_ROOT / "spark-submit.sh"), "--master", "local[1]", "--driver-memory", "768m", job, *args]


STREAMING_READY = "SIGTERM or SIGINT stops it between micro-batches"
CASES = {
    case.name: case for case in [
        Case("raw_trades", spark_job("raw_trades"), STREAMING_READY),
        Case("bars", spark_job("bars"), STREAMING_READY),
        Case("vendor_bars", spark_job("vendor_bars"), STREAMING_READY),
        Case("feed_events", spark_job("feed_events"), STREAMING_READY),
        Case("source_rejects", spark_job("source_rejects"), STREAMING_READY),
        Case("pipeline", spark_job("pipeline"), STREAMING_READY, env=(("LAKEHOUSE__SPARK__UI_ENABLED", "true"),)),
        Case("maintenance --interval", spark_job("maintenance", "--interval", "600", "--tables", "feed_events"),
             "INFO maintenance: "),
        Case("bigquery_sync --interval", [sys.executable, "-m", "jobs.bigquery_sync", "--interval", "600"],
             "every 600 s", spark=False),
        Case("finnhub producer", [sys.executable, "-m", "producers.finnhub", "--url", "ws://127.0.0.1:9/"],
             "finnhub producer: ", spark=False),
        Case("vnstock producer", [sys.executable, "-m", "producers.vnstock_feed", "--symbols", "VCB"],
             "vnstock producer: ", spark=False),
    ]
}
# (case, how it is signalled): every way for the raw-trades job and the producers' and sync's
# pure-Python processes; one way each for the other Spark jobs, which share the same script,
# run_until_stopped and StopRequest (each way exercises a different path through them). The runs of
# a group start together (each JVM on local[1] with a small heap) and are signalled together.
GROUPS: dict[str, list[tuple[str, str]]] = {
    "raw_trades every way; SIGINT to the drivers that handle signals before their session starts": [
        ("raw_trades", "SIGTERM to spark-submit.sh"),
        ("raw_trades", "SIGINT to its process group"),
        ("raw_trades", "SIGTERM to the Python driver"),
        ("raw_trades", "SIGTERM twice, 2 s apart"),
        # PySpark's context replaces the SIGINT handler these two install before it starts.
        ("pipeline", "SIGINT to the Python driver"),
        ("maintenance --interval", "SIGINT to the Python driver"),
    ],
    "the other streaming jobs and maintenance": [
        ("bars", "SIGTERM to spark-submit.sh"),
        ("vendor_bars", "SIGINT to its process group"),
        ("feed_events", "SIGTERM to the Python driver"),
        ("source_rejects", "SIGTERM to spark-submit.sh"),
        ("pipeline", "SIGINT to its process group"),
        ("maintenance --interval", "SIGTERM to spark-submit.sh"),
        ("maintenance --interval", "SIGTERM to the Python driver"),
    ],
    "bigquery_sync and the producers": [
        ("bigquery_sync --interval", "SIGTERM to the process"),
        ("bigquery_sync --interval", "SIGINT to its process group"),
        ("finnhub producer", "SIGTERM to the process"),
        ("finnhub producer", "SIGINT to its process group"),
        ("vnstock producer", "SIGTERM to the process"),
        ("vnstock producer", "SIGINT to its process group"),
    ],
}


def process_stats() -> dict[int, list[str]]:
    """/proc/PID/stat fields after the command name (state, ppid, pgrp, session, ...) per live pid."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
    return stats


def children(pid: int) -> list[int]:
    """Live children of ``pid`` (by parent pid: a JVM's children belong to its other threads)."""
    return [child for child, fields in process_stats().items() if int(fields[1]) == pid and fields[0] != "Z"]


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def session_members(session_id: int) -> list[int]:
    """Live processes whose session is ``session_id`` (the JVM's, which it leads)."""
    return [pid for pid, fields in process_stats().items() if int(fields[3]) == session_id and fields[0] != "Z"]


def python_driver(jvm: int) -> int | None:
    return next((pid for pid in children(jvm) if "/jobs/" in command_line(pid)), None)


def stop_env(bootstrap_servers: str, state: Path) -> dict[str, str]:
    """The environment of one run: the session's broker, a catalog, warehouse and checkpoints of its
    own (runs of a group share nothing but the broker), and endpoints that refuse connections."""
    return {
        **os.environ,
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": bootstrap_servers,
        "LAKEHOUSE__LOCAL__STATE_DIR": str(state),
        "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": str(state / "warehouse"),
        "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": str(state / "checkpoints"),
        "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "1",
        "LAKEHOUSE__SPARK__UI_ENABLED": "false",
        # Refused at once: the sync's calls fail and retry until the stop cuts the retries short.
        "LAKEHOUSE__BIGQUERY__ENDPOINT": "http://127.0.0.1:9",
        "LAKEHOUSE__VNSTOCK__BASE_URL": "http://127.0.0.1:9/api/",
        "LAKEHOUSE__FINNHUB__TOKEN": "stop-test",
    }


def wait_for_line(log_file: Path, text: str, process: subprocess.Popen, deadline: float) -> None:
    while text not in log_file.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"never saw {text!r} (exit {process.poll()}):\n{log_file.read_text()[-3000:]}")
        time.sleep(0.2)


@dataclass
class Run:
    """One started process of a group, and what the test learns about it."""

    case: Case
    way: str
    process: subprocess.Popen
    log_file: Path
    jvm: int | None = None
    driver: int | None = None
    listening: list = field(default_factory=list)
    signalled: float = 0.0
    code: int | None = None
    took: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.case.name}: {self.way}"


def start_run(case: Case, way: str, env: dict[str, str], state: Path) -> Run:
    state.mkdir(parents=True)
    if case.name == "maintenance --interval":  # maintenance needs its table to exist
        create_tables(load_settings(environ={k: v for k, v in env.items() if k.startswith("LAKEHOUSE__")}),
                      (FEED_EVENTS,))
    log_file = state / "process.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(case.command, cwd=PROJECT_ROOT, env={**env, **dict(case.env)}, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return Run(case, way, process, log_file)


def signal_run(run: Run) -> threading.Timer | None:
    """Send ``run.way``'s signal; for a second signal later, return the timer that sends it."""
    run.signalled = time.monotonic()
    if run.way in ("SIGTERM to spark-submit.sh", "SIGTERM to the process", "SIGTERM twice, 2 s apart"):
        os.kill(run.process.pid, signal.SIGTERM)
    elif run.way == "SIGINT to its process group":
        os.killpg(run.process.pid, signal.SIGINT)
    elif run.way == "SIGTERM to the Python driver":
        os.kill(run.driver, signal.SIGTERM)
    elif run.way == "SIGINT to the Python driver":
        os.kill(run.driver, signal.SIGINT)
    if run.way == "SIGTERM twice, 2 s apart":
        again = threading.Timer(2.0, lambda: run.process.poll() is None and os.kill(run.process.pid, signal.SIGTERM))
        again.start()
        return again
    return None


def kill_leftovers(run: Run) -> None:
    if run.process.poll() is None:
        os.killpg(run.process.pid, signal.SIGKILL)
        run.process.wait(10)
    if run.jvm is not None and session_members(run.jvm):
        os.killpg(run.jvm, signal.SIGKILL)


def assert_stopped_cleanly(run: Run) -> None:
    output = run.log_file.read_text(errors="replace")
    beyond = beyond_loopback(run.listening)
    assert not beyond, f"{run.label}: listening beyond loopback: {beyond}"
    if dict(run.case.env).get("LAKEHOUSE__SPARK__UI_ENABLED") == "true":
        assert run.listening, f"{run.label}: the web UI is on: it must listen (on loopback)"
    if run.way == "SIGTERM twice, 2 s apart":
        assert run.code in (0, 128 + signal.SIGTERM), f"{run.label}:\n{output[-3000:]}"
    else:
        assert run.code == 0, f"{run.label}:\n{output[-3000:]}"
        if run.case.spark and run.case.name != "maintenance --interval":
            assert "every query stopped" in output, f"{run.label}:\n{output[-3000:]}"
    if run.jvm is not None:
        deadline = time.monotonic() + 10
        while session_members(run.jvm) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [command_line(p)[:120] for p in session_members(run.jvm)]
        assert not left, f"{run.label}: left behind: {left}"
        driver_stat = Path(f"/proc/{run.driver}/stat")
        assert not driver_stat.exists() or "Z" in driver_stat.read_text().split()[2], f"{run.label}: driver lives"


@pytest.mark.parametrize("group", list(GROUPS))
def test_a_stop_signal_stops_at_a_safe_point_exits_zero_and_leaves_nothing(
    group: str, kafka_broker, tmp_path: Path
) -> None:
    # The topics exist before the jobs start, as the demo creates them: jobs that start together
    # would otherwise race the broker's auto-creation against the pipeline's own.
    defaults = load_settings(environ={})
    ensure_topics(kafka_broker.bootstrap_servers, project_topics(defaults), defaults.kafka.partitions)
    runs = [start_run(CASES[name], way, stop_env(kafka_broker.bootstrap_servers, tmp_path / f"run-{index}"),
                      tmp_path / f"run-{index}")
            for index, (name, way) in enumerate(GROUPS[group])]
    timers = []
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for run in runs:
            wait_for_line(run.log_file, run.case.ready, run.process, deadline)
            if run.case.spark:
                [run.jvm] = children(run.process.pid)
                run.driver = python_driver(run.jvm)
                assert run.driver is not None, f"{run.label}: no Python driver below the spark-submit JVM"
            run.listening = listening_addresses([run.process.pid, *(session_members(run.jvm) if run.jvm else [])])
        timers = [timer for run in runs if (timer := signal_run(run)) is not None]
        for run in runs:
            run.code = run.process.wait(timeout=max(1.0, run.signalled + STOP_TIMEOUT_SECONDS - time.monotonic()))
            run.took = time.monotonic() - run.signalled
    finally:
        for timer in timers:
            timer.cancel()
        for run in runs:
            kill_leftovers(run)
    for run in runs:
        print(f"\nSTOP | {run.case.name} | {run.way} | exit {run.code} | {run.took:.1f} s | "
              f"listening on {sorted(run.listening)}")
    for run in runs:
        assert_stopped_cleanly(run)
