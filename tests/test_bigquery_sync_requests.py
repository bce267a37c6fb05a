"""What the official google-cloud-bigquery client sends for the sync, captured on a local HTTP server.

No BigQuery emulator keeps an external ICEBERG table (bqemulator drops ``externalDataConfiguration``),
so this pins down the requests real BigQuery would receive: a tiny stdlib server answers
``datasets.get/insert`` and ``tables.get/insert/patch`` the way BigQuery does (it keeps what it is
given, sets ``type`` = EXTERNAL and an etag) and records every request.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from lakehouse import bigquery_sync
from lakehouse.bigquery import Action
from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.settings import Settings, load_settings
from lakehouse.tables import ALL_TABLES, TRADES

PROJECT = "capture-project"
DATASET = "market"
PREFIX = "/bigquery/v2/projects/"


@dataclass
class Captured:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any] | None
    if_match: str | None


@dataclass
class FakeBigQuery:
    """Datasets and tables by id, and every request in order."""

    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Captured] = field(default_factory=list)
    etags: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def writes(self) -> list[Captured]:
        return [r for r in self.requests if r.method != "GET"]


def _handler(state: FakeBigQuery) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _not_found(self, what: str) -> None:
            self._reply(404, {"error": {"code": 404, "message": f"Not found: {what}", "status": "NOT_FOUND",
                                        "errors": [{"reason": "notFound", "message": f"Not found: {what}"}]}})

        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.requests.append(
                Captured(self.command, url.path, parse_qs(url.query), body, self.headers.get("If-Match"))
            )
            parts = url.path.removeprefix(PREFIX).split("/")  # project, "datasets", d[, "tables"[, t]]
            if len(parts) == 2 and self.command == "POST":
                dataset_id = body["datasetReference"]["datasetId"]
                state.datasets[dataset_id] = {**body, "id": f"{PROJECT}:{dataset_id}"}
                return self._reply(200, state.datasets[dataset_id])
            if len(parts) == 3:
                found = state.datasets.get(parts[2])
                return self._reply(200, found) if found else self._not_found(f"Dataset {parts[2]}")
            if len(parts) == 4 and self.command == "POST":
                table_id = body["tableReference"]["tableId"]
                if table_id in state.tables:
                    return self._reply(409, {"error": {"code": 409, "message": "Already Exists"}})
                state.tables[table_id] = {**body, "type": "EXTERNAL", "etag": f"etag-{next(state.etags)}"}
                return self._reply(200, state.tables[table_id])
            if len(parts) == 5:
                found = state.tables.get(parts[4])
                if found is None:
                    return self._not_found(f"Table {parts[4]}")
                if self.command == "PATCH":
                    if self.headers.get("If-Match") not in (None, found["etag"]):
                        return self._reply(412, {"error": {"code": 412, "message": "Precondition failed"}})
                    found.update(body)
                    found["etag"] = f"etag-{next(state.etags)}"
                return self._reply(200, found)
            return self._reply(400, {"error": {"code": 400, "message": f"unexpected {self.command} {url.path}"}})

        do_GET = do_POST = do_PATCH = _handle  # the names http.server dispatches to

    return Handler


@pytest.fixture
def fake_bigquery() -> Iterator[tuple[str, FakeBigQuery]]:
    state = FakeBigQuery()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def lakehouse(tmp_path: Path, endpoint: str) -> Settings:
    settings = load_settings(
        environ={
            "LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path),
            "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{tmp_path}/catalog.db",
            "LAKEHOUSE__CATALOG__WAREHOUSE": str(tmp_path / "warehouse"),
            "LAKEHOUSE__BIGQUERY__ENDPOINT": endpoint,
            "LAKEHOUSE__BIGQUERY__PROJECT": PROJECT,
            "LAKEHOUSE__BIGQUERY__DATASET": DATASET,
            "LAKEHOUSE__BIGQUERY__LOCATION": "asia-southeast1",
        }
    )
    catalog = load_catalog(settings)
    catalog.create_namespace(settings.catalog.namespace)
    for table in ALL_TABLES:
        catalog.create_table(table_identifier(settings, table), schema=table.schema)
    return settings


def metadata_location(settings: Settings, table_name: str) -> str:
    return load_catalog(settings).load_table(f"{settings.catalog.namespace}.{table_name}").metadata_location


def test_create_sends_an_iceberg_external_table_pointing_at_the_current_metadata_file(
    fake_bigquery: tuple[str, FakeBigQuery], tmp_path: Path
) -> None:
    endpoint, state = fake_bigquery
    settings = lakehouse(tmp_path, endpoint)

    report = bigquery_sync.sync_once(
        settings, bigquery_sync.bigquery_client(settings), load_catalog(settings),
        connection_id="capture-project.asia-southeast1.lake",
    )

    assert all(plan.action is Action.CREATE for plan in report.tables)
    dataset_insert, *table_inserts = state.writes()
    assert (dataset_insert.method, dataset_insert.path) == ("POST", f"{PREFIX}{PROJECT}/datasets")
    assert dataset_insert.body["location"] == "asia-southeast1"
    assert [r.path for r in table_inserts] == [f"{PREFIX}{PROJECT}/datasets/{DATASET}/tables"] * len(ALL_TABLES)
    for table, insert in zip(ALL_TABLES, table_inserts, strict=True):
        assert insert.body["tableReference"] == {"projectId": PROJECT, "datasetId": DATASET, "tableId": table.name}
        assert insert.body["externalDataConfiguration"] == {
            "sourceFormat": "ICEBERG",
            "sourceUris": [metadata_location(settings, table.name)],
            "connectionId": "capture-project.asia-southeast1.lake",
        }
        assert "schema" not in insert.body  # BigQuery reads it from the Iceberg metadata


def test_an_unchanged_table_gets_no_write_and_a_new_commit_is_patched_with_schema_autodetect(
    fake_bigquery: tuple[str, FakeBigQuery], tmp_path: Path
) -> None:
    endpoint, state = fake_bigquery
    settings = lakehouse(tmp_path, endpoint)
    client = bigquery_sync.bigquery_client(settings)
    bigquery_sync.sync_once(settings, client, load_catalog(settings))
    # Real BigQuery answers with the external configuration: that, not the description, is compared.
    for table in state.tables.values():
        table["description"] = "edited by hand in the console"
    state.requests.clear()

    unchanged = bigquery_sync.sync_once(settings, client, load_catalog(settings))
    assert {plan.action for plan in unchanged.tables} == {Action.UNCHANGED}
    assert state.writes() == []

    trades = load_catalog(settings).load_table(table_identifier(settings, TRADES))
    with trades.transaction() as commit:
        commit.set_properties({"comment": "a new commit"})
    new_metadata = metadata_location(settings, TRADES.name)
    etag_before = state.tables[TRADES.name]["etag"]
    updated = bigquery_sync.sync_once(settings, client, load_catalog(settings))

    assert {p.name: p.action for p in updated.tables}[TRADES.name] is Action.UPDATE
    [patch] = state.writes()
    assert (patch.method, patch.path) == ("PATCH", f"{PREFIX}{PROJECT}/datasets/{DATASET}/tables/trades")
    assert patch.query["autodetect_schema"] == ["True"]  # the client's spelling of true
    assert patch.if_match == etag_before
    assert patch.body["externalDataConfiguration"] == {"sourceFormat": "ICEBERG", "sourceUris": [new_metadata]}
    assert patch.body["description"].endswith(f"Iceberg metadata: {new_metadata}")
    assert set(patch.body) == {"externalDataConfiguration", "description", "labels"}


def test_dry_run_sends_only_reads(fake_bigquery: tuple[str, FakeBigQuery], tmp_path: Path) -> None:
    endpoint, state = fake_bigquery
    settings = lakehouse(tmp_path, endpoint)

    report = bigquery_sync.sync_once(settings, bigquery_sync.bigquery_client(settings), load_catalog(settings),
                                     dry_run=True)

    assert {plan.action for plan in report.tables} == {Action.CREATE}
    assert state.requests and state.writes() == []
