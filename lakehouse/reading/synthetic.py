"""Made-up but market-shaped data written straight into the lakehouse tables, for tests,
benchmarks and notebooks run before any pipeline has.

Shapes follow the real thing: a US regular session (13:30-20:00 UTC), trade arrival that is busy at
the open and close and quiet at midday, prices that share a market factor (so symbols correlate),
Finnhub condition codes (a few odd lots, which the bar rule leaves out), 1-minute bars computed from
the trades by the same rule as ``lakehouse.bars`` (in pandas), and a few feed gaps, late trades and
quarantined messages for the data-quality views.

Writes go through pyiceberg into tables created from the ``TableDef``s with their partition specs.
Each commit writes one Parquet file per partition and registers it with ``add_files``: pyiceberg's
own ``append`` computes the ``days(...)`` partition values with the optional ``pyiceberg-core``
package, which this project does not install.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform

from lakehouse.catalog import jdbc_uri, load_catalog, table_identifier
from lakehouse.conditions import is_bar_eligible
from lakehouse.settings import Settings
from lakehouse.tables import (
    ALL_TABLES,
    BARS_1M,
    COMMON_PROPERTIES,
    FEED_EVENTS,
    LATE_TRADES,
    QUARANTINE,
    TRADES,
    TableDef,
    partition_field_name,
    partition_source,
)

US_SESSION_OPEN = timedelta(hours=13, minutes=30)
SESSION_MINUTES = 390
DEMO_SYMBOLS = ("AAPL", "MSFT", "AMZN", "NVDA", "TSLA")
DEMO_DAY = date(2026, 1, 5)
_PARTITION_FIELD_ID = 1000


# -- tables -----------------------------------------------------------------------------------


def partition_spec(table: TableDef) -> PartitionSpec:
    """The pyiceberg spec for ``table.partition_by`` (Spark's ``symbol`` / ``days(col)`` syntax),
    with the field names Spark gives them (``symbol``, ``event_time_day``)."""
    fields = []
    for offset, expression in enumerate(table.partition_by):
        column, is_day = partition_source(expression)
        fields.append(
            PartitionField(
                source_id=table.schema.find_field(column).field_id,
                field_id=_PARTITION_FIELD_ID + offset,
                transform=DayTransform() if is_day else IdentityTransform(),
                name=partition_field_name(expression),
            )
        )
    return PartitionSpec(*fields)


def create_tables(settings: Settings, tables: Iterable[TableDef] = ALL_TABLES) -> Catalog:
    """Create the namespace and any missing ``tables`` (idempotent); return the catalog."""
    uri = jdbc_uri(settings)
    if uri.startswith("jdbc:sqlite:"):  # SQLite creates the file, not the folder it lives in
        Path(uri.removeprefix("jdbc:sqlite:")).parent.mkdir(parents=True, exist_ok=True)
    catalog = load_catalog(settings)
    catalog.create_namespace_if_not_exists(settings.catalog.namespace)
    for table in tables:
        catalog.create_table_if_not_exists(
            table_identifier(settings, table),
            schema=table.schema,
            partition_spec=partition_spec(table),
            properties={**COMMON_PROPERTIES, **table.properties},
        )
    return catalog


def _partition_values(table: Table, rows: pa.Table) -> list[tuple[str, pa.Table]]:
    """Split ``rows`` by the table's partition spec: (Hive-style path, rows) per partition."""
    schema = table.schema()
    keys: list[pa.Array] = []
    names: list[str] = []
    for field in table.spec().fields:
        column = rows.column(schema.find_column_name(field.source_id))
        if isinstance(field.transform, DayTransform):
            micros = pc.cast(pc.cast(column, pa.timestamp("us", tz="UTC")), pa.int64())
            column = pc.cast(pc.divide(micros, 86_400_000_000), pa.int32()).cast(pa.date32())
        keys.append(column)
        names.append(field.name)
    if not names:
        return [("", rows)]
    keyed = rows.append_column("__row", pa.array(np.arange(rows.num_rows)))
    for name, key in zip(names, keys, strict=True):
        keyed = keyed.append_column(f"__key_{name}", key)
    key_columns = [f"__key_{n}" for n in names]
    groups = keyed.group_by(key_columns).aggregate([("__row", "list")])
    parts = []
    for group in groups.to_pylist():
        path = "/".join(f"{n}={group[f'__key_{n}']}" for n in names)
        parts.append((path, rows.take(pa.array(group["__row_list"]))))
    return parts


def append_rows(table: Table, rows: pa.Table) -> None:
    """Append ``rows`` (the table's schema) as one commit: one Parquet file per partition."""
    if rows.num_rows == 0:
        return
    schema = table.schema()
    rows = rows.select([f.name for f in schema.fields]).cast(schema.as_arrow())
    paths = []
    for partition_path, part in _partition_values(table, rows):
        path = f"{table.location()}/data/{partition_path}/{uuid.uuid4().hex}.parquet"
        with table.io.new_output(path).create(overwrite=True) as out:
            pq.write_table(part, out, compression="zstd")
        paths.append(path)
    table.add_files(paths, check_duplicate_files=False)


# -- market data ------------------------------------------------------------------------------


def session_open(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + US_SESSION_OPEN


def _minute_returns(rng: np.random.Generator, symbols: Sequence[str], minutes: int) -> np.ndarray:
    """Log returns per (symbol, minute): a shared market factor plus each symbol's own noise."""
    market = rng.normal(0.0, 0.0006, minutes)
    betas = rng.uniform(0.6, 1.4, len(symbols))
    own = rng.normal(0.0, 0.0008, (len(symbols), minutes))
    return betas[:, None] * market[None, :] + own


def _activity(minutes: int) -> np.ndarray:
    """Relative trading intensity through the session: U-shaped, busiest at open and close."""
    position = (np.arange(minutes) - (minutes - 1) / 2) / ((minutes - 1) / 2)
    return 1.0 + 2.5 * position**2


def _trade_id(symbol: str, event_micros: int, sequence: int) -> str:
    return hashlib.sha1(f"finnhub|{symbol}|{event_micros}|{sequence}".encode()).hexdigest()[:24]


def synthetic_trades(
    symbols: Sequence[str] = DEMO_SYMBOLS,
    day: date = DEMO_DAY,
    trades_per_minute: float = 12.0,
    seed: int = 7,
) -> pd.DataFrame:
    """One session of trades for ``symbols`` in the ``trades`` schema, ordered by event time."""
    rng = np.random.default_rng(seed)
    returns = _minute_returns(rng, symbols, SESSION_MINUTES)
    activity = _activity(SESSION_MINUTES)
    opened = pd.Timestamp(session_open(day))
    frames = []
    for index, symbol in enumerate(symbols):
        start_price = rng.uniform(40, 600)
        minute_close = start_price * np.exp(np.cumsum(returns[index]))
        minute_open = np.concatenate([[start_price], minute_close[:-1]])
        counts = rng.poisson(trades_per_minute * activity)
        minute = np.repeat(np.arange(SESSION_MINUTES), counts)
        fraction = rng.uniform(0, 1, minute.size)
        # Price drifts from the minute's open to its close, with a little bid/ask bounce.
        path = minute_open[minute] * (minute_close[minute] / minute_open[minute]) ** fraction
        price = np.round(path * np.exp(rng.normal(0, 0.0002, minute.size)), 2)
        event_micros = (opened.value // 1000 + ((minute + fraction) * 60e6).astype(np.int64))
        order = np.argsort(event_micros, kind="stable")
        event_micros, price = event_micros[order], price[order]
        volume = rng.choice([1, 5, 10, 50, 100, 200, 500], minute.size, p=[.05, .1, .2, .2, .3, .1, .05])
        odd_lot = rng.uniform(0, 1, minute.size) < 0.03
        received = event_micros + rng.integers(5_000, 80_000, minute.size)
        frames.append(pd.DataFrame({
            "trade_id": [_trade_id(symbol, int(t), i) for i, t in enumerate(event_micros)],
            "source": "finnhub",
            "symbol": symbol,
            "price": price,
            "volume": volume.astype(float),
            "event_time": pd.to_datetime(event_micros, unit="us", utc=True),
            "conditions": [["1", "12"] if odd else ["1"] for odd in odd_lot],
            "venue": None,
            "received_time": pd.to_datetime(received, unit="us", utc=True),
            "ingested_time": pd.to_datetime(received + 1_500_000, unit="us", utc=True),
            "kafka_partition": index % 4,
            "kafka_offset": np.arange(minute.size, dtype=np.int64),
            "bar_eligible": [is_bar_eligible("finnhub", ["1", "12"] if odd else ["1"]) for odd in odd_lot],
        }))
    return pd.concat(frames, ignore_index=True).sort_values(["event_time", "symbol"], ignore_index=True)


def bars_from_trades(trades: pd.DataFrame, seconds: int = 60) -> pd.DataFrame:
    """Bars (1-minute by default) in the ``bars_1m`` schema from trades, by the rule of
    ``lakehouse.bars``: bar-eligible trades only, open/close by (event_time, kafka_partition,
    kafka_offset, trade_id). ``updated_time`` is a few seconds after the bar's last ingestion."""
    eligible = trades[[is_bar_eligible(s, c) for s, c in zip(trades["source"], trades["conditions"], strict=True)]]
    ordered = eligible.sort_values(["event_time", "kafka_partition", "kafka_offset", "trade_id"]).assign(
        window_start=lambda f: f["event_time"].dt.floor(f"{seconds}s"),
        notional=lambda f: f["price"] * f["volume"],
    )
    bars = ordered.groupby(["symbol", "window_start"], sort=True).agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("volume", "sum"),
        trade_count=("price", "size"),
        notional=("notional", "sum"),
        last_ingested=("ingested_time", "max"),
        last_event_time=("event_time", "max"),
    ).reset_index()
    bars["window_end"] = bars["window_start"] + pd.Timedelta(seconds=seconds)
    bars["vwap"] = (bars["notional"] / bars["volume"]).where(bars["volume"] != 0)
    bars["updated_time"] = bars["last_ingested"] + pd.Timedelta(seconds=5)
    return bars.loc[:, BARS_1M.column_names]


def synthetic_minute_bars(symbols: Sequence[str], day: date, seed: int = 7) -> pd.DataFrame:
    """A session of 1-minute bars generated directly (no trades): cheap bulk data for benchmarks."""
    rng = np.random.default_rng([seed, day.toordinal()])
    returns = _minute_returns(rng, symbols, SESSION_MINUTES)
    starts = pd.date_range(session_open(day), periods=SESSION_MINUTES, freq="1min")
    activity = _activity(SESSION_MINUTES)
    frames = []
    for index, symbol in enumerate(symbols):
        close = rng.uniform(40, 600) * np.exp(np.cumsum(returns[index]))
        open_ = np.concatenate([[close[0]], close[:-1]])
        wiggle = np.abs(rng.normal(0, 0.0005, (2, SESSION_MINUTES)))
        trade_count = rng.poisson(12 * activity) + 1
        volume = trade_count * rng.uniform(50, 150, SESSION_MINUTES)
        frames.append(pd.DataFrame({
            "symbol": symbol,
            "window_start": starts,
            "window_end": starts + pd.Timedelta(minutes=1),
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wiggle[0]),
            "low": np.minimum(open_, close) * (1 - wiggle[1]),
            "close": close,
            "volume": volume,
            "trade_count": trade_count.astype(np.int64),
            "vwap": (open_ + close) / 2,
            "updated_time": starts + pd.Timedelta(minutes=1, seconds=5),
            # Its own generator, so the prices above stay what they were before this column existed.
            "last_event_time": starts + pd.to_timedelta(
                np.random.default_rng([seed, day.toordinal(), index]).integers(0, 60_000_000, SESSION_MINUTES),
                unit="us"),
        }))
    return pd.concat(frames, ignore_index=True)


# -- data-quality rows ------------------------------------------------------------------------


def synthetic_feed_gaps(day: date = DEMO_DAY) -> pd.DataFrame:
    opened = pd.Timestamp(session_open(day))
    gaps = [(None, 47, 95, "websocket closed by server (1006)"), ("NVDA", 201, 12, "symbol unsubscribed"),
            (None, 330, 40, "ping timeout")]
    return pd.DataFrame({
        "source": "finnhub",
        "kind": "gap",
        "symbol": [g[0] for g in gaps],
        "start_time": [opened + pd.Timedelta(minutes=g[1]) for g in gaps],
        "end_time": [opened + pd.Timedelta(minutes=g[1], seconds=g[2]) for g in gaps],
        "reason": [g[3] for g in gaps],
        "ingested_time": [opened + pd.Timedelta(minutes=g[1], seconds=g[2] + 2) for g in gaps],
    })


def synthetic_late_trades(trades: pd.DataFrame, count: int = 12, seed: int = 7) -> pd.DataFrame:
    """Some trades re-labelled as having arrived after their bar closed (a few minutes late)."""
    picked = trades.sample(n=min(count, len(trades)), random_state=seed)
    delay = pd.to_timedelta(np.random.default_rng(seed).integers(90, 600, len(picked)), unit="s")
    window_start = picked["event_time"].dt.floor("60s")
    return pd.DataFrame({
        "trade_id": "late-" + picked["trade_id"],
        "symbol": picked["symbol"],
        "event_time": picked["event_time"],
        "window_start": window_start,
        "watermark": window_start + pd.Timedelta(minutes=1, seconds=30),
        "detected_time": picked["event_time"] + delay,
    }).reset_index(drop=True)


def synthetic_quarantine(day: date = DEMO_DAY) -> pd.DataFrame:
    opened = pd.Timestamp(session_open(day))
    rejects = [
        ("market.trades", b'{"s":"AAPL","p":"abc"}', "price: Input should be a valid number"),
        ("market.trades", b'{"s":"MSFT","p":411.2', "invalid JSON: EOF while parsing an object"),
        ("market.trades", b'{"s":"TSLA","p":-1.0,"v":10}', "price: Input should be greater than 0"),
        ("market.trades", b'{"s":"TSLA","p":-2.0,"v":10}', "price: Input should be greater than 0"),
        ("market.vendor_bars", b'{"symbol":"VCB","open":null}', "open: Input should be a valid number"),
    ]
    return pd.DataFrame({
        "topic": [r[0] for r in rejects],
        "kafka_partition": 0,
        "kafka_offset": np.arange(len(rejects), dtype=np.int64) * 1000,
        "kafka_timestamp": [opened + pd.Timedelta(minutes=17 * i) for i in range(len(rejects))],
        "raw_key": [None] * len(rejects),
        "raw_value": [r[1] for r in rejects],
        "reason": [r[2] for r in rejects],
        "quarantined_time": [opened + pd.Timedelta(minutes=17 * i, seconds=3) for i in range(len(rejects))],
    })


# -- one call for a whole demo lakehouse ------------------------------------------------------


@dataclass(frozen=True)
class DemoLakehouse:
    symbols: tuple[str, ...]
    day: date
    trades: int
    bars: int


def _arrow(frame: pd.DataFrame, table: TableDef) -> pa.Table:
    return pa.Table.from_pandas(frame.loc[:, table.column_names], schema=table.schema.as_arrow(),
                                preserve_index=False)


def write_demo_lakehouse(
    settings: Settings,
    symbols: Sequence[str] = DEMO_SYMBOLS,
    day: date = DEMO_DAY,
    commits: int = 3,
    seed: int = 7,
) -> DemoLakehouse:
    """Create every table and fill it with one session of synthetic data.

    Trades and bars land in ``commits`` time-ordered commits (as streaming micro-batches would), so
    partitions hold several files; the data-quality tables get one commit each.
    """
    catalog = create_tables(settings)
    trades = synthetic_trades(symbols, day, seed=seed)
    bars = bars_from_trades(trades)

    def load(table: TableDef):
        return catalog.load_table(table_identifier(settings, table))

    edges = pd.date_range(session_open(day), periods=commits + 1,
                          end=session_open(day) + timedelta(minutes=SESSION_MINUTES))
    for low, high in itertools.pairwise(edges):
        append_rows(load(TRADES), _arrow(trades[(trades.event_time >= low) & (trades.event_time < high)], TRADES))
        append_rows(load(BARS_1M), _arrow(bars[(bars.window_start >= low) & (bars.window_start < high)], BARS_1M))
    append_rows(load(FEED_EVENTS), _arrow(synthetic_feed_gaps(day), FEED_EVENTS))
    append_rows(load(LATE_TRADES), _arrow(synthetic_late_trades(trades, seed=seed), LATE_TRADES))
    append_rows(load(QUARANTINE), _arrow(synthetic_quarantine(day), QUARANTINE))
    return DemoLakehouse(tuple(symbols), day, len(trades), len(bars))
