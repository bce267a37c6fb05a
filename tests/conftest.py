"""Fixtures that start the real local components (no mocks) and stop them afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse.local.kafka_broker import LocalKafkaBroker
from lakehouse.local.processes import free_port
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings

KAFKA_JARS = PROJECT_ROOT / "jars" / "kafka"


def start_broker(state_dir: Path) -> LocalKafkaBroker:
    """A real KRaft broker on free ports; fails (never skips) with the reason if it cannot start."""
    broker = LocalKafkaBroker(KAFKA_JARS, state_dir, port=free_port(), controller_port=free_port())
    broker.start(timeout_seconds=90)
    return broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def lakehouse_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh state directory for one test session's catalog, warehouse and checkpoints."""
    return tmp_path_factory.mktemp("lakehouse")


@pytest.fixture(scope="session")
def settings(kafka_broker: LocalKafkaBroker, lakehouse_dir: Path) -> Settings:
    """Embedded-default settings pointed at the test broker and a throw-away warehouse."""
    return load_settings(
        environ={
            "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
            "LAKEHOUSE__LOCAL__STATE_DIR": str(lakehouse_dir),
            "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{lakehouse_dir}/catalog.db",
            "LAKEHOUSE__CATALOG__WAREHOUSE": str(lakehouse_dir / "warehouse"),
            "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": str(lakehouse_dir / "checkpoints"),
            "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "1",
            "LAKEHOUSE__SPARK__UI_ENABLED": "false",
        }
    )


@pytest.fixture(scope="session")
def spark(settings: Settings):
    """One real local[2] Spark session with the Iceberg catalog and the Kafka connector."""
    from lakehouse.spark import build_spark_session, ensure_tables

    session = build_spark_session(settings, "lakehouse-tests")
    ensure_tables(session, settings)
    yield session
    for query in session.streams.active:
        query.stop()
    session.stop()
