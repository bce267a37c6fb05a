"""Clean stops, whichever process is signalled: every job and producer, stopped by SIGTERM or SIGINT
to the process a supervisor started, to its process group (Ctrl-C), or to the Spark job's Python
driver, stops at its next safe point, exits 0 and leaves no process behind; a second signal a
second or more later ends it at once.

Each case starts the real process (``spark-submit.sh`` for the Spark jobs) on the session's broker
and a warehouse of its own, signals it once it runs, and prints its exit code and stop time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lakehouse.settings import PROJECT_ROOT
from tests.listening import beyond_loopback, listening_addresses

STOP_TIMEOUT_SECONDS = 150


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
# run_until_stopped and StopRequest (each way exercises a different path through them).
RUNS = [
    ("raw_trades", "SIGTERM to spark-submit.sh"),
    ("raw_trades", "SIGINT to its process group"),
    ("raw_trades", "SIGTERM to the Python driver"),
    ("raw_trades", "SIGTERM twice, 2 s apart"),
    ("bars", "SIGTERM to spark-submit.sh"),
    ("vendor_bars", "SIGINT to its process group"),
    ("feed_events", "SIGTERM to the Python driver"),
    ("source_rejects", "SIGTERM to spark-submit.sh"),
    ("pipeline", "SIGINT to its process group"),
    ("maintenance --interval", "SIGTERM to spark-submit.sh"),
    ("maintenance --interval", "SIGTERM to the Python driver"),
    ("bigquery_sync --interval", "SIGTERM to the process"),
    ("bigquery_sync --interval", "SIGINT to its process group"),
    ("finnhub producer", "SIGTERM to the process"),
    ("finnhub producer", "SIGINT to its process group"),
    ("vnstock producer", "SIGTERM to the process"),
    ("vnstock producer", "SIGINT to its process group"),
]


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


@pytest.fixture(scope="module")
def stop_env(kafka_broker, tmp_path_factory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("stops")
    return {
        **os.environ,
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "LAKEHOUSE__LOCAL__STATE_DIR": str(state),
        "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": str(state / "warehouse"),
        "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": str(state / "checkpoints"),
        "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "1",
        "LAKEHOUSE__SPARK__UI_ENABLED": "false",
        "LAKEHOUSE__BIGQUERY__ENDPOINT": "http://127.0.0.1:9",
        "LAKEHOUSE__VNSTOCK__BASE_URL": "http://127.0.0.1:9/api/",
        "LAKEHOUSE__FINNHUB__TOKEN": "stop-test",
    }


def wait_for_line(log_file: Path, text: str, process: subprocess.Popen, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while text not in log_file.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"never saw {text!r} (exit {process.poll()}):\n{log_file.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.mark.parametrize(("case_name", "way"), RUNS, ids=[f"{c}: {w}" for c, w in RUNS])
def test_a_stop_signal_stops_at_a_safe_point_exits_zero_and_leaves_nothing(
    case_name: str, way: str, stop_env: dict[str, str], tmp_path: Path
) -> None:
    case = CASES[case_name]
    log_file = tmp_path / "process.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(case.command, cwd=PROJECT_ROOT, env={**stop_env, **dict(case.env)}, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    jvm = driver = None
    try:
        wait_for_line(log_file, case.ready, process, timeout_seconds=240)
        if case.spark:
            [jvm] = children(process.pid)
            driver = python_driver(jvm)
            assert driver is not None, "no Python driver below the spark-submit JVM"
        listening = listening_addresses([process.pid, *(session_members(jvm) if jvm else [])])
        signalled = time.monotonic()
        if way == "SIGTERM to spark-submit.sh" or way == "SIGTERM to the process":
            os.kill(process.pid, signal.SIGTERM)
        elif way == "SIGINT to its process group":
            os.killpg(process.pid, signal.SIGINT)
        elif way == "SIGTERM to the Python driver":
            os.kill(driver, signal.SIGTERM)
        elif way == "SIGTERM twice, 2 s apart":
            os.kill(process.pid, signal.SIGTERM)
            time.sleep(2)
            os.kill(process.pid, signal.SIGTERM)
        code = process.wait(timeout=STOP_TIMEOUT_SECONDS)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        if jvm is not None and session_members(jvm):
            os.killpg(jvm, signal.SIGKILL)
    output = log_file.read_text(errors="replace")
    print(f"\nSTOP | {case_name} | {way} | exit {code} | {took:.1f} s | listening on {sorted(listening)}")
    assert not beyond_loopback(listening), f"listening beyond loopback: {beyond_loopback(listening)}"
    if dict(case.env).get("LAKEHOUSE__SPARK__UI_ENABLED") == "true":
        assert listening, "the web UI is on: it must listen (on loopback)"
    if way == "SIGTERM twice, 2 s apart":
        assert code in (0, 128 + signal.SIGTERM), output[-3000:]
    else:
        assert code == 0, output[-3000:]
        if case.spark and case_name != "maintenance --interval":
            assert "every query stopped" in output, output[-3000:]
    if jvm is not None:
        deadline = time.monotonic() + 10
        while session_members(jvm) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not session_members(jvm), f"left behind: {[command_line(p)[:120] for p in session_members(jvm)]}"
        assert not Path(f"/proc/{driver}").exists() or "Z" in Path(f"/proc/{driver}/stat").read_text().split()[2]
