"""The lakehouse on a gs:// warehouse, end to end against the local GCS emulator (fake-gcs-server).

Kafka trades -> the raw-trades stream and the bars stream (one real ``spark-submit`` of the pipeline
job, Java Iceberg GCSFileIO; the bars stream reads the trades table from the bucket) -> Iceberg
tables in ``gs://BUCKET/warehouse`` on the emulator -> pyiceberg
(PyArrowFileIO) reads the same rows through the shared SQLite catalog -> the BigQuery sync points
external tables at the gs:// metadata files, on the BigQuery emulator. Only settings differ from the
local-warehouse runs: the Spark jobs get them as LAKEHOUSE__* variables.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lakehouse import bigquery_sync
from lakehouse.bigquery import Action
from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.local import gcs_emulator
from lakehouse.local._daemon import EmulatorProcess
from lakehouse.local.kafka_broker import LocalKafkaBroker
from lakehouse.messages import Source, Trade, trade_id
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings
from lakehouse.tables import BARS_1M, TRADES
from tests.kafka_helpers import new_topic, publish

BUCKET = "market-lake"
BASE_MS = 1_767_261_600_000  # 2026-01-01T10:00:00Z
SYMBOLS = ("GCSA", "GCSB")
JOB_TIMEOUT_S = 300  # both streams of one job, on two cores


def make_trade(symbol: str, n: int) -> Trade:
    """One trade every 1.5 s per symbol: 200 trades span five 1-minute bars."""
    price, volume, at = round(100 + (n % 13) / 4, 2), float(n % 7 + 1), BASE_MS + n * 1500
    return Trade(
        source=Source.FINNHUB, symbol=symbol, price=price, volume=volume, event_time_ms=at,
        conditions=[], venue="XNAS", received_time_ms=at + 5,
        trade_id=trade_id(Source.FINNHUB, symbol, at, price, volume, []),
    )


TRADES_SENT = [make_trade(symbol, n) for n in range(200) for symbol in SYMBOLS]


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """fake-gcs-server with an empty bucket; a failure to start fails the tests with its log."""
    with gcs_emulator.running(tmp_path_factory.mktemp("gcs")) as started:
        gcs_emulator.storage_client(started.endpoint).create_bucket(BUCKET)
        yield started


@pytest.fixture(scope="module")
def lake_env(
    gcs: EmulatorProcess, kafka_broker: LocalKafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    state = tmp_path_factory.mktemp("gcs-lakehouse")
    # Every topic the pipeline job reads, of this module's own and made before it starts.
    topics = {kind: new_topic(kafka_broker.bootstrap_servers, f"gcs.{kind}", partitions=2)
              for kind in ("trades", "vendor_bars", "feed_events", "quarantine")}
    return {
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        **{f"LAKEHOUSE__KAFKA__{kind.upper()}_TOPIC": topic for kind, topic in topics.items()},
        "LAKEHOUSE__LOCAL__STATE_DIR": str(state),
        "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": f"gs://{BUCKET}/warehouse",
        "LAKEHOUSE__GCS__ENDPOINT": gcs.endpoint,
        "LAKEHOUSE__GCS__PROJECT": "local-project",
        "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": str(state / "checkpoints"),
        "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "1",
    }


@pytest.fixture(scope="module")
def lake(lake_env: dict[str, str]) -> Settings:
    return load_settings(environ=lake_env)


def rows(settings: Settings, table: Any) -> list[dict[str, Any]]:
    try:
        found = load_catalog(settings).load_table(table_identifier(settings, table))
    except Exception:  # not created yet by the job
        return []
    quoted = ", ".join(f"'{s}'" for s in SYMBOLS)
    return found.scan(row_filter=f"symbol in ({quoted})").to_arrow().to_pylist()


PIPELINE_STARTED = "INFO pipeline: pipeline running"


def all_bars_complete(settings: Settings) -> bool:
    """Every sent trade is counted in a bar (the bars stream caught up with the trades table)."""
    return sum(bar["trade_count"] for bar in rows(settings, BARS_1M)) >= len(TRADES_SENT)


def run_pipeline_until(env: dict[str, str], log_file: Path, done: Any) -> None:
    """Run ``./spark-submit.sh pipeline`` until ``done()`` holds, then SIGTERM it (a clean stop)."""
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [str(PROJECT_ROOT / "spark-submit.sh"), "--master", "local[2]", "pipeline"],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        # Read the catalog only once the job has set it up (tables created, SQLite in WAL mode): a
        # reader racing that initialisation once made the job's first commit fail with SQLITE_BUSY.
        while not (log_file.exists() and PIPELINE_STARTED in log_file.read_text()) or not done():
            assert process.poll() is None, f"pipeline died: {log_file.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"not done in {JOB_TIMEOUT_S} s: {log_file.read_text()[-4000:]}"
            time.sleep(1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


@pytest.fixture(scope="module")
def trades_on_gcs(lake: Settings, lake_env: dict[str, str], kafka_broker: LocalKafkaBroker) -> Settings:
    """The pipeline job run once, until every sent trade is stored and counted in a bar."""
    messages = [(t.key(), t.to_json_bytes()) for t in TRADES_SENT]
    publish(kafka_broker.bootstrap_servers, lake.kafka.trades_topic, messages)
    log_file = lake.state_dir / "pipeline.log"
    run_pipeline_until(lake_env, log_file,
                       lambda: len(rows(lake, TRADES)) >= len(TRADES_SENT) and all_bars_complete(lake))
    return lake


def objects(gcs: EmulatorProcess, prefix: str) -> list[str]:
    client = gcs_emulator.storage_client(gcs.endpoint)
    return sorted(blob.name for blob in client.list_blobs(BUCKET, prefix=prefix))


def test_the_raw_trades_stream_writes_to_gcs_and_pyiceberg_reads_the_same_trades(
    trades_on_gcs: Settings, gcs: EmulatorProcess
) -> None:
    stored = rows(trades_on_gcs, TRADES)
    assert sorted(r["trade_id"] for r in stored) == sorted(t.trade_id for t in TRADES_SENT)
    assert {r["venue"] for r in stored} == {"XNAS"}

    table = load_catalog(trades_on_gcs).load_table(table_identifier(trades_on_gcs, TRADES))
    assert type(table.io).__name__ == "PyArrowFileIO"
    assert table.metadata_location.startswith(f"gs://{BUCKET}/warehouse/market/trades/metadata/")
    data_files = [name for name in objects(gcs, "warehouse/market/trades/data/") if name.endswith(".parquet")]
    # Appended by day (the append spec), or folded into day-symbol files: day-partitioned either way.
    assert data_files and all("/event_time_day=" in name for name in data_files)
    assert table.metadata_location.removeprefix(f"gs://{BUCKET}/") in objects(gcs, "warehouse/market/trades/")


def test_the_bars_stream_reads_trades_from_gcs_and_writes_bars_there(trades_on_gcs: Settings) -> None:
    expected: dict[tuple[str, int], list[Trade]] = defaultdict(list)
    for trade in TRADES_SENT:
        expected[(trade.symbol, trade.event_time_ms // 60_000)].append(trade)

    bars = {(b["symbol"], int(b["window_start"].timestamp()) // 60): b for b in rows(trades_on_gcs, BARS_1M)}
    assert set(bars) == set(expected)
    for key, trades in expected.items():
        by_time = sorted(trades, key=lambda t: t.event_time_ms)
        bar = bars[key]
        assert (bar["open"], bar["close"]) == (by_time[0].price, by_time[-1].price)
        assert (bar["high"], bar["low"]) == (max(t.price for t in trades), min(t.price for t in trades))
        assert (bar["volume"], bar["trade_count"]) == (sum(t.volume for t in trades), len(trades))


def test_bigquery_sync_points_external_tables_at_the_gcs_metadata_files(
    trades_on_gcs: Settings, lake_env: dict[str, str], bigquery_server: EmulatorProcess,
    caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(environ={  # a project of this module's own on the session's emulator
        **lake_env, "LAKEHOUSE__BIGQUERY__ENDPOINT": bigquery_server.endpoint,
        "LAKEHOUSE__BIGQUERY__PROJECT": "gcs-warehouse-test",
    })
    client = bigquery_sync.bigquery_client(settings)
    started = time.monotonic()
    report = bigquery_sync.sync_once(settings, client, load_catalog(settings))
    elapsed = time.monotonic() - started

    trades_plan = next(plan for plan in report.tables if plan.name == TRADES.name)
    assert trades_plan.action is Action.CREATE
    current = load_catalog(settings).load_table(table_identifier(settings, TRADES)).metadata_location
    assert trades_plan.metadata_uri == current and current.startswith(f"gs://{BUCKET}/")
    assert "not on Cloud Storage" not in caplog.text
    again = bigquery_sync.sync_once(settings, client, load_catalog(settings))
    assert {p.name: p.action for p in again.tables}[TRADES.name] is Action.UNCHANGED
    print(f"\nsync of all tables on the gs:// warehouse: {elapsed:.2f} s ({report.lines()[-1]})")
