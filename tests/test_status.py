"""`lakehouse status` against a real Kafka broker, a real Spark stream and a real Iceberg catalog:
healthy while the raw-trades job keeps up, stale once it stops and trades pile up unread."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse.messages import Source, Trade, trade_id
from lakehouse.ops import job_runs
from lakehouse.ops.cli import status
from lakehouse.settings import PROJECT_ROOT, Settings, StatusSettings
from tests.conftest import environ_of, isolated, unique_name
from tests.kafka_helpers import new_topic, publish


def recent_trades(count: int, symbol: str = "STAT") -> list[tuple[bytes, bytes]]:
    now_ms = int(time.time() * 1000)
    trades = []
    for n in range(count):
        at = now_ms - 5_000 + n
        price, volume = 10.0 + n / 100, 1.0
        trades.append(Trade(source=Source.FINNHUB, symbol=symbol, price=price, volume=volume, event_time_ms=at,
                            conditions=[], venue=None, received_time_ms=at + 1,
                            trade_id=trade_id(Source.FINNHUB, symbol, at, price, volume, [])))
    return [(t.key(), t.to_json_bytes()) for t in trades]


@pytest.fixture(scope="module")
def status_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The session's stack, with a namespace, topic and checkpoints of this module's own, a state
    directory of its own (where batch jobs record their runs), and tight thresholds."""
    own = isolated(settings, unique_name("status"))
    return own.model_copy(update={
        "local": own.local.model_copy(update={"state_dir": tmp_path_factory.mktemp("status-state")}),
        "status": StatusSettings(fresh_tables=["trades"], max_event_age_seconds=900, max_kafka_lag_messages=10,
                                 max_maintenance_age_seconds=3600, max_sync_age_seconds=0),
    })


def status_env(settings: Settings) -> dict[str, str]:
    """The same settings as environment variables, for the installed `lakehouse` command."""
    return {
        **os.environ,
        **environ_of(settings),
        "LAKEHOUSE__STATUS__FRESH_TABLES": ",".join(settings.status.fresh_tables),
        "LAKEHOUSE__STATUS__MAX_KAFKA_LAG_MESSAGES": str(settings.status.max_kafka_lag_messages),
        "LAKEHOUSE__STATUS__MAX_SYNC_AGE_SECONDS": "0",
    }


def lines_of(screen: str) -> dict[str, str]:
    """part -> verdict, from the status screen."""
    verdicts = {}
    for line in screen.splitlines()[1:-1]:
        verdict, rest = line.split(maxsplit=1)
        part = rest.split("  ")[0].strip()
        verdicts[part] = verdict
    return verdicts


def test_status_is_healthy_while_the_stream_keeps_up_then_stale_when_it_stalls(spark, status_settings, kafka_broker):
    from lakehouse import raw_trades_stream
    from lakehouse.spark import ensure_tables

    ensure_tables(spark, status_settings)  # every table, as the pipeline leaves a lakehouse
    topic = new_topic(kafka_broker.bootstrap_servers, status_settings.kafka.trades_topic, partitions=2)
    publish(kafka_broker.bootstrap_servers, topic, recent_trades(40))
    query = raw_trades_stream.start(spark, status_settings)
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    job_runs.record_success(status_settings.state_dir, job_runs.JobRun(
        "maintenance", datetime.now(UTC) - timedelta(minutes=5), 12.5, {"files_rewritten": 3}))

    # Healthy, through the installed console script, as cron would run it.
    cli = PROJECT_ROOT / ".venv" / "bin" / "lakehouse"
    healthy = subprocess.run([str(cli), "status"], env=status_env(status_settings), capture_output=True,
                             text=True, timeout=120)
    print(healthy.stdout)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    verdicts = lines_of(healthy.stdout)
    assert verdicts["table trades"] == "ok"
    assert verdicts[f"topic {topic} / raw_trades"] == "ok"
    assert verdicts["job maintenance"] == "ok"
    assert "end 40, committed 40" in healthy.stdout and "lag 0 msgs" in healthy.stdout

    # Stalled: the stream is down while 60 more trades arrive, and two hours pass.
    publish(kafka_broker.bootstrap_servers, topic, recent_trades(60, symbol="STAU"))
    screen, code = status(status_settings, now=datetime.now(UTC) + timedelta(hours=2))
    print(screen)
    assert code == 1
    verdicts = lines_of(screen)
    assert verdicts["table trades"] == "STALE"
    assert verdicts[f"topic {topic} / raw_trades"] == "STALE"
    assert verdicts["job maintenance"] == "STALE"
    assert "end 100, committed 40" in screen and "lag 60 msgs" in screen


def test_a_batch_job_record_reads_back_as_written(tmp_path: Path):
    run = job_runs.JobRun("maintenance", datetime(2026, 3, 2, 14, 0, 0, 250_000, tzinfo=UTC), 42.0,
                          {"files_rewritten": 17, "snapshots_expired": 230})
    path = job_runs.record_success(tmp_path, run)
    assert path == tmp_path / "ops" / "maintenance.prom"
    assert job_runs.last_success(tmp_path, "maintenance") == run
    assert job_runs.last_success(tmp_path, "bigquery_sync") is None
    assert "lakehouse_maintenance_files_rewritten 17" in path.read_text()
