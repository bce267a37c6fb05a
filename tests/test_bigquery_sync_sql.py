"""The SQL in sql/ answers its question on the BigQuery emulator, over tables shaped like the sync's.

bqemulator cannot serve an external ICEBERG table, so the queries run against native tables with the
schema BigQuery derives from the Iceberg one (``lakehouse.bigquery.bigquery_schema``), filled with
a few bars whose answers are worked out by hand below.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from google.cloud import bigquery

from lakehouse.bigquery import bigquery_schema, render_sql
from lakehouse.local import bigquery_emulator
from lakehouse.local._daemon import EmulatorProcess
from lakehouse.settings import PROJECT_ROOT
from lakehouse.tables import ALL_TABLES, BARS_1M

PROJECT, DATASET = "lakehouse-sql-test", "market"
DAY1 = datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def bar(symbol: str, start: datetime, o: float, h: float, lo: float, c: float, v: float, n: int) -> dict:
    vwap = round((o + h + lo + c) / 4, 4) if v else None
    return {
        "symbol": symbol, "window_start": start.isoformat(), "window_end": (start + timedelta(minutes=1)).isoformat(),
        "open": o, "high": h, "low": lo, "close": c, "volume": v, "trade_count": n, "vwap": vwap,
        "updated_time": start.isoformat(),
    }


MINUTE = timedelta(minutes=1)
BARS = [
    bar("AAPL", DAY1, 100.0, 101.0, 99.5, 100.5, 10.0, 3),
    bar("AAPL", DAY1 + MINUTE, 100.5, 102.0, 100.0, 101.5, 30.0, 5),
    bar("AAPL", DAY1 + 2 * MINUTE, 101.5, 101.5, 98.0, 99.0, 0.0, 0),  # volume 0: vwap is null
    bar("AAPL", DAY2, 99.0, 99.5, 97.0, 98.0, 20.0, 4),
    bar("MSFT", DAY1, 400.0, 401.0, 399.0, 400.5, 5.0, 2),
]


def sql(name: str) -> str:
    return render_sql((PROJECT_ROOT / "sql" / name).read_text(), PROJECT, DATASET)


@pytest.fixture(scope="module")
def emulator(bigquery_server: EmulatorProcess) -> EmulatorProcess:
    """The session's bqemulator; this module's datasets are in a project of its own (``PROJECT``)."""
    return bigquery_server


@pytest.fixture(scope="module")
def client(emulator: EmulatorProcess) -> bigquery.Client:
    client = bigquery_emulator.bigquery_client(emulator.endpoint, PROJECT)
    client.create_dataset(f"{PROJECT}.{DATASET}")
    schema = [bigquery.SchemaField.from_api_repr(field) for field in bigquery_schema(BARS_1M)]
    table = client.create_table(bigquery.Table(f"{PROJECT}.{DATASET}.bars_1m", schema=schema))
    assert client.insert_rows_json(table, BARS) == []
    return client


def test_every_lakehouse_table_maps_to_bigquery_types() -> None:
    for table in ALL_TABLES:
        assert len(bigquery_schema(table)) == len(table.schema.fields)
    trades = {field["name"]: field for field in bigquery_schema(ALL_TABLES[0])}
    assert trades["conditions"] == {"name": "conditions", "type": "STRING", "mode": "REPEATED"}
    assert trades["event_time"] == {"name": "event_time", "type": "TIMESTAMP", "mode": "REQUIRED"}


def test_latest_bars_gives_each_symbols_newest_minute(client: bigquery.Client) -> None:
    rows = [dict(row) for row in client.query(sql("latest_bars.sql")).result()]
    assert [(r["symbol"], r["window_start"], r["close"]) for r in rows] == [
        ("AAPL", DAY2, 98.0), ("MSFT", DAY1, 400.5)
    ]


def test_daily_ohlcv_rolls_minutes_up_into_days(client: bigquery.Client) -> None:
    rows = [dict(row) for row in client.query(sql("daily_ohlcv.sql")).result()]
    day1_vwap = (BARS[0]["vwap"] * 10 + BARS[1]["vwap"] * 30) / 40
    assert [(r["symbol"], r["day"], r["open"], r["high"], r["low"], r["close"], r["volume"], r["trade_count"],
             r["minute_bars"]) for r in rows] == [
        ("AAPL", date(2026, 1, 2), 100.0, 102.0, 98.0, 99.0, 40.0, 8, 3),
        ("AAPL", date(2026, 1, 3), 99.0, 99.5, 97.0, 98.0, 20.0, 4, 1),
        ("MSFT", date(2026, 1, 2), 400.0, 401.0, 399.0, 400.5, 5.0, 2, 1),
    ]
    assert rows[0]["vwap"] == pytest.approx(day1_vwap)


def test_vwap_over_a_day_runs_minute_by_minute_to_the_days_vwap(client: bigquery.Client) -> None:
    day = bigquery.ScalarQueryParameter("day", "DATE", "2026-01-02")
    job = client.query(sql("vwap_day.sql"), job_config=bigquery.QueryJobConfig(query_parameters=[day]))
    rows = [dict(row) for row in job.result()]
    assert [(r["symbol"], r["window_start"]) for r in rows] == [
        ("AAPL", DAY1), ("AAPL", DAY1 + MINUTE), ("AAPL", DAY1 + 2 * MINUTE), ("MSFT", DAY1)
    ]
    first, second = BARS[0]["vwap"], (BARS[0]["vwap"] * 10 + BARS[1]["vwap"] * 30) / 40
    assert [r["running_vwap"] for r in rows] == pytest.approx([first, second, second, BARS[4]["vwap"]])
    assert [r["running_volume"] for r in rows] == [10.0, 40.0, 40.0, 5.0]


def test_sql_files_name_only_the_synced_tables() -> None:
    for path in sorted((PROJECT_ROOT / "sql").glob("*.sql")):
        text = path.read_text()
        assert "`{project}.{dataset}." in text
        assert render_sql(text, "my-project", "market").count("`my-project.market.") >= 1
