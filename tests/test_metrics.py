"""Prometheus metrics scraped from real processes: a Finnhub producer, the raw-trades stream and a
maintenance run (real Kafka, Spark, Iceberg), then the alert rules checked against what they export."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from lakehouse.local.processes import free_port
from lakehouse.messages import Source, Trade, trade_id
from lakehouse.ops import stream_metrics
from lakehouse.ops.job_runs import serve_job_metrics
from lakehouse.ops.market_calendar import US, in_session
from lakehouse.ops.metrics_http import serve_metrics
from lakehouse.settings import PROJECT_ROOT, Settings
from producers.simulators.finnhub_server import FinnhubSimulator
from tests.conftest import environ_of
from tests.kafka_helpers import new_topic, publish

pytestmark = pytest.mark.integration  # its tests start producers, jobs and the BigQuery emulator in their own body

ALERTS_FILE = PROJECT_ROOT / "conf" / "prometheus" / "alerts.yml"
SCRAPED: dict[str, str] = {}  # process -> the exposition text of its last scrape, for the alert-rules test


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.5)


def test_a_running_finnhub_producer_exports_messages_that_grow_as_trades_flow(kafka_broker, tmp_path: Path):
    topic = new_topic(kafka_broker.bootstrap_servers, "metrics.finnhub.trades", partitions=2)
    server = FinnhubSimulator(trades_per_symbol=None, rate_per_second=200, live=True).start_in_thread()
    port = free_port()
    env = {
        **os.environ,
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "LAKEHOUSE__KAFKA__TRADES_TOPIC": topic,
        "LAKEHOUSE__FINNHUB__TOKEN": "metrics-test",
        "LAKEHOUSE__METRICS__FINNHUB_PORT": str(port),
        "LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path),  # its last-frame mark and spool, not the project's
    }
    process = subprocess.Popen([sys.executable, "-m", "producers.finnhub", "--url", server.url, "--symbols", "AAPL"],
                               cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    acked = "lakehouse_producer_messages_total"
    try:
        def trades_acked() -> float:
            try:
                return value(scrape(port), acked, source="finnhub", topic=topic) or 0.0
            except OSError:
                return 0.0

        wait_for(lambda: trades_acked() > 0, 60, "the producer's first acknowledged trades")
        first = scrape(port)
        opened = in_session(US, datetime.now(UTC))
        assert value(first, "lakehouse_producer_in_session", source="finnhub") == float(opened)
        wait_for(lambda: trades_acked() > (value(first, acked, source="finnhub", topic=topic) or 0) + 50, 60,
                 "more trades")
        second = scrape(port)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        server.stop_thread()
    print(second)
    assert process.returncode == 0, output
    assert value(second, acked, source="finnhub", topic=topic) > value(first, acked, source="finnhub", topic=topic)
    assert value(second, "lakehouse_producer_reconnects_total", source="finnhub") == 0
    assert value(second, "lakehouse_producer_quarantined_total", source="finnhub") == 0
    assert value(second, "lakehouse_producer_feed_gaps_total", source="finnhub") == 0
    assert 0 <= value(second, "lakehouse_producer_last_message_age_seconds", source="finnhub") < 30
    assert 0 <= value(second, "lakehouse_producer_last_trade_age_seconds", source="finnhub") < 30
    assert value(second, "lakehouse_producer_last_trade_timestamp_seconds", source="finnhub") > time.time() - 30
    assert 0 <= value(second, "lakehouse_producer_buffer_fill_ratio", source="finnhub") < 1
    assert value(second, "lakehouse_producer_source_lag_seconds", source="finnhub") is not None
    SCRAPED["finnhub"] = second


def trades_now(count: int, symbol: str) -> list[tuple[bytes, bytes]]:
    now_ms = int(time.time() * 1000)
    messages = []
    for n in range(count):
        at, price = now_ms - 2_000 + n, 20.0 + n / 100
        t = Trade(source=Source.FINNHUB, symbol=symbol, price=price, volume=1.0, event_time_ms=at, conditions=[],
                  venue=None, received_time_ms=at + 1,
                  trade_id=trade_id(Source.FINNHUB, symbol, at, price, 1.0, []))
        messages.append((t.key(), t.to_json_bytes()))
    return messages


def test_the_raw_trades_stream_exports_rows_batches_lag_and_the_newest_committed_event_time(
        spark, lake: Settings, kafka_broker):
    stream_settings = lake
    topic = new_topic(kafka_broker.bootstrap_servers, stream_settings.kafka.trades_topic, partitions=2)
    port = free_port()
    stream_metrics.listen_for_progress(spark)
    stop_server = serve_metrics(port, "streaming")
    from lakehouse import raw_trades_stream

    publish(kafka_broker.bootstrap_servers, topic, trades_now(120, "METR"))
    query = raw_trades_stream.start(spark, stream_settings)
    rows = "lakehouse_stream_input_rows_total"
    try:
        query.processAllAvailable()
        wait_for(lambda: (value(scrape(port), rows, query="raw_trades") or 0) >= 120, 60, "120 input rows")
        first = scrape(port)
        sent_before_ms = int(time.time() * 1000)
        publish(kafka_broker.bootstrap_servers, topic, trades_now(80, "METR"))
        query.processAllAvailable()
        wait_for(lambda: (value(scrape(port), rows, query="raw_trades") or 0) >= 200, 60, "200 input rows")
        second = scrape(port)
    finally:
        query.stop()
        stop_server()
    print(second)
    newest = "lakehouse_stream_newest_committed_event_timestamp_seconds"
    assert value(first, newest, query="raw_trades") < value(second, newest, query="raw_trades")
    assert value(second, newest, query="raw_trades") >= (sent_before_ms - 2_000) / 1000
    assert value(second, "lakehouse_stream_batches_total", query="raw_trades") >= 2
    assert value(second, "lakehouse_stream_batch_duration_seconds_count", query="raw_trades") >= 2
    assert value(second, "lakehouse_stream_kafka_offsets_behind", query="raw_trades") == 0
    assert value(second, "lakehouse_stream_last_progress_timestamp_seconds", query="raw_trades") > time.time() - 120
    SCRAPED["stream"] = second


def test_a_maintenance_run_records_its_success_and_serves_it(lake: Settings, tmp_path: Path):
    from lakehouse.reading.synthetic import create_tables
    from lakehouse.tables import TRADES

    settings = lake.model_copy(update={"local": lake.local.model_copy(update={"state_dir": tmp_path})})
    create_tables(settings, (TRADES,))
    env = {**os.environ, **environ_of(settings)}
    started = time.time()
    # Its own process: the job stops its SparkSession when done, and the session's one is shared.
    done = subprocess.run([sys.executable, "-m", "jobs.maintenance", "--tables", "trades"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    port = free_port()
    stop_server = serve_job_metrics(port, settings.state_dir, "maintenance")
    try:
        text = scrape(port)
    finally:
        stop_server()
    print(text)
    assert started <= value(text, "lakehouse_maintenance_last_success_timestamp_seconds") <= time.time()
    assert value(text, "lakehouse_maintenance_tables_maintained") == 1
    assert value(text, "lakehouse_maintenance_snapshots_expired") is not None
    SCRAPED["maintenance"] = text


def test_maintenances_counters_are_served_beside_its_run_record(tmp_path: Path):
    """docs/operations.md named these counters, but nothing served them: samples() was never called."""
    from collections import Counter
    from datetime import UTC, datetime

    from lakehouse.maintenance import MaintenanceCounters
    from lakehouse.ops.job_runs import JobRun, record_success

    counters = MaintenanceCounters(commit_conflicts=Counter({("market.bars_1m", "rewrite_data_files"): 3}),
                                   retries=Counter({("market.bars_1m", "rewrite_data_files"): 2}),
                                   runs_completed=5, last_orphan_check_seconds={"market.trades": 1_790_000_000.0})
    record_success(tmp_path, JobRun("maintenance", datetime.fromtimestamp(1_790_000_100, UTC), 12.0))
    port = free_port()
    stop_server = serve_job_metrics(port, tmp_path, "maintenance", counters.samples)
    try:
        counters.runs_completed += 1  # read at each scrape, not when the endpoint started
        text = scrape(port)
    finally:
        stop_server()

    at = {"table": "market.bars_1m", "step": "rewrite_data_files"}
    assert value(text, "lakehouse_maintenance_commit_conflicts_total", **at) == 3
    assert value(text, "lakehouse_maintenance_retries_total", **at) == 2
    assert value(text, "lakehouse_maintenance_runs_total") == 6
    assert value(text, "lakehouse_maintenance_last_orphan_check_timestamp_seconds", table="market.trades") == 1.79e9
    assert value(text, "lakehouse_maintenance_last_success_timestamp_seconds") == 1_790_000_100  # the record's


def test_a_bigquery_sync_on_an_interval_serves_its_last_success(tmp_path: Path, bigquery_server):
    from lakehouse.catalog import load_catalog, table_identifier
    from lakehouse.settings import load_settings
    from lakehouse.tables import TRADES

    env = {
        "LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path),
        "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{tmp_path}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": str(tmp_path / "warehouse"),
        "LAKEHOUSE__BIGQUERY__ENDPOINT": bigquery_server.endpoint,
        "LAKEHOUSE__BIGQUERY__PROJECT": "metrics-test",
        "LAKEHOUSE__METRICS__SYNC_PORT": str(port := free_port()),
    }
    settings = load_settings(environ=env)
    catalog = load_catalog(settings)
    catalog.create_namespace(settings.catalog.namespace)
    catalog.create_table(table_identifier(settings, TRADES), schema=TRADES.schema)
    job = subprocess.Popen([sys.executable, "-m", "jobs.bigquery_sync", "--interval", "1"], cwd=PROJECT_ROOT,
                           env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    success = "lakehouse_bigquery_sync_last_success_timestamp_seconds"
    try:
        def recorded() -> bool:
            try:
                return value(scrape(port), success) is not None
            except OSError:
                return False

        wait_for(recorded, 90, "a recorded sync success")
        text = scrape(port)
    finally:
        job.send_signal(signal.SIGTERM)
        output, _ = job.communicate(timeout=60)
    print(text)
    assert job.returncode == 0, output
    assert value(text, success) > time.time() - 120
    assert value(text, "lakehouse_bigquery_sync_tables_updated") == 1
    SCRAPED["sync"] = text


def test_every_metric_an_alert_rule_uses_is_exported_by_a_running_process():
    assert set(SCRAPED) == {"finnhub", "stream", "maintenance", "sync"}, "run with the scrape tests above"
    exported = {name for text in SCRAPED.values() for name, _ in samples(text)}
    rules = [rule for group in yaml.safe_load(ALERTS_FILE.read_text())["groups"] for rule in group["rules"]]
    assert len(rules) >= 6
    for rule in rules:
        used = set(re.findall(r"\b(lakehouse_[a-z0-9_]+)\b", rule["expr"]))
        assert used, f"{rule['alert']} uses no lakehouse metric"
        assert used <= exported, f"{rule['alert']} uses {sorted(used - exported)}, which nothing exports"
        assert rule["labels"]["severity"] in {"warning", "critical"} and rule["annotations"]["summary"]


@pytest.fixture(autouse=True, scope="module")
def _needs_the_scrapes_in_order():
    """The alert test reads what the scrape tests saw; pytest runs a module's tests in file order."""
    yield
    SCRAPED.clear()
