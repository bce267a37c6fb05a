"""A real, local BigQuery for tests and the demo: ``bqemulator`` (REST + gRPC, DuckDB inside) on 127.0.0.1.

bqemulator 1.4.0 needs ``duckdb==1.5.5`` while the project venv runs a newer duckdb, so it lives in its
own virtualenv (``.state/tools/bqemulator-venv``, built on first use) and runs as a subprocess. DuckDB
cannot download its ``spatial`` extension here, and bqemulator refuses to start without it, so the
extension from the PyPI package ``duckdb-extension-spatial`` is copied into a private DuckDB home
(``<venv>/duckdb-home/.duckdb/extensions/...``) that the emulator gets as ``HOME``; the user's own
``~/.duckdb`` is left alone.

Known limits (bqemulator 1.4.0): a table with ``externalDataConfiguration`` is stored as a plain
native TABLE and ``CREATE EXTERNAL TABLE`` is rejected, so ICEBERG external tables cannot be served.

CLI: ``python -m lakehouse.local.bigquery_emulator start|stop|status [--state-dir D] [--port N]``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import shutil
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.local._daemon import (
    LOG_FILE,
    EmulatorError,
    EmulatorProcess,
    emulator_actions,
    free_port,
    read_record,
    run_cli,
    running_while,
    spawn,
    stop_recorded,
    wait_until_answers,
    write_record,
)
from lakehouse.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from google.cloud import bigquery

__all__ = [
    "EmulatorError",
    "EmulatorProcess",
    "bigquery_client",
    "ensure_venv",
    "running",
    "start",
    "status",
    "stop",
]

DEFAULT_STATE_DIR = PROJECT_ROOT / ".state" / "bigquery"
DEFAULT_VENV_DIR = PROJECT_ROOT / ".state" / "tools" / "bqemulator-venv"
DEFAULT_PROJECT = "local-project"
DUCKDB_VERSION = "1.5.5"
REQUIREMENTS = (
    "bqemulator==1.4.0",
    f"duckdb=={DUCKDB_VERSION}",
    f"duckdb-extension-spatial=={DUCKDB_VERSION}",
    "numpy",
)
_INSTALLED_MARKER = "lakehouse-requirements.txt"
_PIP_TIMEOUT_S = 900


def _duckdb_platform() -> str:
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine()
    )
    return f"{platform.system().lower()}_{arch}"


def duckdb_home(venv_dir: Path) -> Path:
    """The HOME given to the emulator: DuckDB looks for extensions under ``$HOME/.duckdb``."""
    return venv_dir / "duckdb-home"


def _install_spatial_extension(venv_dir: Path) -> None:
    shipped = sorted(
        venv_dir.glob(
            f"lib/python*/site-packages/duckdb_extension_spatial/**/v{DUCKDB_VERSION}/"
            "spatial.duckdb_extension"
        )
    )
    if not shipped:
        raise EmulatorError(f"duckdb-extension-spatial=={DUCKDB_VERSION} is missing from {venv_dir}")
    target_dir = duckdb_home(venv_dir) / ".duckdb" / "extensions" / f"v{DUCKDB_VERSION}" / _duckdb_platform()
    target = target_dir / "spatial.duckdb_extension"
    if not target.is_file() or target.stat().st_size != shipped[0].stat().st_size:
        target_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped[0], target)


def install_command(python: Path) -> list[str]:
    """``REQUIREMENTS`` into ``python``'s virtualenv: by uv when the project's virtualenv has it (a
    fraction of pip's time, docs/testing.md#set-up; told, as the Makefile tells it, to trust the
    system's certificates and the local wheel folder pip is given), by pip otherwise."""
    uv = Path(sys.executable).parent / "uv"
    if not uv.is_file():
        return [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS]
    find_links = os.environ.get("PIP_FIND_LINKS")
    return [str(uv), "pip", "install", "--quiet", "--native-tls", *(["--find-links", find_links] if find_links else []),
            "--python", str(python), *REQUIREMENTS]


def ensure_venv(venv_dir: Path = DEFAULT_VENV_DIR) -> Path:
    """Build (once) the private virtualenv with the pinned bqemulator; return its ``bqemulator`` script.

    Idempotent and fast (a file read) when the pinned set is already installed; a first install takes
    seconds by uv (about a minute by pip) and needs PyPI. A lock file keeps two concurrent callers
    from both installing. ``make test`` runs it first, so no test waits on an install.
    """
    venv_dir = venv_dir.resolve()
    script = venv_dir / "bin" / "bqemulator"
    marker = venv_dir / _INSTALLED_MARKER
    wanted = "\n".join(REQUIREMENTS) + "\n"
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(venv_dir.parent / f"{venv_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (script.is_file() and marker.is_file() and marker.read_text() == wanted):
            marker.unlink(missing_ok=True)
            steps = [[sys.executable, "-m", "venv", str(venv_dir)], install_command(venv_dir / "bin" / "python")]
            for step in steps:
                done = subprocess.run(
                    step, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
                )
                if done.returncode != 0:
                    tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
                    raise EmulatorError(
                        f"installing bqemulator into {venv_dir} failed: {' '.join(step)}\n{tail}"
                    )
            marker.write_text(wanted)
        _install_spatial_extension(venv_dir)
    return script


def start(
    state_dir: Path = DEFAULT_STATE_DIR,
    port: int | None = None,
    project: str = DEFAULT_PROJECT,
    persistent: bool = False,
    venv_dir: Path = DEFAULT_VENV_DIR,
    timeout_s: float = 60.0,
) -> EmulatorProcess:
    """Start bqemulator (or return the one already running for ``state_dir``).

    ``project`` is the default project id for requests that omit one. Ephemeral (in-memory) unless
    ``persistent``, which keeps the DuckDB file under ``state_dir/data``. The gRPC (Storage API) port
    is a free one, reported as ``grpc_port``.
    """
    state_dir = state_dir.resolve()
    if (existing := read_record(state_dir)) is not None:
        return existing
    script = ensure_venv(venv_dir)
    port, grpc_port = port or free_port(), free_port()
    argv = [
        str(script),
        "start",
        "--rest-host",
        "127.0.0.1",
        "--rest-port",
        str(port),
        "--grpc-host",
        "127.0.0.1",
        "--grpc-port",
        str(grpc_port),
        "--project",
        project,
        "--log-format",
        "json",
        "--log-level",
        "info",
    ]
    if persistent:
        argv += ["--persistent", "--data-dir", str(state_dir / "data")]
        (state_dir / "data").mkdir(parents=True, exist_ok=True)
    else:
        argv += ["--ephemeral"]
    env = {**os.environ, "HOME": str(duckdb_home(venv_dir.resolve()))}
    process = spawn(argv, state_dir, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    wait_until_answers(process, f"{endpoint}/readyz", "bqemulator", state_dir / LOG_FILE, timeout_s)
    record = EmulatorProcess(
        process.pid, port, endpoint, state_dir, marker="bqemulator start", grpc_port=grpc_port
    )
    write_record(record)
    return record


def status(state_dir: Path = DEFAULT_STATE_DIR) -> EmulatorProcess | None:
    """The running emulator recorded in ``state_dir``, or None."""
    return read_record(state_dir.resolve())


def stop(state_dir: Path = DEFAULT_STATE_DIR, timeout_s: float = 15.0) -> bool:
    """Stop the emulator recorded in ``state_dir``; returns False if none was running."""
    return stop_recorded(state_dir.resolve(), timeout_s)


def running(
    state_dir: Path,
    port: int | None = None,
    project: str = DEFAULT_PROJECT,
    venv_dir: Path = DEFAULT_VENV_DIR,
) -> AbstractContextManager[EmulatorProcess]:
    """Run an emulator for the ``with`` block; stop it after, unless it was already running before."""
    return running_while(
        state_dir, lambda: start(state_dir, port=port, project=project, venv_dir=venv_dir), stop_timeout_s=15.0
    )


def bigquery_client(endpoint: str, project: str = DEFAULT_PROJECT) -> bigquery.Client:
    """An official google-cloud-bigquery client that talks to the emulator without credentials."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehouse.local.bigquery_emulator", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status", "install"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--venv-dir", type=Path, default=DEFAULT_VENV_DIR)
    parser.add_argument("--port", type=int, default=None, help="REST port; default: a free port")
    parser.add_argument("--project", default=DEFAULT_PROJECT)
    parser.add_argument("--persistent", action="store_true", help="keep tables under STATE_DIR/data")
    args = parser.parse_args(argv)
    def describe(emulator: EmulatorProcess) -> str:
        return f"bqemulator running: endpoint={emulator.endpoint} grpc_port={emulator.grpc_port} pid={emulator.pid}"

    return run_cli(args.command, {
        "install": lambda: f"bqemulator ready: {ensure_venv(args.venv_dir)}",
        **emulator_actions(
            "bqemulator", describe,
            start=lambda: start(args.state_dir, args.port, args.project, args.persistent, args.venv_dir),
            stop=lambda: stop(args.state_dir),
            status=lambda: status(args.state_dir),
        ),
    })

if __name__ == "__main__":
    raise SystemExit(main())
