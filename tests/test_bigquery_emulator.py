"""The local BigQuery emulator (bqemulator) serves the official google-cloud-bigquery client.

The ICEBERG external-table tests pin down what the emulator does with such requests, so the sync job
knows what a local run can and cannot prove: the request is accepted, but the external configuration
is dropped and the table is stored (and returned) as an empty native TABLE.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.api_core.exceptions import BadRequest
from google.cloud import bigquery

from lakehouse.local import bigquery_emulator
from lakehouse.local._daemon import EmulatorProcess

pytestmark = pytest.mark.integration  # its tests start the emulator or build its virtualenv in their own body

PROJECT = "lakehouse-test"
METADATA_URI = "gs://market-lake/warehouse/market/trades/metadata/00003-6f1c.metadata.json"


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


def _iceberg_external_table(table_id: str, uri: str = METADATA_URI) -> bigquery.Table:
    table = bigquery.Table(table_id)
    config = bigquery.ExternalConfig("ICEBERG")
    config.source_uris = [uri]
    table.external_data_configuration = config
    return table


def test_trades_inserted_by_streaming_are_queried_back(
    client: bigquery.Client, dataset: bigquery.Dataset
) -> None:
    schema = [
        bigquery.SchemaField("symbol", "STRING", mode="REQUIRED"),
        bigquery.SchemaField("price", "FLOAT64"),
        bigquery.SchemaField("volume", "INT64"),
        bigquery.SchemaField("event_time", "TIMESTAMP"),
    ]
    table = client.create_table(bigquery.Table(f"{PROJECT}.market.trades", schema=schema))
    assert [f.name for f in client.get_table(table).schema] == ["symbol", "price", "volume", "event_time"]

    errors = client.insert_rows_json(
        table,
        [
            {"symbol": "AAPL", "price": 187.5, "volume": 100, "event_time": "2026-01-02T14:30:00Z"},
            {"symbol": "AAPL", "price": 188.0, "volume": 50, "event_time": "2026-01-02T14:30:01Z"},
            {"symbol": "MSFT", "price": 410.25, "volume": 10, "event_time": "2026-01-02T14:30:02Z"},
        ],
    )
    assert errors == []

    rows = client.query(
        "SELECT symbol, SUM(volume) AS volume, MAX(price) AS high, MIN(event_time) AS first_trade "
        f"FROM `{PROJECT}.market.trades` GROUP BY symbol ORDER BY symbol"
    ).result()
    assert [tuple(row.values()) for row in rows] == [
        ("AAPL", 150, 188.0, datetime(2026, 1, 2, 14, 30, tzinfo=UTC)),
        ("MSFT", 10, 410.25, datetime(2026, 1, 2, 14, 30, 2, tzinfo=UTC)),
    ]
    assert client.get_table(table).num_rows == 3


def test_iceberg_external_config_is_accepted_but_stored_as_empty_native_table(
    client: bigquery.Client, dataset: bigquery.Dataset
) -> None:
    table_id = f"{PROJECT}.market.trades_iceberg"
    created = client.create_table(_iceberg_external_table(table_id))  # no error: the request is accepted

    fetched = client.get_table(table_id)
    for table in (created, fetched):
        assert table.table_type == "TABLE"  # real BigQuery says EXTERNAL
        assert table.external_data_configuration is None  # sourceFormat and sourceUris are dropped
        assert table.schema == []  # real BigQuery reads the schema from the Iceberg metadata
        assert table.num_rows == 0
    assert "externalDataConfiguration" not in fetched.to_api_repr()
    assert list(client.query(f"SELECT * FROM `{table_id}`").result()) == []

    # Re-pointing at a newer metadata file is accepted too, and dropped the same way.
    fetched.external_data_configuration = _iceberg_external_table(
        table_id, METADATA_URI.replace("00003", "00004")
    ).external_data_configuration
    updated = client.update_table(fetched, ["external_data_configuration"])
    assert updated.external_data_configuration is None
    assert client.get_table(table_id).external_data_configuration is None


def test_only_type_labels_and_description_survive_on_an_external_table(
    client: bigquery.Client, dataset: bigquery.Dataset
) -> None:
    table = _iceberg_external_table(f"{PROJECT}.market.bars_iceberg")
    table.description = f"Iceberg metadata: {METADATA_URI}"
    table.labels = {"iceberg_snapshot_id": "8841"}
    table._properties["type"] = "EXTERNAL"  # read-only in the client; the emulator keeps it if sent
    client.create_table(table)

    fetched = client.get_table(table.reference)
    assert fetched.table_type == "EXTERNAL"
    assert fetched.external_data_configuration is None
    assert (fetched.description, fetched.labels) == (
        f"Iceberg metadata: {METADATA_URI}",
        {"iceberg_snapshot_id": "8841"},
    )


def test_create_external_table_ddl_is_rejected(client: bigquery.Client, dataset: bigquery.Dataset) -> None:
    ddl = (
        f"CREATE EXTERNAL TABLE `{PROJECT}.market.ddl_iceberg` "
        f"OPTIONS (format = 'ICEBERG', uris = ['{METADATA_URI}'])"
    )
    with pytest.raises(BadRequest, match="Parser Error"):
        client.query(ddl).result()


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
