"""Bars: the pure Spark functions on small DataFrames, and the streaming job end to end.

The job runs in-process on a real Spark session against real Iceberg tables (JDBC catalog on
SQLite in a throw-away directory). The raw-trades job is simulated by pyiceberg appends, one
append per micro-batch, and every bar is compared with an independent DuckDB computation.
Prices are multiples of 1/4 and volumes whole numbers, so every sum is exact in floating point
and bars can be compared for exact equality whatever order the engines add in.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from pyiceberg.schema import Schema

from lakehouse import bars
from lakehouse.bars_commit import open_bars_files
from lakehouse.bars_progress import BarsProgressLog
from lakehouse.bars_rebuild import open_days, rebuild_days
from lakehouse.bars_stream import catch_up_bars, checkpoint_location, start_bars_query
from lakehouse.catalog import spark_table_name
from lakehouse.conditions import bar_eligible_column, is_bar_eligible
from lakehouse.maintenance import MaintenancePolicy, maintain
from lakehouse.reading import Lakehouse
from lakehouse.settings import Settings, load_settings
from lakehouse.spark import append_spec_id, build_spark_session, ensure_tables, iceberg_table
from lakehouse.streaming import stop_between_batches
from lakehouse.tables import BARS_1M, LATE_TRADES, TRADES, create_table_ddl, missing_properties, table_properties
from tests.conftest import isolated, unique_name

LATENESS_SECONDS = 60
T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
MINUTE_US = 60_000_000


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def bars_base_settings(lakehouse_dir: Path) -> Settings:
    """Embedded settings on the session's throw-away catalog; no Kafka needed downstream of trades."""
    return load_settings(
        environ={
            "LAKEHOUSE__LOCAL__STATE_DIR": str(lakehouse_dir),
            "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{lakehouse_dir}/catalog.db",
            "LAKEHOUSE__CATALOG__WAREHOUSE": str(lakehouse_dir / "warehouse"),
            "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": str(lakehouse_dir / "checkpoints"),
            "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "1",
            "LAKEHOUSE__STREAMING__ALLOWED_LATENESS_SECONDS": str(LATENESS_SECONDS),
        }
    )


@pytest.fixture(scope="session")
def bars_spark(bars_base_settings: Settings) -> Iterator[Any]:
    spark = build_spark_session(bars_base_settings, "lakehouse-tests")
    yield spark
    for query in spark.streams.active:
        query.stop()
    spark.stop()


# ---------------------------------------------------------------- trades and the reference


@dataclass
class RawTable:
    """Stands in for the raw-trades job: a Spark append per call, each trade id stored once. It
    writes the table's default spec (day and symbol), or spec ``spec_id``: ``raw_job_spec`` is the
    day-only spec the raw job writes (one file per append whatever the number of symbols)."""

    spark: Any
    settings: Settings
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_offset: int = 0
    spec_id: int | None = None

    def raw_job_spec(self) -> None:
        self.spec_id = append_spec_id(self.spark, TRADES, spark_table_name(self.settings, TRADES))

    def append(self, trades: list[dict[str, Any]], spec_id: int | None = None) -> list[dict[str, Any]]:
        """Append ``trades`` (a snapshot), with the table's default spec or spec ``spec_id``."""
        spec_id = self.spec_id if spec_id is None else spec_id
        ingested = datetime.now(UTC)
        fresh = []
        for trade in trades:
            if trade["trade_id"] in self.stored:
                continue  # re-sent: the raw job stores a trade once
            row = {**trade, "ingested_time": ingested}
            row.setdefault("kafka_offset", self.next_offset)
            self.next_offset += 1
            self.stored[trade["trade_id"]] = row
            fresh.append(row)
        writer = trades_df(self.spark, fresh).writeTo(spark_table_name(self.settings, TRADES))
        if spec_id is not None:
            writer = writer.option("output-spec-id", str(spec_id))
        writer.append()
        return fresh


def trade(
    trade_id: str,
    symbol: str,
    at: datetime,
    price: float,
    volume: float = 100,
    conditions: list[str] | None = None,
    source: str = "finnhub",
    partition: int = 0,
    offset: int | None = None,
) -> dict[str, Any]:
    row = {
        "trade_id": trade_id,
        "source": source,
        "symbol": symbol,
        "price": price,
        "volume": float(volume),
        "event_time": at,
        "conditions": conditions if conditions is not None else ["1"],
        "venue": None,
        "received_time": at,
        "kafka_partition": partition,
    }
    if offset is not None:
        row["kafka_offset"] = offset
    return row


def epoch_us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def reference_bars(trades: list[dict[str, Any]]) -> dict[tuple[str, int], tuple]:
    """Bars computed by DuckDB from plain rows: the independent side of every comparison."""
    rows = [
        {
            "symbol": t["symbol"],
            "event_us": epoch_us(t["event_time"]),
            "partition": t["kafka_partition"],
            "offset": t["kafka_offset"],
            "trade_id": t["trade_id"],
            "price": t["price"],
            "volume": t["volume"],
        }
        for t in trades
        if is_bar_eligible(t["source"], t["conditions"])
    ]
    eligible = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [("symbol", pa.string()), ("event_us", pa.int64()), ("partition", pa.int32()),
             ("offset", pa.int64()), ("trade_id", pa.string()), ("price", pa.float64()),
             ("volume", pa.float64())]
        ),
    )
    connection = duckdb.connect()
    connection.register("eligible", eligible)
    result = connection.sql(
        f"""
        SELECT symbol, event_us - event_us % {MINUTE_US} AS start_us,
               first(price ORDER BY event_us, partition, "offset", trade_id) AS open,
               max(price) AS high, min(price) AS low,
               last(price ORDER BY event_us, partition, "offset", trade_id) AS close,
               sum(volume) AS volume, count(*) AS trade_count,
               CASE WHEN sum(volume) <> 0 THEN sum(price * volume) / sum(volume) END AS vwap,
               max(event_us) AS last_event_us
        FROM eligible GROUP BY ALL
        """
    ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in result}


def stored_bars(spark: Any, settings: Settings) -> dict[tuple[str, int], tuple]:
    from pyspark.sql import functions as F

    rows = (
        spark.table(spark_table_name(settings, BARS_1M))
        .select(
            "symbol", F.unix_micros("window_start").alias("start_us"),
            (F.unix_micros("window_end") - F.unix_micros("window_start")).alias("length_us"),
            "open", "high", "low", "close", "volume", "trade_count", "vwap",
            F.unix_micros("last_event_time").alias("last_event_us"),
        )
        .collect()
    )
    keys = [(r["symbol"], r["start_us"]) for r in rows]
    assert len(keys) == len(set(keys)), "more than one row per (symbol, window_start)"
    assert all(r["length_us"] == MINUTE_US for r in rows)
    return {(r["symbol"], r["start_us"]): tuple(r[3:]) for r in rows}


