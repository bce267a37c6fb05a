"""Start, find and stop a local emulator process by PID file, shared by the GCS and BigQuery emulators.

An emulator is started detached (its own session) so that a ``start`` from the CLI outlives the
command, and it is found again through a small JSON record in its state directory. A record whose
process is gone (crashed, rebooted, PID reused by another program) counts as "not running".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from lakehouse.local.processes import free_port, log_tail

__all__ = ["EmulatorError", "EmulatorProcess", "emulator_actions", "free_port", "log_tail", "run_cli"]

RECORD_FILE = "emulator.json"
LOG_FILE = "emulator.log"


class EmulatorError(RuntimeError):
    """An emulator could not be installed, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class EmulatorProcess:
    """A running emulator: where it answers and which process to stop."""

    pid: int
    port: int
    endpoint: str
    state_dir: Path
    marker: str  # a substring of the process's command line, so a reused PID is not mistaken for it
    grpc_port: int | None = None  # BigQuery Storage Read/Write API, where the emulator has one


def is_running(pid: int, marker: str) -> bool:
    """True if ``pid`` is alive, not a zombie, and its command line contains ``marker``."""
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and marker in cmdline


def read_record(state_dir: Path) -> EmulatorProcess | None:
    """The emulator recorded in ``state_dir`` if it is still running; a stale record is removed."""
    path = state_dir / RECORD_FILE
    try:
        raw = json.loads(path.read_text())
        record = EmulatorProcess(
            pid=int(raw["pid"]),
            port=int(raw["port"]),
            endpoint=str(raw["endpoint"]),
            state_dir=state_dir,
            marker=str(raw["marker"]),
            grpc_port=int(raw["grpc_port"]) if raw.get("grpc_port") is not None else None,
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if not is_running(record.pid, record.marker):
        path.unlink(missing_ok=True)
        return None
    return record


def write_record(record: EmulatorProcess) -> None:
    fields = asdict(record) | {"state_dir": str(record.state_dir)}
    tmp = record.state_dir / (RECORD_FILE + ".tmp")
    tmp.write_text(json.dumps(fields, indent=2) + "\n")
    tmp.replace(record.state_dir / RECORD_FILE)


def spawn(
    argv: Sequence[str], state_dir: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached, with cwd = ``state_dir`` and stdout+stderr appended to its log."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / LOG_FILE, "ab") as log:
        return subprocess.Popen(
            list(argv),
            cwd=state_dir,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_answers(
    process: subprocess.Popen[bytes], url: str, name: str, log_path: Path, timeout_s: float
) -> None:
    """Poll ``url`` until it returns HTTP 200; on exit or timeout, stop the process and raise with its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(
                f"{name} exited with code {process.returncode} before answering on {url}.\n"
                f"Last lines of {log_path}:\n{log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    terminate(process.pid, marker="", timeout_s=5)
    process.wait(timeout=5)
    raise EmulatorError(
        f"{name} did not answer on {url} within {timeout_s:.0f} s and was stopped.\n"
        f"Last lines of {log_path}:\n{log_tail(log_path)}"
    )


def _reap(pid: int) -> bool:
    """Collect ``pid`` if it is our own exited child; False while our child is still exiting."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by another command), or already collected
        return True
    return reaped == pid


def terminate(pid: int, marker: str, timeout_s: float) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it after ``timeout_s``; gone already is fine."""

    def alive() -> bool:
        # A zombie (or a child mid-exit) no longer runs but holds its PID until its parent reaps it.
        return is_running(pid, marker) or not _reap(pid)

    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        if not alive():
            return
        try:
            os.killpg(pid, sig)  # spawn() made it a session (and group) leader
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and alive():
            time.sleep(0.05)
    if alive():
        raise EmulatorError(f"process {pid} did not exit after SIGKILL")


def stop_recorded(state_dir: Path, timeout_s: float) -> bool:
    """Stop the emulator recorded in ``state_dir``; False if none was running (not an error)."""
    record = read_record(state_dir)
    if record is None:
        return False
    terminate(record.pid, record.marker, timeout_s)
    (state_dir / RECORD_FILE).unlink(missing_ok=True)
    return True


@contextmanager
def running_while(
    state_dir: Path, start: Callable[[], EmulatorProcess], stop_timeout_s: float
) -> Iterator[EmulatorProcess]:
    """Run an emulator for a ``with`` block; stop it after, unless it was already running before."""
    was_running = read_record(state_dir.resolve()) is not None
    emulator = start()
    try:
        yield emulator
    finally:
        if not was_running:
            stop_recorded(state_dir.resolve(), stop_timeout_s)


# What a CLI command of a local service returns: the line to print, and the exit code if not 0.
CliResult = str | tuple[str, int]


def run_cli(
    command: str,
    actions: Mapping[str, Callable[[], CliResult]],
    errors: tuple[type[Exception], ...] = (EmulatorError,),
) -> int:
    """Run one command of a local service's CLI (``start``, ``stop``, ``status``...): print its line
    and return its exit code; an expected failure (``errors``) is one ``error: ...`` line and exit 1,
    not a traceback, since the message already says what to do."""
    try:
        result = actions[command]()
    except errors as error:
        print(f"error: {error}")
        return 1
    line, code = result if isinstance(result, tuple) else (result, 0)
    print(line)
    return code


def emulator_actions(
    name: str,
    describe: Callable[[EmulatorProcess], str],
    start: Callable[[], EmulatorProcess],
    stop: Callable[[], bool],
    status: Callable[[], EmulatorProcess | None],
) -> dict[str, Callable[[], CliResult]]:
    """``start``, ``stop`` and ``status`` of an emulator found by its record, for ``run_cli``; a
    status of an emulator that is not running exits 3."""

    def show_status() -> CliResult:
        emulator = status()
        return describe(emulator) if emulator is not None else (f"{name} not running", 3)

    return {
        "start": lambda: describe(start()),
        "stop": lambda: f"{name} stopped" if stop() else f"{name} was not running",
        "status": show_status,
    }
