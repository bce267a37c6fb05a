"""The project's wrapper of the local BigQuery emulator (lakehouse.local.bigquery_emulator): it
starts bqemulator, builds a client for it, runs one emulator per state directory and stops it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import bigquery

from lakehouse.local import bigquery_emulator
from lakehouse.local._daemon import EmulatorProcess

pytestmark = pytest.mark.integration  # its tests start the emulator or build its virtualenv in their own body

PROJECT = "lakehouse-test"


def _emulator_processes(port: int) -> list[str]:
    pattern = f"bqemulator start --rest-host 127.0.0.1 --rest-port {port} "
    return subprocess.run(
        ["pgrep", "-af", pattern], capture_output=True, text=True, check=False
    ).stdout.splitlines()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with bigquery_emulator.running(tmp_path_factory.mktemp("bigquery"), project=PROJECT) as started:
        yield started
    assert _emulator_processes(started.port) == []


@pytest.fixture(scope="module")
def client(emulator: EmulatorProcess) -> bigquery.Client:
    return bigquery_emulator.bigquery_client(emulator.endpoint, project=PROJECT)


@pytest.fixture(scope="module")
def dataset(client: bigquery.Client) -> bigquery.Dataset:
    return client.create_dataset(f"{PROJECT}.market")


def test_the_emulator_it_starts_answers_the_client_it_builds(
    client: bigquery.Client, dataset: bigquery.Dataset
) -> None:
    """``running`` starts bqemulator and ``bigquery_client`` talks to it: a dataset made through the
    client is listed back (and the module's fixture checks that no emulator process outlives
    ``running``). What bqemulator does with ICEBERG external tables is bqemulator's behaviour, not
    ours: docs/gcp.md records it, and the sync's requests are checked in test_bigquery_sync_requests."""
    assert [listed.dataset_id for listed in client.list_datasets()] == [dataset.dataset_id] == ["market"]


def test_cli_start_twice_runs_one_emulator_and_stop_twice_is_fine(tmp_path: Path) -> None:
    state = ["--state-dir", str(tmp_path), "--project", PROJECT]
    assert bigquery_emulator.main(["start", *state]) == 0
    record = bigquery_emulator.status(tmp_path)
    assert record is not None
    try:
        assert bigquery_emulator.main(["start", *state]) == 0
        assert len(_emulator_processes(record.port)) == 1
        assert bigquery_emulator.main(["status", *state]) == 0
        datasets = bigquery_emulator.bigquery_client(record.endpoint, PROJECT).list_datasets()
        assert list(datasets) == []
    finally:
        assert bigquery_emulator.main(["stop", *state]) == 0
    assert bigquery_emulator.main(["stop", *state]) == 0
    assert bigquery_emulator.main(["status", *state]) == 3
    assert _emulator_processes(record.port) == []


def test_private_venv_is_reused_without_reinstalling() -> None:
    script = bigquery_emulator.ensure_venv()
    before = script.stat().st_mtime_ns
    assert bigquery_emulator.ensure_venv() == script
    assert script.stat().st_mtime_ns == before
    extension = bigquery_emulator.duckdb_home(script.parent.parent) / ".duckdb" / "extensions" / "v1.5.5"
    assert list(extension.glob("*/spatial.duckdb_extension"))
