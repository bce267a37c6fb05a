"""The BigQuery sync through a real BigQuery emulator (bqemulator) and a real Iceberg catalog.

bqemulator stores an external table as a plain native table and drops ``externalDataConfiguration``
(docs/gcp.md), so here the sync's own record of the metadata file (a line in
the table description) is what tells it a table is current. What real BigQuery receives for the
external configuration is pinned down in tests/test_bigquery_sync_requests.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from google.cloud import bigquery

from lakehouse import bigquery_sync
from lakehouse.bigquery import MANAGED_BY_LABEL, MANAGED_BY_VALUE, Action, metadata_uri_in
from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.local._daemon import EmulatorProcess
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings
from lakehouse.tables import ALL_TABLES, FEED_EVENTS, TRADES

pytestmark = pytest.mark.integration  # the CLI tests run the sync job as a child process

PROJECT = "lakehouse-sync-test"
PRESENT = tuple(t for t in ALL_TABLES if t is not FEED_EVENTS)  # feed_events is not created: skipped


@pytest.fixture(scope="module")
def emulator(bigquery_server: EmulatorProcess) -> EmulatorProcess:
    """The session's bqemulator; this module's datasets are in a project of its own (``PROJECT``)."""
    return bigquery_server


def sync_env(emulator: EmulatorProcess, state: Path, dataset: str) -> dict[str, str]:
    return {
        "LAKEHOUSE__LOCAL__STATE_DIR": str(state),
        "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": str(state / "warehouse"),
        "LAKEHOUSE__BIGQUERY__ENDPOINT": emulator.endpoint,
        "LAKEHOUSE__BIGQUERY__PROJECT": PROJECT,
        "LAKEHOUSE__BIGQUERY__DATASET": dataset,
        "LAKEHOUSE__BIGQUERY__LOCATION": "EU",
    }


def lakehouse(tmp_path: Path, emulator: EmulatorProcess, dataset: str) -> Settings:
    """Settings for a fresh catalog holding every table but feed_events, synced into ``dataset``."""
    settings = load_settings(environ=sync_env(emulator, tmp_path, dataset))
    catalog = load_catalog(settings)
    catalog.create_namespace(settings.catalog.namespace)
    for table in PRESENT:
        catalog.create_table(table_identifier(settings, table), schema=table.schema)
    return settings


def append_a_trade(settings: Settings) -> str:
    """Commit one trade with pyiceberg; return the new metadata file."""
    table = load_catalog(settings).load_table(table_identifier(settings, TRADES))
    at = pa.scalar(1_767_261_600_000_000, pa.timestamp("us", tz="UTC"))
    row = {
        "trade_id": "t-1", "source": "finnhub", "symbol": "AAPL", "price": 187.5, "volume": 10.0,
        "event_time": at, "conditions": ["1"], "venue": None, "received_time": at, "ingested_time": at,
        "kafka_partition": 0, "kafka_offset": 1, "bar_eligible": True,
    }
    table.append(pa.Table.from_pylist([row], schema=table.schema().as_arrow()))
    return table.refresh().metadata_location


def actions(report: bigquery_sync.SyncReport) -> dict[str, Action]:
    return {plan.name: plan.action for plan in report.tables}


def test_first_run_creates_dataset_and_tables_then_a_rerun_changes_nothing(
    emulator: EmulatorProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = lakehouse(tmp_path, emulator, "market_first")
    client = bigquery_sync.bigquery_client(settings)
    catalog = load_catalog(settings)

    first = bigquery_sync.sync_once(settings, client, catalog)
    assert first.dataset == f"{PROJECT}.market_first: created (location EU)"
    assert actions(first) == {**{t.name: Action.CREATE for t in PRESENT}, FEED_EVENTS.name: Action.SKIP}
    assert first.ok
    assert "BigQuery can only read Iceberg tables from gs://" in caplog.text

    for table in PRESENT:
        fetched = client.get_table(f"{PROJECT}.market_first.{table.name}")
        expected = catalog.load_table(table_identifier(settings, table)).metadata_location
        assert metadata_uri_in(fetched.description) == expected
        assert fetched.labels == {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    assert client.get_dataset(f"{PROJECT}.market_first").location == "EU"

    again = bigquery_sync.sync_once(settings, client, load_catalog(settings))
    assert again.dataset == f"{PROJECT}.market_first: exists"
    assert actions(again) == {**{t.name: Action.UNCHANGED for t in PRESENT}, FEED_EVENTS.name: Action.SKIP}
    assert again.lines()[-1].startswith("5 unchanged, 1 skipped in ")


def test_a_new_commit_repoints_only_that_table_and_keeps_other_labels(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    settings = lakehouse(tmp_path, emulator, "market_commit")
    client = bigquery_sync.bigquery_client(settings)
    bigquery_sync.sync_once(settings, client, load_catalog(settings))
    trades_id = f"{PROJECT}.market_commit.trades"
    before = client.get_table(trades_id)
    before.labels = {**before.labels, "owner": "analytics"}
    client.update_table(before, ["labels"])

    new_metadata = append_a_trade(settings)
    report = bigquery_sync.sync_once(settings, client, load_catalog(settings))

    assert actions(report) == {
        **{t.name: Action.UNCHANGED for t in PRESENT}, TRADES.name: Action.UPDATE, FEED_EVENTS.name: Action.SKIP
    }
    trades_plan = next(p for p in report.tables if p.name == TRADES.name)
    assert trades_plan.previous_uri == metadata_uri_in(before.description)
    assert trades_plan.metadata_uri == new_metadata
    assert trades_plan.describe(dry_run=False).startswith("updated ")
    after = client.get_table(trades_id)
    assert metadata_uri_in(after.description) == new_metadata
    assert after.labels == {"owner": "analytics", MANAGED_BY_LABEL: MANAGED_BY_VALUE}


def test_dry_run_reports_the_plan_and_changes_nothing(emulator: EmulatorProcess, tmp_path: Path) -> None:
    settings = lakehouse(tmp_path, emulator, "market_dry")
    client = bigquery_sync.bigquery_client(settings)

    report = bigquery_sync.sync_once(settings, client, load_catalog(settings), dry_run=True)

    assert report.dataset == f"{PROJECT}.market_dry: would create (location EU)"
    assert {p.name: p.action for p in report.tables}[TRADES.name] is Action.CREATE
    assert any(line.startswith(f"would create    {PROJECT}.market_dry.trades -> ") for line in report.lines())
    assert [d.dataset_id for d in client.list_datasets()].count("market_dry") == 0


def test_a_table_the_sync_does_not_own_is_left_alone_and_fails_the_run(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    settings = lakehouse(tmp_path, emulator, "market_foreign")
    client = bigquery_sync.bigquery_client(settings)
    client.create_dataset(f"{PROJECT}.market_foreign")
    foreign = bigquery.Table(
        f"{PROJECT}.market_foreign.trades", schema=[bigquery.SchemaField("note", "STRING")]
    )
    foreign.description = "hand-made"
    client.create_table(foreign)

    report = bigquery_sync.sync_once(settings, client, load_catalog(settings))

    assert actions(report)[TRADES.name] is Action.CONFLICT
    assert not report.ok
    kept = client.get_table(f"{PROJECT}.market_foreign.trades")
    assert (kept.description, [f.name for f in kept.schema]) == ("hand-made", ["note"])


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs.bigquery_sync", *args], cwd=PROJECT_ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_cli_syncs_all_tables_and_reports_each_and_its_time(emulator: EmulatorProcess, tmp_path: Path) -> None:
    lakehouse(tmp_path, emulator, "market_cli")
    env = sync_env(emulator, tmp_path, "market_cli")

    started = time.monotonic()
    created = run_cli([], env)
    first_s = time.monotonic() - started
    started = time.monotonic()
    unchanged = run_cli([], env)
    second_s = time.monotonic() - started

    assert created.returncode == 0, created.stderr[-3000:]
    assert unchanged.returncode == 0, unchanged.stderr[-3000:]
    for table in PRESENT:
        assert f"created         {PROJECT}.market_cli.{table.name} -> file://" in created.stdout
        assert f"unchanged       {PROJECT}.market_cli.{table.name}" in unchanged.stdout
    assert f"skipped         {PROJECT}.market_cli.feed_events: no such Iceberg table yet" in created.stdout
    assert "5 created, 1 skipped in " in created.stdout
    print(f"\nsync of all tables, whole CLI process: create {first_s:.2f} s, unchanged {second_s:.2f} s")
    print(created.stdout.splitlines()[-1], "|", unchanged.stdout.splitlines()[-1])


def test_cli_on_an_interval_syncs_each_new_commit_and_stops_cleanly_on_sigterm(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    settings = lakehouse(tmp_path, emulator, "market_interval")
    env = sync_env(emulator, tmp_path, "market_interval")
    log_file = tmp_path / "sync.log"
    with log_file.open("w") as log:
        job = subprocess.Popen(
            [sys.executable, "-m", "jobs.bigquery_sync", "--interval", "1"], cwd=PROJECT_ROOT,
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "5 created" not in log_file.read_text():
            assert job.poll() is None and time.monotonic() < deadline, log_file.read_text()[-3000:]
            time.sleep(0.2)
        new_metadata = append_a_trade(settings)
        while f"-> {new_metadata}" not in log_file.read_text():
            assert job.poll() is None and time.monotonic() < deadline, log_file.read_text()[-3000:]
            time.sleep(0.2)
        job.send_signal(signal.SIGTERM)
        assert job.wait(30) == 0
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(10)
    assert "updated         " in log_file.read_text()
    assert "stopped" in log_file.read_text().splitlines()[-1]


def test_help_names_the_options() -> None:
    done = run_cli(["--help"], {}, timeout=60)
    assert done.returncode == 0
    for option in ("--dry-run", "--interval SECONDS", "--connection"):
        assert option in done.stdout


def test_an_invalid_dataset_name_is_refused_before_any_request(tmp_path: Path) -> None:
    env = {
        "LAKEHOUSE__BIGQUERY__DATASET": "market-data",
        "LAKEHOUSE__BIGQUERY__ENDPOINT": "http://127.0.0.1:9",  # nothing listens: no request is made
        "LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path),
    }
    done = run_cli([], env, timeout=60)
    assert done.returncode == 2
    assert "may contain only letters, digits and underscores" in done.stderr
