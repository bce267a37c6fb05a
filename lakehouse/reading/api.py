"""The analysts' reading API: symbols and time ranges in, pandas (or Arrow) out, no Spark needed.

Every read goes through pyiceberg with a row filter on ``symbol`` and on the table's time column,
so Iceberg skips whole partitions (trades: symbol + day of ``event_time``; bars: symbol + day of
``window_start``) and, inside a partition, the files whose column statistics cannot match. A
single-symbol, single-day question therefore opens a handful of files however large the table is.

The catalog is the one in ``Settings`` (embedded SQLite + local warehouse, or Postgres/REST + a
``gs://`` warehouse): nothing here knows which. Tables are re-loaded on every call, so a notebook
cell re-run sees the commits the streaming jobs made since.

Times: arguments may be ``datetime``, ``date`` or ISO strings; naive values are UTC. Results carry
tz-aware UTC timestamps. Ranges are half-open, ``[start, end)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThan,
)

from lakehouse.catalog import jdbc_uri, load_catalog, table_identifier, warehouse_uri
from lakehouse.reading.errors import MissingCatalogError, MissingTableError, UnknownSymbolError
from lakehouse.reading.rollup import interval_seconds, rollup_bars
from lakehouse.reading.times import TimeLike, floor_to, time_range, to_utc, utc_now
from lakehouse.settings import Settings, load_settings
from lakehouse.tables import BARS_1M, FEED_EVENTS, LATE_TRADES, QUARANTINE, TRADES, TableDef

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

Symbols = str | Sequence[str]

# The column each table is ranged on (and, for trades and bars, partitioned by day of).
TIME_COLUMN: dict[str, str] = {
    TRADES.name: "event_time",
    BARS_1M.name: "window_start",
    LATE_TRADES.name: "event_time",
    QUARANTINE.name: "quarantined_time",
    FEED_EVENTS.name: "start_time",
}


def symbol_list(symbols: Symbols) -> list[str]:
    """One symbol or many, as a de-duplicated list in the order given."""
    items = [symbols] if isinstance(symbols, str) else list(symbols)
    if not items or not all(isinstance(s, str) and s for s in items):
        raise ValueError(f"expected a symbol or a non-empty list of symbols, got {symbols!r}")
    return list(dict.fromkeys(items))


def row_filter(
    table: TableDef,
    symbols: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> BooleanExpression:
    """The pyiceberg filter for ``symbols`` and ``[start, end)`` on the table's time column.

    Iceberg projects it onto the partition spec (identity on symbol, day on the time column) to
    prune partitions, then onto file statistics to prune files; pyarrow applies it to the rows.
    """
    terms: list[BooleanExpression] = []
    if symbols:
        terms.append(EqualTo("symbol", symbols[0]) if len(symbols) == 1 else In("symbol", tuple(symbols)))
    column = TIME_COLUMN[table.name]
    if start is not None:
        terms.append(GreaterThanOrEqual(column, start.isoformat()))
    if end is not None:
        terms.append(LessThan(column, end.isoformat()))
    if not terms:
        return AlwaysTrue()
    return terms[0] if len(terms) == 1 else And(*terms)


def _optional_range(start: TimeLike | None, end: TimeLike | None) -> tuple[datetime | None, datetime | None]:
    if start is not None and end is not None:
        return time_range(start, end)
    return (to_utc(start) if start is not None else None, to_utc(end) if end is not None else None)


class Lakehouse:
    """Read the lakehouse tables named in ``settings`` (default: ``load_settings()``, which honours
    ``LAKEHOUSE__*`` environment variables and ``conf/lakehouse.toml``).

    ``clock`` gives "now" for ``freshness``; tests pass a fixed one.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        catalog: Catalog | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self._catalog = catalog
        self._clock = clock

    def __repr__(self) -> str:
        catalog = self.settings.catalog
        return f"Lakehouse(catalog={catalog.name!r} [{catalog.type}], warehouse={warehouse_uri(self.settings)!r})"

    # -- tables ---------------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._check_embedded_catalog_exists()
            self._catalog = load_catalog(self.settings)
        return self._catalog

    def _check_embedded_catalog_exists(self) -> None:
        """pyiceberg would silently create an empty SQLite catalog; say what is missing instead."""
        uri = jdbc_uri(self.settings)
        prefix = "jdbc:sqlite:"
        if uri.startswith(prefix) and not Path(uri[len(prefix):]).exists():
            raise MissingCatalogError(
                f"no lakehouse catalog at {uri[len(prefix):]}: run `make demo` to create the embedded "
                "demo lakehouse, or set LAKEHOUSE__CATALOG__URI and LAKEHOUSE__CATALOG__WAREHOUSE"
            )

    def table(self, table: TableDef) -> Table:
        """The current version of ``table`` (freshly loaded, so new commits are visible)."""
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        identifier = table_identifier(self.settings, table)
        try:
            return self.catalog.load_table(identifier)
        except (NoSuchTableError, NoSuchNamespaceError):
            raise MissingTableError(table, identifier, repr(self)) from None

    def scan_arrow(
        self,
        table: TableDef,
        filter_: BooleanExpression,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rows of ``table`` matching ``filter_`` (see ``row_filter``), only ``columns`` if given."""
        selected = tuple(columns) if columns else ("*",)
        return self.table(table).scan(row_filter=filter_, selected_fields=selected).to_arrow()

    # -- market data ----------------------------------------------------------------------------

    def bars_arrow(self, symbols: Symbols, start: TimeLike, end: TimeLike, interval: str = "1m") -> pa.Table:
        """Bars whose ``window_start`` is in ``[start, end)``, sorted by symbol then time.

        ``interval`` other than ``1m`` rolls the 1-minute bars up (see ``lakehouse.reading.rollup``);
        ``start`` is then rounded down to the interval so the first bar is whole, and the last bar
        holds only the minutes before ``end``.
        """
        seconds = interval_seconds(interval)
        wanted = symbol_list(symbols)
        start_utc, end_utc = time_range(start, end)
        start_utc = floor_to(start_utc, seconds)
        minute_bars = self._checked_scan(BARS_1M, wanted, start_utc, end_utc)
        if seconds == 60:
            return minute_bars.sort_by([("symbol", "ascending"), ("window_start", "ascending")])
        rolled = rollup_bars(minute_bars.to_pandas(), interval)
        return pa.Table.from_pandas(rolled, schema=minute_bars.schema, preserve_index=False)

    def bars(self, symbols: Symbols, start: TimeLike, end: TimeLike, interval: str = "1m") -> pd.DataFrame:
        """``bars_arrow`` as a pandas DataFrame (one row per symbol and bar, UTC timestamps)."""
        return self.bars_arrow(symbols, start, end, interval).to_pandas()

    def trades_arrow(
        self,
        symbols: Symbols,
        start: TimeLike,
        end: TimeLike,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Trades whose ``event_time`` is in ``[start, end)``, sorted by symbol then event time.

        All trades are returned, including those the bar rule leaves out (odd lots, Form T...):
        ``conditions`` says which.
        """
        wanted = symbol_list(symbols)
        start_utc, end_utc = time_range(start, end)
        if columns:
            columns = list(dict.fromkeys(["symbol", "event_time", *columns]))
        trades = self._checked_scan(TRADES, wanted, start_utc, end_utc, columns)
        if columns:
            trades = trades.select(columns)
        return trades.sort_by([("symbol", "ascending"), ("event_time", "ascending")])

    def trades(
        self,
        symbols: Symbols,
        start: TimeLike,
        end: TimeLike,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        return self.trades_arrow(symbols, start, end, columns).to_pandas()

    def latest_bars(self, symbols: Symbols | None = None, minutes: int = 60, interval: str = "1m") -> pd.DataFrame:
        """Each symbol's last ``minutes`` of bars, ending at its newest bar (no need to know when
        the data stops, which for replayed demo data is not today)."""
        newest = self._newest_per_symbol(BARS_1M, "window_end")
        if symbols is not None:
            wanted = symbol_list(symbols)
            unknown = set(wanted) - set(newest)
            if unknown:
                raise UnknownSymbolError(unknown, newest, BARS_1M)
            newest = {s: newest[s] for s in wanted}
        if not newest:
            return self._empty(BARS_1M)
        span = timedelta(minutes=minutes)
        bars = self.bars(list(newest), min(newest.values()) - span, max(newest.values()), interval)
        cutoff = bars["symbol"].map({s: end - span for s, end in newest.items()})
        return bars[bars["window_start"] >= cutoff].reset_index(drop=True)

    def symbols(self, table: TableDef = BARS_1M) -> list[str]:
        """The symbols ``table`` holds data for, from partition metadata (no data files are read)."""
        partitions = self.table(table).inspect.partitions()
        if partitions.num_rows == 0:
            return []
        names = pc.struct_field(partitions.column("partition"), "symbol")
        return sorted(s for s in pc.unique(names).to_pylist() if s)

    def freshness(self) -> pd.DataFrame:
        """Per symbol: the newest trade, the end of the newest bar, and how old each is now.

        Read from the data files' column statistics (upper bounds), so no data is scanned. Columns:
        ``symbol, latest_trade_time, latest_bar_end, trade_age, bar_age`` (ages are ``Timedelta``
        from ``clock()``; a symbol a table has no data for, or a missing table, gives NaT there).
        """
        now = pd.Timestamp(self._clock()).tz_convert("UTC")
        found: dict[str, dict[str, datetime]] = {}
        for table, column, name in ((TRADES, "event_time", "latest_trade_time"),
                                    (BARS_1M, "window_end", "latest_bar_end")):
            try:
                found[name] = self._newest_per_symbol(table, column)
            except MissingTableError:
                found[name] = {}
        if not found["latest_trade_time"] and not found["latest_bar_end"]:
            self.table(BARS_1M)  # neither table has data: raise the clear error if one is missing
        frame = pd.DataFrame(found, columns=["latest_trade_time", "latest_bar_end"])
        frame = frame.rename_axis("symbol").sort_index().reset_index()
        for name in ("latest_trade_time", "latest_bar_end"):
            frame[name] = pd.to_datetime(frame[name], utc=True)
        frame["trade_age"] = now - frame["latest_trade_time"]
        frame["bar_age"] = now - frame["latest_bar_end"]
        return frame

    # -- data quality ---------------------------------------------------------------------------

    def feed_gaps(self, start: TimeLike | None = None, end: TimeLike | None = None) -> pd.DataFrame:
        """Gaps producers recorded (feed disconnected), starting in ``[start, end)``, with duration."""
        start_utc, end_utc = _optional_range(start, end)
        events = self.scan_arrow(FEED_EVENTS, And(EqualTo("kind", "gap"), row_filter(FEED_EVENTS, None, start_utc,
                                                                                     end_utc)))
        frame = events.sort_by([("start_time", "ascending")]).to_pandas()
        frame["duration"] = frame["end_time"] - frame["start_time"]
        return frame.loc[:, ["source", "symbol", "start_time", "end_time", "duration", "reason"]]

    def late_trade_counts(self, start: TimeLike | None = None, end: TimeLike | None = None) -> pd.DataFrame:
        """Per symbol: trades that arrived after their bar had closed (event time in the range),
        and the longest delay from event to detection."""
        start_utc, end_utc = _optional_range(start, end)
        late = self.scan_arrow(LATE_TRADES, row_filter(LATE_TRADES, None, start_utc, end_utc)).to_pandas()
        late["delay"] = late["detected_time"] - late["event_time"]
        counts = late.groupby("symbol").agg(
            late_trades=("trade_id", "size"),
            first_event_time=("event_time", "min"),
            last_event_time=("event_time", "max"),
            max_delay=("delay", "max"),
        )
        return counts.sort_values("late_trades", ascending=False).reset_index()

    def quarantine_counts(self, start: TimeLike | None = None, end: TimeLike | None = None) -> pd.DataFrame:
        """Messages rejected per topic and reason (quarantined in the range), newest last seen first."""
        start_utc, end_utc = _optional_range(start, end)
        rejected = self.scan_arrow(
            QUARANTINE,
            row_filter(QUARANTINE, None, start_utc, end_utc),
            columns=("topic", "reason", "quarantined_time"),
        ).to_pandas()
        counts = rejected.groupby(["topic", "reason"]).agg(
            messages=("quarantined_time", "size"),
            first_seen=("quarantined_time", "min"),
            last_seen=("quarantined_time", "max"),
        )
        return counts.sort_values("messages", ascending=False).reset_index()

    # -- internals ------------------------------------------------------------------------------

    def _checked_scan(
        self,
        table: TableDef,
        symbols: list[str],
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Scan, then make sure every symbol asked for exists: a symbol with no rows is checked
        against the table's partitions (only then, so the common case costs nothing extra)."""
        rows = self.scan_arrow(table, row_filter(table, symbols, start, end), columns)
        present = set(pc.unique(rows.column("symbol")).to_pylist()) if rows.num_rows else set()
        absent = [s for s in symbols if s not in present]
        if absent:
            known = self.symbols(table)
            unknown = [s for s in absent if s not in known]
            if unknown:
                raise UnknownSymbolError(unknown, known, table)
        return rows

    def _newest_per_symbol(self, table: TableDef, column: str) -> dict[str, datetime]:
        """Largest value of ``column`` per symbol, from the live data files' upper bounds."""
        files = self.table(table).inspect.files()
        newest: dict[str, datetime] = {}
        if files.num_rows == 0:
            return newest
        data_files = files.filter(pc.equal(files.column("content"), 0))
        symbols = pc.struct_field(data_files.column("partition"), "symbol").to_pylist()
        metrics = pc.struct_field(data_files.column("readable_metrics"), column)
        upper = pc.struct_field(metrics, "upper_bound").to_pylist()
        missing_stats: set[str] = set()
        for symbol, bound in zip(symbols, upper, strict=True):
            if bound is None:
                missing_stats.add(symbol)
            elif symbol not in newest or bound > newest[symbol]:
                newest[symbol] = bound
        if missing_stats:  # a writer that kept no statistics: read that one column instead
            newest.update(self._newest_by_scan(table, column, sorted(missing_stats)))
        return newest

    def _newest_by_scan(self, table: TableDef, column: str, symbols: Iterable[str]) -> dict[str, datetime]:
        values = self.scan_arrow(table, row_filter(table, list(symbols)), columns=("symbol", column))
        grouped = values.group_by("symbol").aggregate([(column, "max")])
        return dict(zip(grouped.column("symbol").to_pylist(), grouped.column(f"{column}_max").to_pylist(),
                        strict=True))

    def _empty(self, table: TableDef) -> pd.DataFrame:
        return self.table(table).schema().as_arrow().empty_table().to_pandas()
