"""The local GCS emulator (fake-gcs-server) serves the official google-cloud-storage client."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse.local import gcs_emulator
from lakehouse.local._daemon import EmulatorError, EmulatorProcess

pytestmark = pytest.mark.integration  # its tests start the emulator in their own body



def _processes_listening_on(port: int) -> list[str]:
    found = subprocess.run(
        ["pgrep", "-af", f"fake-gcs-server.* -port {port} "], capture_output=True, text=True, check=False
    )
    return found.stdout.splitlines()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    state_dir = tmp_path_factory.mktemp("gcs")
    with gcs_emulator.running(state_dir) as started:
        yield started
    assert _processes_listening_on(started.port) == []


def test_bucket_object_round_trip_through_official_client(emulator: EmulatorProcess) -> None:
    client = gcs_emulator.storage_client(emulator.endpoint)
    bucket = client.create_bucket("market-data")
    assert "market-data" in [b.name for b in client.list_buckets()]

    blob = bucket.blob("trades/AAPL/2026-01-02.json")
    blob.upload_from_string(b'{"symbol":"AAPL","price":187.5}', content_type="application/json")
    bucket.blob("trades/MSFT/2026-01-02.json").upload_from_string(b"{}")

    listed = sorted(b.name for b in client.list_blobs("market-data", prefix="trades/"))
    assert listed == ["trades/AAPL/2026-01-02.json", "trades/MSFT/2026-01-02.json"]
    assert (
        bucket.blob("trades/AAPL/2026-01-02.json").download_as_bytes() == b'{"symbol":"AAPL","price":187.5}'
    )

    blob.delete()
    assert [b.name for b in client.list_blobs("market-data")] == ["trades/MSFT/2026-01-02.json"]
    assert not bucket.blob("trades/AAPL/2026-01-02.json").exists()


def test_multi_megabyte_resumable_upload_reads_back_identical(emulator: EmulatorProcess) -> None:
    client = gcs_emulator.storage_client(emulator.endpoint)
    bucket = client.create_bucket("big-objects")
    payload = bytes(range(256)) * (9 * 4096)  # 9 MiB
    blob = bucket.blob("parquet/part-0.parquet", chunk_size=4 * 1024 * 1024)  # forces a resumable upload
    blob.upload_from_string(payload)
    assert bucket.blob("parquet/part-0.parquet").download_as_bytes() == payload


def test_starting_twice_returns_the_running_emulator(emulator: EmulatorProcess) -> None:
    again = gcs_emulator.start(emulator.state_dir)
    assert (again.pid, again.endpoint) == (emulator.pid, emulator.endpoint)
    assert len(_processes_listening_on(emulator.port)) == 1


def test_cli_start_status_stop_keeps_one_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = ["--state-dir", str(tmp_path)]
    assert gcs_emulator.main(["start", *state]) == 0
    assert gcs_emulator.main(["start", *state]) == 0
    record = gcs_emulator.status(tmp_path)
    assert record is not None
    assert len(_processes_listening_on(record.port)) == 1
    assert gcs_emulator.main(["status", *state]) == 0
    assert gcs_emulator.main(["stop", *state]) == 0
    assert gcs_emulator.main(["stop", *state]) == 0  # stopping when down is not an error
    assert gcs_emulator.main(["status", *state]) == 3
    assert _processes_listening_on(record.port) == []
    out = capsys.readouterr().out
    assert "was not running" in out and "not running" in out.splitlines()[-1]


def test_filesystem_backend_keeps_objects_across_restart(tmp_path: Path) -> None:
    with gcs_emulator.running(tmp_path, backend="filesystem") as first:
        gcs_emulator.storage_client(first.endpoint).create_bucket("kept").blob("a.txt").upload_from_string(
            b"x"
        )
    with gcs_emulator.running(tmp_path, backend="filesystem") as second:
        client = gcs_emulator.storage_client(second.endpoint)
        assert client.bucket("kept").blob("a.txt").download_as_bytes() == b"x"


def test_port_already_taken_fails_fast_with_the_emulator_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmulatorError, match=r"exited with code .*(?s:.*)address already in use"):
            gcs_emulator.start(tmp_path, port=port, timeout_s=10)
    assert gcs_emulator.status(tmp_path) is None
