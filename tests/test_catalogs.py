"""The pipeline through each shared catalog kind, on real servers: a PostgreSQL JDBC catalog and an
Iceberg REST catalog (Apache Iceberg's own server, keeping its catalog in the same PostgreSQL).

The jobs, readers, rebuild, maintenance and the BigQuery sync are the production code, unchanged:
only the settings differ (``catalog.type``, ``catalog.uri``, ``catalog.user``/``password``). The
servers start once for the session; Spark is the session's local[2] one, with each shared catalog
registered under a name of its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lakehouse.catalog import load_catalog, spark_table_name, table_identifier
from lakehouse.local.postgres import LocalPostgres
from lakehouse.local.processes import free_port
from lakehouse.local.rest_catalog import LocalRestCatalog
from lakehouse.maintenance import MaintenancePolicy, maintain
from lakehouse.reading import Lakehouse
from lakehouse.settings import Settings
from lakehouse.spark import catalog_conf, ensure_tables
from lakehouse.tables import BARS_1M, LATE_TRADES, TRADES
from tests.kafka_helpers import new_topic, publish
from tests.test_bars import late_trade_ids, reference_bars, stored_bars
from tests.test_raw_trades import trade

CATALOG_KINDS = ("postgres", "rest")
BIGQUERY_PROJECT = "lakehouse-catalogs-test"
# What the job's error says when the catalog server is down (by catalog.type).
CATALOG_DOWN_CLUES = {"jdbc": "PSQLException", "rest": "Connection refused"}


# Module scope: the servers are this module's alone, and would otherwise idle until the session ends.
@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    server = LocalPostgres(tmp_path_factory.mktemp("postgres"), port=free_port())
    server.start(timeout_seconds=120)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rest_catalog(
    tmp_path_factory: pytest.TempPathFactory, postgres: LocalPostgres
) -> Iterator[LocalRestCatalog]:
    """The REST server keeps its catalog in the session's PostgreSQL (catalog name ``rest_backend``)."""
    state = tmp_path_factory.mktemp("rest-catalog")
    server = LocalRestCatalog(
        state, port=free_port(), warehouse=(state / "warehouse").as_uri(),
        backing_jdbc_uri=postgres.jdbc_uri, backing_user=postgres.user, backing_password=postgres.password,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bigquery(bigquery_server: Any) -> Any:
    """The session's bqemulator, for both catalog kinds (each syncs into a dataset of its own, in
    this module's project)."""
    return bigquery_server


def shared_settings(base: Settings, kind: str, request: pytest.FixtureRequest, state: Path) -> Settings:
    """``base`` with its catalog replaced by the shared one of ``kind``: settings only."""
    if kind == "postgres":
        server: LocalPostgres = request.getfixturevalue("postgres")
        catalog = {
            "name": "shared_jdbc", "type": "jdbc", "uri": server.jdbc_uri, "user": server.user,
            "password": server.password, "warehouse": str(state / "warehouse"),
        }
    else:
        rest: LocalRestCatalog = request.getfixturevalue("rest_catalog")
        catalog = {"name": "shared_rest", "type": "rest", "uri": rest.uri, "warehouse": rest.warehouse}
    return Settings.model_validate({
        **base.model_dump(),
        "catalog": {**base.catalog.model_dump(), **catalog},
        "streaming": {**base.streaming.model_dump(), "checkpoint_dir": str(state / "checkpoints")},
    })


@pytest.fixture(scope="module", params=CATALOG_KINDS)
def through(request: pytest.FixtureRequest, spark: Any, settings: Settings, tmp_path_factory) -> Settings:
    """The session's settings on one shared catalog kind, registered in the session's Spark, tables made."""
    shared = shared_settings(settings, request.param, request, tmp_path_factory.mktemp(request.param))
    # A job's session is built with these properties (build_spark_session); the session here already
    # runs, so they go into its context's conf too, where sessions made later (the bars writer's
    # newSession) read theirs from.
    context_conf = spark.sparkContext._jsc.sc().conf()
    for key, value in catalog_conf(shared).items():
        spark.conf.set(key, value)
        context_conf.set(key, value)
    ensure_tables(spark, shared)
    return shared


def stored_trades(settings: Settings, symbols: tuple[str, ...]) -> list[dict[str, Any]]:
    """The trades of ``symbols`` as pyiceberg reads them through the catalog."""
    table = load_catalog(settings).load_table(table_identifier(settings, TRADES))
    quoted = ", ".join(f"'{s}'" for s in symbols)
    return table.scan(row_filter=f"symbol in ({quoted})").to_arrow().to_pylist()


def pipeline_symbols(settings: Settings) -> tuple[str, ...]:
    """The symbols the pipeline test streams through this catalog kind."""
    return tuple(f"{settings.catalog.type.upper()}{suffix}" for suffix in "AB")


def root_cause(error: Exception | None) -> str:
    """The innermost ``SomethingException: message`` of a Java/Python chain, for the report."""
    found = re.findall(r"([\w.]+(?:Exception|Error)): ([^\n]{0,200})", str(error))
    return ": ".join(found[-1]) if found else str(error)[:200]


def messages(trades: list) -> list[tuple[bytes, bytes]]:
    return [(t.key(), t.to_json_bytes()) for t in trades]


def test_raw_trades_then_bars_store_every_trade_once_and_exact_bars_through_the_catalog(
    spark: Any, through: Settings, kafka_broker
) -> None:
    from lakehouse import raw_trades_stream
    from lakehouse.bars_stream import start_bars_query

    kind = through.catalog.type
    symbols = pipeline_symbols(through)
    topic = new_topic(kafka_broker.bootstrap_servers, f"catalogs.{kind}.trades", partitions=2)
    sent = [trade(symbol, n) for n in range(600) for symbol in symbols]
    publish(kafka_broker.bootstrap_servers, topic, messages(sent) + messages(sent[:200]))  # 200 re-sent
    settings = through.model_copy(update={"kafka": through.kafka.model_copy(update={"trades_topic": topic})})

    query = raw_trades_stream.start(spark, settings)
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    stored = stored_trades(settings, symbols)
    ids = [row["trade_id"] for row in stored]
    assert len(ids) == len(set(ids)) == len(sent), "each trade stored once"
    assert set(ids) == {t.trade_id for t in sent}

    bars = start_bars_query(spark, settings)
    try:
        bars.processAllAvailable()
    finally:
        bars.stop()
    assert late_trade_ids(spark, settings) == []
    assert stored_bars(spark, settings) == reference_bars(stored)


def test_the_quick_look_notebook_runs_unchanged_through_the_catalog(
    through: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analyst's notebook, by settings only (the environment its kernel inherits), on the bars the
    pipeline test before this one wrote through this catalog kind."""
    from tests.test_notebooks import NOTEBOOKS_DIR, run_notebook

    catalog = through.catalog
    environ = {
        "LAKEHOUSE__CATALOG__NAME": catalog.name, "LAKEHOUSE__CATALOG__TYPE": catalog.type,
        "LAKEHOUSE__CATALOG__URI": catalog.uri, "LAKEHOUSE__CATALOG__WAREHOUSE": catalog.warehouse,
        "LAKEHOUSE__CATALOG__NAMESPACE": catalog.namespace,
        "LAKEHOUSE__LOCAL__STATE_DIR": str(through.state_dir),
    }
    if catalog.user:
        environ["LAKEHOUSE__CATALOG__USER"] = catalog.user
    if catalog.password:
        environ["LAKEHOUSE__CATALOG__PASSWORD"] = catalog.password.get_secret_value()
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    # The pipeline test's trades span under a minute: a chart of one bar is a small PNG.
    run_notebook(NOTEBOOKS_DIR / "01_quick_look.ipynb", tmp_path, min_chart_bytes=1_000)


def test_a_pyiceberg_reader_and_a_spark_reader_see_the_same_snapshot(spark: Any, through: Settings) -> None:
    trades = spark_table_name(through, TRADES)
    newest = spark.sql(
        f"SELECT snapshot_id FROM {trades}.snapshots ORDER BY committed_at DESC LIMIT 1"
    ).first()
    assert newest is not None, "the pipeline test before this one commits trades"
    table = Lakehouse(through).table(TRADES)
    assert table.current_snapshot().snapshot_id == newest.snapshot_id
    assert table.metadata_location == spark.sql(
        f"SELECT file FROM {trades}.metadata_log_entries ORDER BY timestamp DESC LIMIT 1"
    ).first().file
    rows_in_spark = spark.sql(f"SELECT count(*) AS n FROM {trades} VERSION AS OF {newest.snapshot_id}").first().n
    assert table.scan(snapshot_id=newest.snapshot_id).to_arrow().num_rows == rows_in_spark > 0
    # The reader's own reads load the current state only (a SQL catalog's metadata file parsed
    # without the history, a REST catalog asked for its refs' snapshots), and see the same data.
    spark.sql(f"CALL {through.catalog.name}.system.rewrite_data_files(table => "
              f"'{through.catalog.namespace}.{TRADES.name}', options => map('rewrite-all', 'true'))")
    lake = Lakehouse(through)
    table = lake.table(TRADES)
    history = len(table.metadata.snapshots)
    assert history > 1  # the rewrite's snapshot after the stream's
    readable = lake._readable(TRADES)
    loaded = [s.snapshot_id for s in readable.metadata.snapshots]
    assert readable.current_snapshot().snapshot_id == table.current_snapshot().snapshot_id
    if through.catalog.type == "jdbc":
        assert loaded == [table.current_snapshot().snapshot_id]
    else:  # asked for its refs' snapshots only; Iceberg 1.10's own REST server sends them all
        assert len(loaded) in (1, history)
    assert readable.scan().to_arrow().num_rows == rows_in_spark
    assert lake.metadata_pointer(TRADES) == table.metadata_location
    assert lake.table_ages([TRADES])["snapshots"].tolist() == [history]


def restart_catalog_server(kind: str, request: pytest.FixtureRequest, down_seconds: float) -> None:
    server = request.getfixturevalue("postgres" if kind == "jdbc" else "rest_catalog")
    server.stop()
    time.sleep(down_seconds)
    server.start()


def test_the_catalog_server_restarted_mid_stream_loses_and_duplicates_nothing(
    spark: Any, through: Settings, kafka_broker, request: pytest.FixtureRequest
) -> None:
    from lakehouse import raw_trades_stream

    kind = through.catalog.type
    symbols = (f"R{kind.upper()}A", f"R{kind.upper()}B", f"R{kind.upper()}C")
    topic = new_topic(kafka_broker.bootstrap_servers, f"catalogs.{kind}.restart", partitions=2)
    sent = [trade(symbol, n) for n in range(1000) for symbol in symbols]
    settings = through.model_copy(update={
        "kafka": through.kafka.model_copy(update={"trades_topic": topic}),
    }).with_streaming(trigger_seconds=0, max_offsets_per_trigger=500,
                      checkpoint_dir=f"{through.streaming.checkpoint_dir}/restart")
    acknowledged = publish(kafka_broker.bootstrap_servers, topic, messages(sent[:2000]))

    query = raw_trades_stream.start(spark, settings)
    failures: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not query.recentProgress or query.lastProgress["batchId"] < 1:
            assert query.isActive, f"failed before the restart: {query.exception()}"
            assert time.monotonic() < deadline, "no micro-batch within 120 s"
            time.sleep(0.2)
        restart_catalog_server(kind, request, down_seconds=3)
        acknowledged += publish(kafka_broker.bootstrap_servers, topic, messages(sent[2000:]))
        deadline = time.monotonic() + 240
        while len(stored_trades(settings, symbols)) < len(sent):
            assert time.monotonic() < deadline, f"not all stored within 240 s; failures: {failures}"
            if not query.isActive:  # it failed while the catalog was down: start it again, as an operator would
                failures.append(root_cause(query.exception()))
                query = raw_trades_stream.start(spark, settings)
            time.sleep(1)
        query.processAllAvailable()
    finally:
        query.stop()

    ids = [row["trade_id"] for row in stored_trades(settings, symbols)]
    print(f"\n[{kind}] catalog restarted mid-stream: sent {len(sent)}, acknowledged {acknowledged}, "
          f"stored {len(ids)}, distinct {len(set(ids))}; query failures: {failures or 'none (it retried)'}")
    assert acknowledged == len(sent)
    # A failure, if the job had one, names the catalog server it lost.
    assert all(CATALOG_DOWN_CLUES[kind] in failure for failure in failures), failures
    assert len(ids) == len(set(ids)), "a trade was stored twice"
    assert set(ids) == {t.trade_id for t in sent}, "a trade was lost"


def test_rebuild_maintenance_and_the_bigquery_sync_run_through_the_catalog(
    spark: Any, through: Settings, bigquery: Any
) -> None:
    from lakehouse import bigquery_sync
    from lakehouse.bars_rebuild import rebuild_days
    from lakehouse.bigquery import Action, metadata_uri_in

    day = datetime.fromtimestamp(trade("X", 0).event_time_ms / 1000, UTC).date()
    before = stored_bars(spark, through)
    report = rebuild_days(spark, through, [day], symbols=pipeline_symbols(through))
    assert report.bars_written == report.bars_replaced == len(before) > 0
    assert stored_bars(spark, through) == before

    trades = spark_table_name(through, TRADES)
    rows_before = spark.table(trades).count()
    maintained = maintain(spark, through.catalog.name, f"{through.catalog.namespace}.{TRADES.name}",
                          MaintenancePolicy(min_input_files=2))
    assert maintained.after.data_files < maintained.before.data_files
    assert spark.table(trades).count() == rows_before

    settings = through.model_copy(update={"bigquery": through.bigquery.model_copy(update={
        "endpoint": bigquery.endpoint, "project": BIGQUERY_PROJECT, "dataset": f"market_{through.catalog.type}",
    })})
    catalog = load_catalog(settings)
    client = bigquery_sync.bigquery_client(settings)
    first = bigquery_sync.sync_once(settings, client, catalog, tables=(TRADES, BARS_1M, LATE_TRADES))
    assert first.ok and {plan.action for plan in first.tables} == {Action.CREATE}
    for table in (TRADES, BARS_1M, LATE_TRADES):
        fetched = client.get_table(f"{BIGQUERY_PROJECT}.{settings.bigquery.dataset}.{table.name}")
        current = catalog.load_table(table_identifier(settings, table)).metadata_location
        assert metadata_uri_in(fetched.description) == current