def late_trade_ids(spark: Any, settings: Settings) -> list[str]:
    return [r["trade_id"] for r in spark.table(spark_table_name(settings, LATE_TRADES)).collect()]


class WatermarkModel:
    """The lateness rule restated in plain Python: which trades a batch must refuse."""

    def __init__(self) -> None:
        self.high_water_mark: datetime | None = None

    def late_ids(self, batch: list[dict[str, Any]]) -> set[str]:
        late = set()
        if self.high_water_mark is not None:
            watermark = self.high_water_mark - timedelta(seconds=LATENESS_SECONDS)
            for t in batch:
                window_end = datetime.fromtimestamp(
                    (epoch_us(t["event_time"]) // MINUTE_US + 1) * 60, tz=UTC
                )
                if window_end <= watermark:
                    late.add(t["trade_id"])
        newest = max(min(t["event_time"], t["received_time"], t["ingested_time"]) for t in batch)
        self.high_water_mark = max(filter(None, [self.high_water_mark, newest]))
        return late


def generated_batches(seed: int, symbols: list[str], batches: int, per_batch: int) -> list[list[dict]]:
    """A stream moving forward ~50 s per batch, with jitter (out of order), re-sent trades,
    ineligible conditions, vnstock trades, ties on event time, and a few very late trades."""
    rng = random.Random(seed)
    sent: list[dict] = []
    stream = []
    for b in range(batches):
        batch = []
        for i in range(per_batch):
            symbol = rng.choice(symbols)
            at = T0 + timedelta(seconds=50 * b + rng.uniform(-25, 50))
            if rng.random() < 0.03 and b >= 3:
                at = T0 + timedelta(seconds=50 * b - rng.uniform(150, 300))  # far too late
            if rng.random() < 0.1 and batch:
                at = batch[-1]["event_time"]  # same microsecond: Kafka position decides the order
            conditions = rng.choice([["1"], ["1", "8"], [], ["1", "12"], ["24"], ["30"], ["1", "37"]])
            source = "vnstock" if symbol.startswith("V") else "finnhub"
            batch.append(
                trade(f"s{seed}-b{b}-{i}", symbol, at, price=rng.randint(400, 800) / 4,
                      volume=rng.choice([0, 1, 5, 100, 250]) if rng.random() < 0.9 else 0,
                      conditions=[] if source == "vnstock" else conditions, source=source,
                      partition=rng.randint(0, 3))
            )
        batch += rng.sample(sent, min(len(sent), per_batch // 10))  # re-sent by a producer
        rng.shuffle(batch)
        sent += batch
        stream.append(batch)
    return stream


# ---------------------------------------------------------------- pure functions on small DataFrames


def trades_df(spark: Any, rows: list[dict[str, Any]]) -> Any:
    """Rows as a DataFrame with the trades table's exact Spark schema (required = not null)."""
    from pyspark.sql.types import StructField, StructType, _parse_datatype_string

    ddl = {
        "trade_id": "string", "source": "string", "symbol": "string", "price": "double",
        "volume": "double", "event_time": "timestamp", "conditions": "array<string>", "venue": "string",
        "received_time": "timestamp", "ingested_time": "timestamp", "kafka_partition": "int",
        "kafka_offset": "bigint", "bar_eligible": "boolean",
    }
    schema = StructType(
        [StructField(f.name, _parse_datatype_string(ddl[f.name]), nullable=not f.required)
         for f in TRADES.schema.fields]
    )
    full = [{**r, "ingested_time": r.get("ingested_time", r["event_time"]),
             "bar_eligible": r.get("bar_eligible", is_bar_eligible(r["source"], r["conditions"]))} for r in rows]
    return spark.createDataFrame([tuple(r.get(name) for name in schema.names) for r in full], schema=schema)


def test_bar_takes_open_and_close_by_event_time_then_kafka_position(bars_spark: Any) -> None:
    at = T0 + timedelta(seconds=10)
    rows = [
        trade("a", "AAPL", at, 101.0, partition=1, offset=7),
        trade("b", "AAPL", at, 100.0, partition=1, offset=5),  # same time, earlier offset: open
        trade("c", "AAPL", at + timedelta(seconds=40), 103.0, partition=0, offset=1),
        trade("d", "AAPL", at + timedelta(seconds=40), 102.0, partition=0, offset=2),  # close
        trade("e", "AAPL", T0 + timedelta(seconds=60), 150.0, offset=3),  # next minute (end exclusive)
    ]
    got = {
        r["window_start"].minute: r
        for r in bars.bars_from_trades(trades_df(bars_spark, rows)).collect()
    }
    first = got[30]
    assert (first["open"], first["high"], first["low"], first["close"]) == (100.0, 103.0, 100.0, 102.0)
    assert first["trade_count"] == 4 and first["volume"] == 400
    assert first["vwap"] == pytest.approx((101 + 100 + 103 + 102) / 4)
    assert got[31]["open"] == got[31]["close"] == 150.0


def test_open_and_close_stay_exact_across_offset_ranges_and_partitions(bars_spark: Any) -> None:
    """The per-trade key keeps only an offset's low bits; trades whose offsets straddle that range,
    or sit in other partitions, in the same microsecond, are ordered by the exact key."""
    boundary = 1 << bars.offset_bits(60)
    at, later = T0 + timedelta(seconds=10), T0 + timedelta(seconds=40)
    rows = [
        trade("above", "AAPL", at, 101.0, partition=0, offset=boundary + 1),
        trade("below", "AAPL", at, 100.0, partition=0, offset=boundary - 1),  # first: the open
        trade("other", "AAPL", at, 99.0, partition=1, offset=0),
        trade("big", "AAPL", later, 104.0, partition=0, offset=10**15),
        trade("last", "AAPL", later, 103.0, partition=1, offset=5),  # partition 1 after 0: the close
    ]
    trades = trades_df(bars_spark, rows)
    (bar,) = bars.bars_from_trades(trades).collect()
    assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["trade_count"]) == (100.0, 104.0, 99.0, 103.0, 5)
    (partial,) = bars.partial_bars(trades).collect()
    assert int(partial["open_key"]) == epoch_us(at) * 10**21 + 0 * 10**16 + boundary - 1
    assert int(partial["close_key"]) == epoch_us(later) * 10**21 + 1 * 10**16 + 5


def test_zero_volume_bar_has_null_vwap(bars_spark: Any) -> None:
    rows = [trade("z", "EURUSD", T0, 1.25, volume=0, offset=1)]
    (bar,) = bars.bars_from_trades(trades_df(bars_spark, rows)).collect()
    assert bar["vwap"] is None and bar["volume"] == 0 and bar["trade_count"] == 1


def test_condition_column_agrees_with_python_rule(bars_spark: Any) -> None:
    rng = random.Random(7)
    cases = [("vnstock", ["12"]), ("finnhub", None), ("finnhub", []), ("finnhub", [" 12"])]
    cases += [
        (rng.choice(["finnhub", "vnstock"]), [str(rng.randint(1, 41)) for _ in range(rng.randint(0, 4))])
        for _ in range(300)
    ]
    df = bars_spark.createDataFrame(cases, "source string, conditions array<string>")
    got = [r["eligible"] for r in df.select(bar_eligible_column().alias("eligible")).collect()]
    assert got == [is_bar_eligible(source, conditions) for source, conditions in cases]


def test_split_late_refuses_trades_whose_window_closed(bars_spark: Any) -> None:
    watermark = T0 + timedelta(minutes=2)
    rows = [
        trade("closed", "AAPL", T0 + timedelta(seconds=119), 100.0, offset=1),  # window ends at T0+2m
        trade("open", "AAPL", T0 + timedelta(seconds=120), 100.0, offset=2),
    ]
    on_time, late = bars.split_late(trades_df(bars_spark, rows), watermark)
    assert [r["trade_id"] for r in late.collect()] == ["closed"]
    assert [r["trade_id"] for r in on_time.collect()] == ["open"]
    nothing_late = bars.split_late(trades_df(bars_spark, rows), None)[1]
    assert nothing_late.count() == 0


def test_a_window_is_late_once_it_ended_at_or_before_the_watermark_as_split_late_judges_its_trades() -> None:
    watermark = T0 + timedelta(minutes=2)
    ended_at_watermark, still_open = epoch_us(T0 + timedelta(minutes=1)), epoch_us(T0 + timedelta(minutes=2))
    assert bars.window_is_late(ended_at_watermark, 60, watermark)  # the window of "closed" above
    assert not bars.window_is_late(still_open, 60, watermark)  # the window of "open" above
    assert not bars.window_is_late(still_open, 60, watermark - timedelta(microseconds=1) + timedelta(minutes=1))
    assert bars.window_is_late(still_open, 60, watermark + timedelta(minutes=1))
    assert not bars.window_is_late(ended_at_watermark, 60, None)  # no watermark yet: nothing is late


def test_high_water_mark_is_capped_at_ingest_time_and_never_moves_back() -> None:
    assert bars.advance_high_water_mark(None, T0) == T0
    assert bars.advance_high_water_mark(T0, T0 - timedelta(hours=1)) == T0
    assert bars.watermark_from(T0, 60) == T0 - timedelta(minutes=1)


def test_the_watermark_never_moves_back_when_the_lateness_is_raised() -> None:
    closed_at = T0 - timedelta(minutes=1)
    assert bars.advance_watermark(closed_at, T0, 600) == closed_at  # a longer lateness reopens nothing
    assert bars.advance_watermark(closed_at, T0, 30) == T0 - timedelta(seconds=30)
    assert bars.advance_watermark(None, T0, 60) == closed_at  # progress from before it was kept
    assert bars.advance_watermark(None, None, 60) is None


def test_the_high_water_mark_candidate_is_capped_at_receive_and_ingest_time(bars_spark: Any) -> None:
    """A backlog stored now: a trade stamped ahead of the time its producer received it moves the
    mark no further than that receive time, nor ever past its ingest time."""
    received = T0 + timedelta(seconds=20)
    ingested = T0 + timedelta(minutes=30)
    rows = [
        {**trade("bad-clock", "AAPL", T0 + timedelta(hours=2), 10.0, offset=1), "received_time": received,
         "ingested_time": ingested},
        {**trade("clock-ahead", "MSFT", T0 + timedelta(hours=2), 10.0, offset=2),
         "received_time": T0 + timedelta(hours=1), "ingested_time": ingested},
    ]
    marks = {r["symbol"]: r["mark_us"] for r in bars.batch_by_window(trades_df(bars_spark, rows)).collect()}
    assert marks == {"AAPL": epoch_us(received), "MSFT": epoch_us(ingested)}


def earlier_trades_table(spark: Any, base: Settings, label: str, **changes: Any) -> tuple[Settings, str]:
    """A trades table as an earlier version created it (``changes`` to its TableDef), in a catalog
    of its own: (its settings, its Spark name)."""
    settings = isolated(base, unique_name(f"trades_{label}"))
    name = spark_table_name(settings, TRADES)
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {settings.catalog.name}.{settings.catalog.namespace}")
    spark.sql(create_table_ddl(replace(TRADES, **changes), name))
    return settings, name


def test_a_trades_table_from_before_bar_eligible_gets_it_derived_for_stored_trades(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    before = Schema(*(f for f in TRADES.schema.fields if f.name != "bar_eligible"))
    settings, name = earlier_trades_table(bars_spark, bars_base_settings, "before_bar_eligible", schema=before)
    rows = [trade("ok", "AAPL", T0, 100.0, conditions=["1"], offset=1),
            trade("odd", "AAPL", T0, 101.0, conditions=["1", "12"], offset=2)]
    trades_df(bars_spark, rows).drop("bar_eligible").writeTo(name).append()
    ensure_tables(bars_spark, settings, (TRADES,))
    ensure_tables(bars_spark, settings, (TRADES,))  # the second time finds the column and changes nothing
    got = {r["trade_id"]: r["bar_eligible"] for r in bars_spark.table(name).collect()}
    assert got == {"ok": True, "odd": False}


def test_a_table_created_before_a_property_gets_it_and_one_set_on_purpose_is_kept(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    settings, name = earlier_trades_table(bars_spark, bars_base_settings, "before_dictionary_size", properties={})
    bars_spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ('write.target-file-size-bytes'='1048576')")

    def properties() -> dict[str, str]:
        return {row.key: row.value for row in bars_spark.sql(f"SHOW TBLPROPERTIES {name}").collect()}

    assert "write.parquet.dict-size-bytes" not in properties()
    ensure_tables(bars_spark, settings, (TRADES,))
    upgraded = properties()
    assert upgraded["write.parquet.dict-size-bytes"] == TRADES.properties["write.parquet.dict-size-bytes"]
    assert upgraded["write.target-file-size-bytes"] == "1048576"
    metadata = bars_spark.sql(f"SELECT max(timestamp) FROM {name}.metadata_log_entries").first()[0]
    ensure_tables(bars_spark, settings, (TRADES,))  # nothing missing: no commit
    assert bars_spark.sql(f"SELECT max(timestamp) FROM {name}.metadata_log_entries").first()[0] == metadata


def test_a_bars_table_from_before_last_event_time_gets_the_column_and_keeps_its_bars(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    settings = isolated(bars_base_settings, unique_name("before_last_event_time"))
    name = spark_table_name(settings, BARS_1M)
    before = Schema(*(f for f in BARS_1M.schema.fields if f.name != "last_event_time"))
    bars_spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {settings.catalog.name}.{settings.catalog.namespace}")
    bars_spark.sql(create_table_ddl(replace(BARS_1M, schema=before), name))
    old_bar = bars.bars_from_trades(trades_df(bars_spark, [trade("a", "AAPL", T0, 100.0, offset=1)]))
    old_bar.drop("last_event_time").writeTo(name).append()

    ensure_tables(bars_spark, settings, (BARS_1M,))
    metadata = bars_spark.sql(f"SELECT max(timestamp) FROM {name}.metadata_log_entries").first()[0]
    ensure_tables(bars_spark, settings, (BARS_1M,))  # the column is there now: no commit

    assert bars_spark.table(name).columns == BARS_1M.column_names
    assert [(r["close"], r["last_event_time"]) for r in bars_spark.table(name).collect()] == [(100.0, None)]
    assert bars_spark.sql(f"SELECT max(timestamp) FROM {name}.metadata_log_entries").first()[0] == metadata


def test_missing_properties_are_the_declared_ones_the_table_has_no_value_for_and_the_enforced_ones() -> None:
    declared = table_properties(TRADES)
    assert missing_properties(TRADES, {}) == declared
    # An operator's value is kept, except where the streams' correctness depends on the property.
    assert missing_properties(TRADES, {key: "other" for key in declared}) == {"commit.manifest-merge.enabled": "false"}
    assert missing_properties(TRADES, declared) == {}
    assert missing_properties(TRADES, {"write.parquet.dict-size-bytes": "1"}) == {
        key: value for key, value in declared.items() if key != "write.parquet.dict-size-bytes"
    }


@pytest.mark.parametrize("interval", ["5m", "1h", "1d"])
def test_rollup_of_1m_bars_equals_bars_computed_at_that_interval(bars_spark: Any, interval: str) -> None:
    rng = random.Random(3)
    rows = [
        trade(f"r{i}", rng.choice(["AAPL", "MSFT"]), T0 + timedelta(seconds=rng.uniform(-4000, 90000)),
              rng.randint(400, 800) / 4, volume=rng.choice([0, 1, 100, 300]), offset=i)
        for i in range(400)
    ]
    trades = trades_df(bars_spark, rows)
    columns = ["symbol", "window_start", "window_end", "open", "high", "low", "close", "volume",
               "trade_count"]
    rolled = bars.rollup_bars(bars.bars_from_trades(trades), interval).collect()
    direct = bars.bars_from_trades(trades, bars.INTERVAL_SECONDS[interval]).collect()
    key = lambda r: (r["symbol"], r["window_start"])  # noqa: E731
    rolled, direct = sorted(rolled, key=key), sorted(direct, key=key)
    assert [tuple(r[c] for c in columns) for r in rolled] == [tuple(r[c] for c in columns) for r in direct]
    for r, d in zip(rolled, direct, strict=True):
        if d["vwap"] is None:
            assert r["vwap"] is None
        else:
            assert r["vwap"] == pytest.approx(d["vwap"], rel=1e-12)


def test_rollup_rejects_unknown_intervals(bars_spark: Any) -> None:
    with pytest.raises(ValueError, match="interval"):
        bars.rollup_bars(trades_df(bars_spark, []), "7m")


# ---------------------------------------------------------------- the streaming job


def start(spark: Any, settings: Settings) -> Any:
    return start_bars_query(spark, settings)


def bars_lakehouse(spark: Any, base_settings: Settings, name: str) -> tuple[Settings, RawTable]:
    """Settings of a lakehouse of its own with the bars job's tables, and its stand-in raw job."""
    settings = isolated(base_settings, unique_name(name))
    ensure_tables(spark, settings, (TRADES, BARS_1M, LATE_TRADES))
    return settings, RawTable(spark, settings)


def test_streamed_bars_equal_an_independent_computation(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_exact")
    model, expected_late = WatermarkModel(), set()
    query = start(bars_spark, settings)
    try:
        # Five batches: the very late trades come from the fourth on, so two batches hold some.
        stream = generated_batches(seed=11, symbols=["AAPL", "MSFT", "TSLA", "VCB"], batches=5, per_batch=60)
        for batch in stream:
            fresh = raw.append(batch)
            expected_late |= model.late_ids(fresh)
            query.processAllAvailable()
    finally:
        query.stop()
    stored = list(raw.stored.values())
    assert expected_late, "the generated stream should contain trades beyond the lateness"
    applied = [t for t in stored if t["trade_id"] not in expected_late]
    assert stored_bars(bars_spark, settings) == reference_bars(applied)
    assert sorted(late_trade_ids(bars_spark, settings)) == sorted(expected_late)


def test_bars_caught_up_after_a_stop_agree_with_every_stored_trade(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    """The pipeline stops its raw query first; its bars query, a trigger behind, had not read the
    raw query's last commits, so after ``make demo`` the last minutes' bars disagreed with the
    trades. A clean stop now runs ``catch_up_bars`` once every query has stopped."""
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_catch_up")
    model, expected_late = WatermarkModel(), set()
    first, second = (generated_batches(seed=seed, symbols=symbols, batches=1, per_batch=40)[0]
                     for seed, symbols in ((5, ["AAPL", "MSFT"]), (6, ["AAPL", "TSLA"])))
    query = start(bars_spark, settings)
    try:
        expected_late |= model.late_ids(raw.append(first))
        query.processAllAvailable()
    finally:
        stop_between_batches(query)
    expected_late |= model.late_ids(raw.append(second))  # the raw query's last commit, after the bars stopped
    catch_up_bars(bars_spark, settings)
    assert not bars_spark.streams.active
    applied = [t for t in raw.stored.values() if t["trade_id"] not in expected_late]
    stored = stored_bars(bars_spark, settings)
    assert "TSLA" in {symbol for symbol, _ in stored}
    assert stored == reference_bars(applied)


def test_streamed_bars_over_hundreds_of_zipf_active_symbols_equal_an_independent_computation(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    """A whole market: 500 symbols, activity Zipf-distributed (rank r in proportion to r**-1.1), so
    each batch touches a few busy symbols many times and a long tail once or not at all."""
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_many_symbols")
    raw.raw_job_spec()  # as the raw job appends: hundreds of symbols in one file, not one file each
    names = [f"Z{rank:04d}" for rank in range(1, 501)]
    zipf_pool = [name for rank, name in enumerate(names, start=1) for _ in range(max(1, round(300 * rank ** -1.1)))]
    model, expected_late = WatermarkModel(), set()
    query = start(bars_spark, settings)
    try:
        for batch in generated_batches(seed=26, symbols=zipf_pool, batches=4, per_batch=800):
            fresh = raw.append(batch)
            expected_late |= model.late_ids(fresh)
            query.processAllAvailable()
    finally:
        query.stop()
    applied = [t for t in raw.stored.values() if t["trade_id"] not in expected_late]
    bars_stored = stored_bars(bars_spark, settings)
    assert len({symbol for symbol, _ in bars_stored}) > 300
    assert bars_stored == reference_bars(applied)
    assert sorted(late_trade_ids(bars_spark, settings)) == sorted(expected_late)


def test_late_trades_correct_their_bar_or_are_kept_aside_and_restart_does_not_double_count(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_late")
    at = lambda seconds: T0 + timedelta(seconds=seconds)  # noqa: E731
    key = lambda seconds: ("AAPL", epoch_us(at(seconds)) // MINUTE_US * MINUTE_US)  # noqa: E731

    query = start(bars_spark, settings)
    raw.append([trade(f"t{s}", "AAPL", at(s), 100 + s / 4) for s in range(10, 340, 30)])  # up to 14:35:40
    query.processAllAvailable()
    before = stored_bars(bars_spark, settings)  # watermark now 14:34:40

    raw.append([trade("within", "AAPL", at(285), 500.0, volume=7)])  # 14:34:45, its bar ends 14:35
    query.processAllAvailable()
    after_within = stored_bars(bars_spark, settings)
    assert len(after_within) == len(before)  # corrected in place, not a second row
    assert after_within[key(285)][1] == 500.0 and after_within[key(285)][5] == before[key(285)][5] + 1

    raw.append([trade("beyond", "AAPL", at(75), 1.0, volume=9)])  # 14:31:15, its bar closed at 14:32
    query.processAllAvailable()
    assert stored_bars(bars_spark, settings) == after_within  # bar unchanged
    assert late_trade_ids(bars_spark, settings) == ["beyond"]
    assert "beyond" in {r["trade_id"] for r in bars_spark.table(spark_table_name(settings, TRADES)).collect()}
    query.stop()

    # Crash after the last batch wrote its MERGEs but before Spark committed it: Spark replays it.
    commits = Path(checkpoint_location(settings)) / "commits"
    last = max(int(p.name) for p in commits.iterdir() if p.name.isdigit())
    (commits / str(last)).unlink()
    (commits / f".{last}.crc").unlink(missing_ok=True)
    raw.append([trade("after-restart", "AAPL", at(345), 99.0)])
    query = start(bars_spark, settings)
    query.processAllAvailable()
    replayed = [p["batchId"] for p in query.recentProgress if p["numInputRows"]]
    query.stop()
    assert replayed[0] == last, "the uncommitted batch should have been replayed"

    applied = [t for t in raw.stored.values() if t["trade_id"] != "beyond"]
    assert stored_bars(bars_spark, settings) == reference_bars(applied)
    assert late_trade_ids(bars_spark, settings) == ["beyond"]

    rebuild_days(bars_spark, settings, [T0.date()])  # the correction: late trades count once rebuilt
    rebuilt = stored_bars(bars_spark, settings)
    assert rebuilt == reference_bars(list(raw.stored.values()))
    assert rebuilt[key(75)][2] == 1.0  # "beyond" is that bar's low now


def bars_commits(spark: Any, settings: Settings) -> list[dict[str, str]]:
    """The summaries of the bars stream's commits to ``bars_1m``, oldest first."""
    from lakehouse.bars_commit import BATCH_PROPERTY

    return [row.summary for row in spark.sql(
        f"SELECT summary FROM {spark_table_name(settings, BARS_1M)}.snapshots "
        f"WHERE summary['{BATCH_PROPERTY}'] IS NOT NULL ORDER BY committed_at").collect()]


def test_a_bars_batch_replaces_one_open_bars_file_whatever_the_number_of_symbols_and_the_fold_moves_closed_bars(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    """300 symbols, each trading in every minute: a bars commit adds one open-bars file and, when
    bars closed, one closed-bars file (the day's), and drops the open-bars file before it, where a
    MERGE into (day, symbol) files wrote one per symbol. The open-bars file holds exactly the bars
    still open; a fold moves the closed bars into day-symbol files and leaves it alone; the bars stay
    exact before and after, and through the next batches."""
    from pyspark.sql import functions as F

    from lakehouse.bars_commit import OPEN_FILES_PROPERTY, open_bars_files
    from lakehouse.fold import fold_appended_files

    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_files")
    raw.raw_job_spec()  # as the raw job appends: the 300 symbols in one file, not one file each
    table = spark_table_name(settings, BARS_1M)
    symbols = [f"F{n:03d}" for n in range(300)]
    minute_trades = lambda minute: [  # noqa: E731
        trade(f"f{minute}-{n}-{s}", s, T0 + timedelta(minutes=minute, seconds=5 + 20 * n), 10.0 + n + minute)
        for s in symbols for n in range(2)]
    query = start(bars_spark, settings)
    try:
        for minute in range(4):
            raw.append(minute_trades(minute))
            query.processAllAvailable()
    finally:
        query.stop()
    commits = bars_commits(bars_spark, settings)
    assert len(commits) == 4
    assert [int(c["added-data-files"]) for c in commits] == [1, 1, 2, 2]  # open; open + closed
    assert [int(c.get("deleted-data-files", 0)) for c in commits] == [0, 1, 1, 1]  # the open one before
    expected = reference_bars(list(raw.stored.values()))
    assert stored_bars(bars_spark, settings) == expected

    open_paths = commits[-1][OPEN_FILES_PROPERTY].split(",")
    in_open = bars_spark.table(table).where(F.col("_file").isin(open_paths))
    # High-water mark 14:33:25, lateness 60 s: the windows from 14:32 on are still open.
    assert in_open.count() == 2 * len(symbols)
    assert {r.start for r in in_open.select(F.minute("window_start").alias("start")).distinct().collect()} == {32, 33}

    # Every bar is still in a day-only file: readers find the symbols in the rows.
    assert Lakehouse(settings).symbols() == symbols

    report = fold_appended_files(bars_spark, table, BARS_1M, keep=open_bars_files)
    assert (report.folded_files, report.written_files, report.rows) == (2, len(symbols), 2 * len(symbols))
    files = bars_spark.sql(f"SELECT file_path, partition.symbol AS symbol FROM {table}.files").collect()
    assert sorted(f.file_path for f in files if f.symbol is None) == sorted(open_paths)
    assert stored_bars(bars_spark, settings) == expected
    assert Lakehouse(settings).symbols() == symbols

    query = start(bars_spark, settings)  # a restart finds the open-bars file in the table
    try:
        raw.append(minute_trades(4))
        query.processAllAvailable()
    finally:
        query.stop()
    last = bars_commits(bars_spark, settings)[-1]
    assert (int(last["added-data-files"]), int(last["deleted-data-files"])) == (2, 1)
    assert stored_bars(bars_spark, settings) == reference_bars(list(raw.stored.values()))


def test_open_bars_files_rewritten_under_the_stream_have_their_bars_replaced_by_key(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    """Compaction rewrote the open-bars file (the stream's commit then misses the file it replaces):
    the stream deletes those bars by key and writes them again, one row per bar."""
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_rewritten")
    namespace_table = spark_table_name(settings, BARS_1M).split(".", 1)[1]
    query = start(bars_spark, settings)
    try:
        raw.append([trade(f"r{s}-{sym}", sym, T0 + timedelta(seconds=s), 10.0 + s)
                    for s in range(0, 100, 10) for sym in ("RWA", "RWB")])
        query.processAllAvailable()
        bars_spark.sql(f"CALL {settings.catalog.name}.system.rewrite_data_files(table => '{namespace_table}', "
                       "options => map('rewrite-all', 'true'))")
        raw.append([trade(f"q{s}-{sym}", sym, T0 + timedelta(seconds=s), 20.0 + s)
                    for s in range(85, 130, 5) for sym in ("RWA", "RWB")])
        query.processAllAvailable()
    finally:
        query.stop()
    assert stored_bars(bars_spark, settings) == reference_bars(list(raw.stored.values()))


def test_a_micro_batch_over_several_appends_counts_the_trades_of_an_append_that_merged_manifests(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    """A bars micro-batch that spans several appends of ``trades`` (the stream fell behind) counts
    every trade of each. Iceberg's streaming source drops the files of a snapshot in the middle of
    such a batch when that snapshot also wrote a merged manifest, as an append of the append spec
    did over the older day-symbol manifests while the table merged manifests: its bars lost those
    trades. ``trades`` merges none, so no append owns a manifest of existing files."""
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_merged_manifests")
    trades_table = spark_table_name(settings, TRADES)

    def minute(tag: str, at: int) -> list[dict[str, Any]]:
        return [trade(f"{tag}-{s}-{sym}", sym, T0 + timedelta(seconds=at + s), 10.0 + s)
                for s in (0, 7) for sym in ("MMA", "MMB", "MMC")]

    query = start(bars_spark, settings)
    try:
        raw.append(minute("a", 0))
        query.processAllAvailable()
    finally:
        query.stop()
    # While the stream is stopped: day-symbol appends, then one of the append spec, then another.
    raw.append(minute("b", 10))
    raw.append(minute("c", 20))
    raw.append(minute("d", 30), spec_id=append_spec_id(bars_spark, TRADES, trades_table))
    raw.append(minute("e", 40))
    query = start(bars_spark, settings)  # one batch over the four appends
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    owned_existing = bars_spark.sql(
        f"SELECT s.snapshot_id, m.existing_data_files_count FROM {trades_table}.snapshots s "
        f"JOIN {trades_table}.all_manifests m ON m.added_snapshot_id = s.snapshot_id "
        "WHERE s.operation = 'append' AND m.existing_data_files_count > 0").collect()
    assert stored_bars(bars_spark, settings) == reference_bars(list(raw.stored.values()))
    assert owned_existing == []


def open_bars_paths(spark: Any, settings: Settings) -> set[str]:
    """The open-bars files the newest bars commit names, of those the table holds."""
    table = spark_table_name(settings, BARS_1M)
    java_table = iceberg_table(spark, table)
    named = open_bars_files(java_table, java_table.currentSnapshot())
    return {row.file_path for row in spark.sql(f"SELECT file_path FROM {table}.files").collect()} & named


def test_maintenance_keeps_out_of_open_bars_and_commits_racing_other_compactions_are_retried(
    bars_spark: Any, bars_base_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Maintenance keeps out of the days the stream holds open bars of, even days the clock calls
    closed (a replay of history). A compaction that does not (an operator's, every 3 s here)
    rewrites the open-bars files under the stream: the stream replaces those bars by key, retries
    the commits and deletes that lose a race to a compaction (as often as the timing makes them),
    keeps running, and stores every bar once. Batches go on until such a race was met, and one more."""
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_racing")
    namespace_table = spark_table_name(settings, BARS_1M).split(".", 1)[1]
    caplog.set_level(logging.WARNING, logger="bars.commit")
    racing, compactions = threading.Event(), []

    def compact_in_a_loop() -> None:
        session = bars_spark.newSession()
        while not racing.is_set():
            try:
                session.sql(f"CALL {settings.catalog.name}.system.rewrite_data_files(table => '{namespace_table}', "
                            "options => map('rewrite-all', 'true'))")
                compactions.append("committed")
            except Exception as error:  # the stream committed first: compaction's own conflict
                compactions.append(type(error).__name__)
            racing.wait(3.0)  # back to back, compactions would starve any MERGE

    def retried() -> list[str]:  # a commit that found its open-bars file gone, or lost a race and retried
        return [r.getMessage() for r in caplog.records
                if "rewritten by another commit" in r.getMessage() or "refused (attempt" in r.getMessage()]

    query = start(bars_spark, settings)
    compactor = threading.Thread(target=compact_in_a_loop, name="compaction-loop", daemon=True)
    try:
        for minute in (0, 5):  # the second closes the first's bars: an open-bars file and a closed one
            raw.append([trade(f"a{minute}-{s}-{sym}", sym, T0 + timedelta(minutes=minute, seconds=s), 10.0 + s)
                        for s in range(0, 60, 10) for sym in ("RCA", "RCB")])
            query.processAllAvailable()
        open_files = open_bars_paths(bars_spark, settings)
        report = maintain(bars_spark, settings.catalog.name, namespace_table, MaintenancePolicy(), definition=BARS_1M)
        assert report.succeeded and open_bars_paths(bars_spark, settings) == open_files != set()
        compactor.start()
        for batch in range(1, 41):
            raced = bool(retried())  # a race met already: this batch shows the stream goes on past it
            raw.append([trade(f"b{batch}-{s}-{sym}", sym, T0 + timedelta(minutes=5, seconds=5 * batch + s), 20.0 + s)
                        for s in (0, 1) for sym in ("RCA", "RCB")])
            query.processAllAvailable()
            if raced:
                break
        assert query.isActive, query.exception()
    finally:
        racing.set()
        compactor.join(timeout=120)
        query.stop()
    assert retried(), f"no commit met a race in 40 batches beside {len(compactions)} compactions"
    assert "committed" in compactions
    assert stored_bars(bars_spark, settings) == reference_bars(list(raw.stored.values()))


def test_steady_bars_batches_reuse_their_generated_code(bars_spark: Any, bars_base_settings: Settings) -> None:
    """A batch shaped like the one before compiles no new code: the watermark and the update time
    used to be literals in the plans, inlined by Spark into new classes every batch."""
    from lakehouse.spark import generated_classes_compiled

    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_codegen")
    symbols = ("AAPL", "MSFT")
    query = start(bars_spark, settings)
    compiled = []
    try:
        for minute in range(4):  # a new window per batch, each after the watermark has moved
            raw.append([
                trade(f"c{minute}-{s}-{sym}", sym, T0 + timedelta(minutes=minute, seconds=s), 10.0 + s)
                for s in (1, 30) for sym in symbols
            ])
            query.processAllAvailable()
            compiled.append(generated_classes_compiled(bars_spark))
    finally:
        query.stop()
    # The first batch reads the table and the second closes no bar; the third and fourth each close one.
    assert compiled[3] == compiled[2], f"classes compiled so far after each batch: {compiled}"
    assert stored_bars(bars_spark, settings) == reference_bars(list(raw.stored.values()))


def test_windows_met_after_tracking_began_are_built_from_their_batches_alone(
    bars_spark: Any, bars_base_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # The first batch cannot know what the table held before the job: it reads the windows it meets.
    # From the first window after every stored trade on, a window's first trades are all there is.
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_tracked")
    symbols = ("AAPL", "MSFT")
    caplog.set_level(logging.INFO, logger="bars")
    query = start(bars_spark, settings)
    try:
        raw.append([trade(f"a{s}{sym}", sym, T0 + timedelta(seconds=s), 10.0) for s in (5, 50) for sym in symbols])
        query.processAllAvailable()
        progress = BarsProgressLog(f"{checkpoint_location(settings)}/high_water_mark").before(10**9)
        caplog.clear()
        for minute in (1, 2):
            raw.append([
                trade(f"m{minute}{s}{sym}", sym, T0 + timedelta(minutes=minute, seconds=s), 10.0 + minute)
                for s in (1, 30) for sym in symbols
            ])
            query.processAllAvailable()
    finally:
        query.stop()
    assert progress.tracked_from_us == epoch_us(T0) + MINUTE_US
    merged = [record.getMessage() for record in caplog.records if "bars changed" in record.getMessage()]
    assert len(merged) == 2 and all("(0 built from the table)" in message for message in merged), merged
    assert stored_bars(bars_spark, settings) == reference_bars(list(raw.stored.values()))


def test_a_bars_job_stopped_past_the_kept_history_fails_clearly_and_recovers_on_a_new_checkpoint_and_a_rebuild(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    # README: maintenance caps the snapshots kept. A bars job stopped for longer than that cannot
    # resume where it was: a new checkpoint streams on from the oldest snapshot kept, and the
    # trades of the expired snapshots reach their bars through rebuild_bars.
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_expired")
    symbols = ("AAPL", "MSFT")

    def minute_of_trades(minute: int, price: float) -> list[dict[str, Any]]:
        return [trade(f"m{minute}{sym}", sym, T0 + timedelta(minutes=minute, seconds=5), price) for sym in symbols]

    query = start(bars_spark, settings)
    try:
        raw.append(minute_of_trades(0, 10.0) + minute_of_trades(1, 11.0))
        query.processAllAvailable()
    finally:
        query.stop()
    for minute in (2, 3):  # committed while the job is stopped, then expired with all the rest
        raw.append(minute_of_trades(minute, 20.0 + minute))
    maintain(bars_spark, settings.catalog.name, f"{settings.catalog.namespace}.{TRADES.name}",
             MaintenancePolicy(snapshot_retention=timedelta(hours=6), retain_last_snapshots=1, max_snapshots=1))

    query = start(bars_spark, settings)
    with pytest.raises(Exception, match="the snapshot was expired or removed"):
        query.processAllAvailable()
    query.stop()
    fresh_checkpoint = settings.with_streaming(checkpoint_dir=f"{settings.streaming.checkpoint_dir}-new")
    query = start(bars_spark, fresh_checkpoint)
    try:
        raw.append(minute_of_trades(4, 30.0))
        query.processAllAvailable()
    finally:
        query.stop()
    streamed = stored_bars(bars_spark, settings)
    rebuild_days(bars_spark, settings, [T0.date()])

    expected = reference_bars(list(raw.stored.values()))
    assert {key: bar for key, bar in streamed.items() if key[1] == epoch_us(T0) + 4 * MINUTE_US} == {
        key: bar for key, bar in expected.items() if key[1] == epoch_us(T0) + 4 * MINUTE_US}
    assert stored_bars(bars_spark, settings) == expected and len(expected) == 10  # 2 symbols x 5 minutes


@pytest.fixture(autouse=True)
def _no_leftover_queries(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "bars_spark" in request.fixturenames:
        spark = request.getfixturevalue("bars_spark")
        for query in spark.streams.active:
            query.stop()


def test_a_restarted_job_keeps_future_dated_trades_stored_before_the_restart_in_their_bar(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    # A trade stamped an hour ahead of its ingest time (a bad exchange clock) opens a window that no
    # watermark closes; after a restart that window's first trade is only in the table.
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_future")
    ahead = (datetime.now(UTC) + timedelta(hours=1)).replace(second=5, microsecond=0)
    query = start(bars_spark, settings)
    raw.append([trade("ahead-1", "AAPL", ahead, 20.0)])
    query.processAllAvailable()
    query.stop()

    query = start(bars_spark, settings)
    raw.append([trade("ahead-2", "AAPL", ahead + timedelta(seconds=10), 21.0)])
    query.processAllAvailable()
    query.stop()
    stored = stored_bars(bars_spark, settings)
    assert stored == reference_bars(list(raw.stored.values()))
    assert [bar[5] for bar in stored.values()] == [2]  # both trades, one bar


def test_a_future_dated_trade_in_a_backlog_does_not_make_the_rest_of_the_backlog_late(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    # The raw job catching up after a stop stores half an hour of trades now; one of them carries an
    # exchange time an hour ahead. Capped at its ingest time alone it moved the watermark to now.
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_backlog_future")
    behind = (datetime.now(UTC) - timedelta(minutes=30)).replace(second=0, microsecond=0)
    bad_clock = {**trade("bad-clock", "AAPL", datetime.now(UTC) + timedelta(hours=1), 10.0),
                 "received_time": behind + timedelta(seconds=20)}
    query = start(bars_spark, settings)
    try:
        raw.append([trade("b1", "AAPL", behind + timedelta(seconds=10), 10.0), bad_clock])
        query.processAllAvailable()
        raw.append([trade("b2", "AAPL", behind + timedelta(seconds=40), 11.0),
                    trade("b3", "AAPL", behind + timedelta(seconds=70), 12.0)])
        query.processAllAvailable()
    finally:
        query.stop()
    assert late_trade_ids(bars_spark, settings) == []
    assert stored_bars(bars_spark, settings) == reference_bars(list(raw.stored.values()))


def test_two_trades_sharing_an_id_across_symbols_both_make_bars_when_their_windows_are_read_from_the_table(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    # docs/contracts.md: a trade_id reused with another symbol is a trade of its own, stored as a
    # second row. The job's first batch reads its windows from the table, where a dedupe on the id
    # alone kept one of the two rows and left the other symbol without its bar.
    settings, _ = bars_lakehouse(bars_spark, bars_base_settings, "bars_shared_id")
    rows = [{**trade("shared", symbol, T0 + timedelta(seconds=5), price, offset=offset),
             "ingested_time": datetime.now(UTC)}
            for symbol, price, offset in (("AAPL", 10.0, 1), ("MSFT", 20.0, 2))]
    trades_df(bars_spark, rows).writeTo(spark_table_name(settings, TRADES)).append()
    query = start(bars_spark, settings)
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    expected = reference_bars(rows)
    assert stored_bars(bars_spark, settings) == expected
    assert len(expected) == 2


def test_late_trades_sharing_an_id_across_symbols_are_each_recorded_once(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    # Two trades of one trade_id (two symbols: two trades, docs/contracts.md) arriving late in two
    # batches: the late_trades MERGE matched on the id alone and never recorded the second.
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_late_shared_id")
    late = lambda symbol, offset: {  # noqa: E731
        **trade("shared", symbol, T0 + timedelta(seconds=5), 1.0, offset=offset), "ingested_time": datetime.now(UTC)}
    query = start(bars_spark, settings)
    try:
        raw.append([trade("early", "AAPL", T0, 10.0), trade("ahead", "AAPL", T0 + timedelta(minutes=3), 11.0)])
        query.processAllAvailable()
        for offset, symbol in enumerate(("AAPL", "MSFT"), start=100):
            trades_df(bars_spark, [late(symbol, offset)]).writeTo(spark_table_name(settings, TRADES)).append()
            query.processAllAvailable()
    finally:
        query.stop()
    recorded = bars_spark.table(spark_table_name(settings, LATE_TRADES)).select("trade_id", "symbol").collect()
    assert sorted(tuple(r) for r in recorded) == [("shared", "AAPL"), ("shared", "MSFT")]
    assert stored_bars(bars_spark, settings) == reference_bars(list(raw.stored.values()))


def test_a_longer_lateness_after_a_restart_reopens_no_closed_bar(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    # The operator raises streaming.allowed_lateness_seconds and restarts the job: the watermark
    # computed anew moved back, a trade for a bar already closed (final, appended) counted as on time,
    # and its partial alone was written as a second row of that bar.
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_lateness_raised")
    query = start(bars_spark, settings)
    try:
        raw.append([trade("before", "AAPL", T0 - timedelta(minutes=5), 9.0)])  # tracking starts at T0 - 4 min
        query.processAllAvailable()
        raw.append([trade("w0", "AAPL", T0 + timedelta(seconds=5), 10.0),
                    trade("ahead", "AAPL", T0 + timedelta(minutes=3), 11.0)])  # "ahead" closes T0's bar
        query.processAllAvailable()
    finally:
        query.stop()
    query = start(bars_spark, settings.with_streaming(allowed_lateness_seconds=600))
    try:
        raw.append([trade("after-raise", "AAPL", T0 + timedelta(seconds=30), 1.0)])
        query.processAllAvailable()
    finally:
        query.stop()
    applied = [t for t in raw.stored.values() if t["trade_id"] != "after-raise"]
    assert stored_bars(bars_spark, settings) == reference_bars(applied)
    assert late_trade_ids(bars_spark, settings) == ["after-raise"]


def test_an_append_split_over_two_batches_is_counted_once_in_a_bar_read_from_the_table(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    # streaming-max-rows-per-micro-batch (bars --max-rows-per-batch) may end a batch inside one raw
    # append (its files); the first batch read the window's trades from the table up to that
    # append's ingest time, the rest of the append included, and the next batch added them again.
    settings, _ = bars_lakehouse(bars_spark, bars_base_settings, "bars_split_append")
    now = datetime.now(UTC)
    rows = [{**trade(f"s{i}", "AAPL", T0 + timedelta(seconds=5 + i), 10.0 + i, offset=i), "ingested_time": now}
            for i in range(4)]
    (trades_df(bars_spark, rows).repartition(4).writeTo(spark_table_name(settings, TRADES))
     .option("distribution-mode", "none").option("fanout-enabled", "true").append())  # one append, several files
    query = start_bars_query(bars_spark, settings, max_rows_per_batch=1)
    try:
        query.processAllAvailable()
        batches = [p["numInputRows"] for p in query.recentProgress if p["numInputRows"]]
    finally:
        query.stop()
    assert len(batches) > 1, f"the append should have been split over batches: {batches}"
    assert stored_bars(bars_spark, settings) == reference_bars(rows)


def test_rebuilding_a_day_replaces_its_bars_with_ones_from_every_stored_trade(
    bars_spark: Any, bars_base_settings: Settings
) -> None:
    settings, raw = bars_lakehouse(bars_spark, bars_base_settings, "bars_rebuild")
    day, next_day = T0.date(), (T0 + timedelta(days=1)).date()
    at = lambda seconds, base=T0: base + timedelta(seconds=seconds)  # noqa: E731
    rng = random.Random(5)
    first_day = [
        trade(f"d1-{i}", rng.choice(["AAPL", "MSFT"]), at(rng.randrange(0, 600)), 100 + rng.randrange(40) / 4,
              volume=rng.randrange(1, 9), conditions=rng.choice([["1"], ["1"], ["1", "12"]]),
              partition=rng.choice([0, 0, 0, 1]))
        for i in range(200)
    ]
    later = T0 + timedelta(days=1)
    second_day = [trade(f"d2-{i}", "AAPL", at(i * 7, later), 50.0 + i) for i in range(20)]
    raw.append(first_day + second_day)
    table = spark_table_name(settings, BARS_1M)
    schema = bars_spark.table(table).schema
    stale = lambda symbol, moment: (symbol, moment, moment + timedelta(minutes=1), 1.0, 1.0, 1.0, 1.0, 1.0, 1,  # noqa: E731
                                    1.0, moment, moment)
    bars_spark.createDataFrame(
        [stale("AAPL", T0), stale("GONE", T0 + timedelta(minutes=3)), stale("KEEP", later)], schema
    ).writeTo(table).append()

    report = rebuild_days(bars_spark, settings, [day])
    expected_first_day = reference_bars(first_day_rows := [raw.stored[t["trade_id"]] for t in first_day])
    assert first_day_rows and report.bars_written == len(expected_first_day) and report.bars_replaced == 2
    keep = ("KEEP", epoch_us(later))
    stored = stored_bars(bars_spark, settings)
    assert stored == {**expected_first_day, keep: stored[keep]}

    again = rebuild_days(bars_spark, settings, [day])  # a re-run changes nothing
    assert again.bars_written == again.bars_replaced == len(expected_first_day)
    assert set(stored_bars(bars_spark, settings)) == {*expected_first_day, keep}

    rebuild_days(bars_spark, settings, [next_day], symbols=["AAPL"])  # KEEP's bar is not AAPL's: it stays
    expected_second_day = reference_bars([raw.stored[t["trade_id"]] for t in second_day])
    stored = stored_bars(bars_spark, settings)
    assert {k: v for k, v in stored.items() if k != keep} == {**expected_first_day, **expected_second_day}
    assert keep in stored


def test_only_days_the_streaming_job_has_closed_can_be_rebuilt() -> None:
    now = datetime(2026, 2, 26, 0, 0, 30, tzinfo=UTC)
    days = [datetime(2026, 2, 24).date(), datetime(2026, 2, 25).date(), datetime(2026, 2, 26).date()]
    assert open_days(days, now, allowed_lateness_seconds=60) == days[1:]  # the 25th closes at 00:01
    assert open_days(days, now + timedelta(seconds=31), allowed_lateness_seconds=60) == days[2:]
