"""Small helpers for the local stack's background processes: PID files, ports, waiting."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(host: str, port: int, timeout_seconds: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_seconds):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; reap it if it is ours so it reads as dead.
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        return reaped == 0
    except ChildProcessError:
        return True


def read_pid(pid_file: Path) -> int | None:
    """The PID recorded in ``pid_file`` if that process is still alive, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def wait_until(condition: Callable[[], bool], timeout_seconds: float, interval_seconds: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_seconds)
    return condition()


def stop_pid(pid: int, timeout_seconds: float) -> None:
    """SIGTERM the process (group), wait for it to exit, SIGKILL it if it does not."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        if wait_until(lambda: not pid_alive(pid), timeout_seconds if sig == signal.SIGTERM else 10):
            return


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log written at {path})"


def submit_job(job: str, env: dict[str, str], log_file: Path, *spark_options: str,
               master: str = "local[2]") -> subprocess.Popen:
    """``./spark-submit.sh --master MASTER [spark_options] JOB`` in a session of its own, its output
    appended to ``log_file``: a job run as an operator runs it (tests and benchmarks)."""
    from lakehouse.settings import PROJECT_ROOT

    with log_file.open("ab") as log:
        return subprocess.Popen(
            [str(PROJECT_ROOT / "spark-submit.sh"), "--master", master, *spark_options, job],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc: the JVM ``spark-submit.sh`` starts runs in a session of
    its own, so a process-group signal to the script does not reach it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def kill_process_tree(process: subprocess.Popen) -> None:
    """SIGKILL to a process and everything below it at once, as a crashed machine would (for a job:
    the script, the JVM and the Python driver)."""
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(30)


def terminate_group(process: subprocess.Popen, timeout_seconds: float = 60) -> None:
    """SIGTERM to the process group of a process started in a session of its own, then wait."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout_seconds)
