"""The analysts' reading API: symbols and time ranges in, pandas (or Arrow) out, no Spark needed.

Every read goes through pyiceberg with a row filter on ``symbol`` and on the table's time column,
so Iceberg skips whole partitions (trades: symbol + day of ``event_time``; bars: symbol + day of
``window_start``) and, inside a partition, the files whose column statistics cannot match. A
single-symbol, single-day question therefore opens a handful of files however large the table is.

The catalog is the one in ``Settings`` (embedded SQLite + local warehouse, or Postgres/REST + a
``gs://`` warehouse): nothing here knows which. Tables are re-loaded on every call, so a notebook
cell re-run sees the commits the streaming jobs made since.

Times: arguments may be ``datetime``, ``date`` or ISO strings; naive values are UTC. A date typed
day or month first (``"05/01/2026"``) is refused as ambiguous, and a zone abbreviation
(``"09:30 EST"``) as unreadable: give an offset (``"09:30-05:00"``). Results carry tz-aware UTC
timestamps. Ranges are half-open, ``[start, end)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
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

from lakehouse.catalog import (
    live_files,
    load_catalog,
    missing_embedded_catalog,
    table_identifier,
    warehouse_uri,
)
from lakehouse.ops.market_calendar import MARKETS
from lakehouse.reading.current_state import CurrentTable, load_current
from lakehouse.reading.errors import (
    CREATED_BY,
    CatalogUnavailableError,
    EmptyRangeError,
    MissingCatalogError,
    MissingTableError,
    ReadError,
    UnknownColumnError,
    UnknownSymbolError,
)
from lakehouse.reading.rollup import interval_seconds, rollup_bars
from lakehouse.settings import Settings, load_settings
from lakehouse.tables import (
    ALL_TABLES,
    BARS_1M,
    EVENT_TIME_COLUMN,
    FEED_EVENTS,
    LATE_TRADES,
    QUARANTINE,
    TRADES,
    VENDOR_BARS,
    TableDef,
    tables_named,
)
from lakehouse.times import EPOCH, floor_to, to_utc, utc_now

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

    from lakehouse.times import TimeLike

Symbols = str | Sequence[str]

# The column each table is ranged on (and, for trades and bars, partitioned by day of).
TIME_COLUMN: dict[str, str] = {
    TRADES.name: "event_time",
    BARS_1M.name: "window_start",
    LATE_TRADES.name: "event_time",
    QUARANTINE.name: "quarantined_time",
    FEED_EVENTS.name: "start_time",
    VENDOR_BARS.name: "bar_start",
}


# The tables partitioned by symbol, whose symbols ``Lakehouse.symbols`` lists from partition metadata.
SYMBOL_TABLES: tuple[TableDef, ...] = tuple(t for t in ALL_TABLES if "symbol" in t.partition_by)


# Our interval names -> the vendor's (vnstock) for the same bar length.
VENDOR_INTERVAL: dict[str, str] = {"1m": "1m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1H", "1d": "1D"}


def symbol_list(symbols: Symbols) -> list[str]:
    """One symbol or many, as a de-duplicated list in the order given."""
    items = [symbols] if isinstance(symbols, str) else list(symbols) if isinstance(symbols, Iterable) else []
    if not items or not all(isinstance(s, str) and s for s in items):
        raise ValueError(f"expected a symbol or a non-empty list of symbols, got {symbols!r}")
    return list(dict.fromkeys(items))


def read_together(newest: dict[str, datetime], span: timedelta) -> list[tuple[list[str], datetime, datetime]]:
    """The symbols whose last ``span`` (ending at their ``newest`` time) fit in one range at most
    two spans long, as ``(symbols, start, end)`` reads: a symbol that stopped trading long ago is
    read on its own, not by reading every other symbol from its time on."""
    groups: list[tuple[list[str], datetime, datetime]] = []
    for symbol, end in sorted(newest.items(), key=lambda item: (item[1], item[0])):
        if groups and end - groups[-1][1] <= 2 * span:
            groups[-1] = (groups[-1][0] + [symbol], groups[-1][1], end)
        else:
            groups.append(([symbol], end - span, end))
    return groups


def pick_symbol(symbol: str | None, known: Sequence[str], table: TableDef = BARS_1M) -> str:
    """A notebook's ``SYMBOL`` parameter, checked once where it is set: ``symbol`` if it is one of
    ``known`` (the symbols ``table`` holds), the first of them when ``symbol`` is None or empty.

    An unknown symbol raises ``UnknownSymbolError`` (close matches, what exists) and a table with no
    symbols ``ReadError``, instead of an empty selection failing cells later ("Cannot cut empty array")."""
    if symbol is None or symbol == "":
        if not known:
            raise ReadError(f"table {table.name} holds no symbols yet: run `make demo`, or wait for "
                            f"{CREATED_BY.get(table.name, 'its job')} to commit, then run this cell again")
        return known[0]
    if not isinstance(symbol, str):
        raise ValueError(f"expected one symbol (a string) or None, got {symbol!r}")
    if symbol not in known:
        raise UnknownSymbolError([symbol], known, table)
    return symbol


def table_def(table: TableDef | str) -> TableDef:
    """A table's definition from itself or its name (``"trades"``); an unknown name lists the known."""
    if isinstance(table, str):
        named = tables_named([table])
        if len(named) != 1:
            raise ValueError(f"expected one table name, got {table!r}")
        return named[0]
    if not isinstance(table, TableDef):
        raise TypeError(f"expected a table name or a lakehouse.tables definition, got {table!r}")
    return table


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


def time_range(start: TimeLike, end: TimeLike) -> tuple[datetime, datetime]:
    """The half-open range ``[start, end)`` in UTC; raise ``EmptyRangeError`` unless start < end."""
    start_utc, end_utc = to_utc(start), to_utc(end)
    if start_utc >= end_utc:
        raise EmptyRangeError(
            f"empty time range: start {start_utc.isoformat()} is not before end {end_utc.isoformat()} "
            "(the range is [start, end), UTC)"
        )
    return start_utc, end_utc


def _optional_range(start: TimeLike | None, end: TimeLike | None) -> tuple[datetime | None, datetime | None]:
    if start is not None and end is not None:
        return time_range(start, end)
    return (to_utc(start) if start is not None else None, to_utc(end) if end is not None else None)



def vendor_bar_day(frame: pd.DataFrame) -> pd.Series:
    """Each vendor bar's date in its market's zone (by its source), as 00:00 UTC of that date: the
    key of our own day bars."""
    zones = {market.source: market.timezone for market in MARKETS.values()}
    day = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    for source, rows in frame.groupby("source").groups.items():
        local = frame.loc[rows, "bar_start"].dt.tz_convert(zones.get(source, "UTC"))
        day.loc[rows] = local.dt.tz_localize(None).dt.normalize().dt.tz_localize("UTC")
    return day


class Lakehouse:
    """Read the lakehouse tables named in ``settings`` (default: ``load_settings()``, which honours
    ``LAKEHOUSE__*`` environment variables and ``conf/lakehouse.toml``), or in the config file at
    that path (``Lakehouse("conf/other.toml")``, with the same environment variables over it).

    ``clock`` gives "now" for ``freshness``; tests pass a fixed one.
    """

    def __init__(
        self,
        settings: Settings | str | Path | None = None,
        *,
        catalog: Catalog | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if isinstance(settings, str | Path):
            settings = load_settings(Path(settings))
        elif settings is None:
            settings = load_settings()
        elif not isinstance(settings, Settings):
            raise TypeError(f"expected Settings, a config file's path or None, got {type(settings).__name__}")
        self.settings = settings
        self._catalog = catalog
        self._clock = clock
        self._loaded: dict[str, Table] = {}  # identifier -> the version last loaded (SQL catalogs)
        self._current: dict[str, CurrentTable] = {}  # identifier -> its current state last loaded (SQL catalogs)
        self._refs_catalog: Catalog | None = None  # a REST catalog's client that loads refs' snapshots only

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

    @contextlib.contextmanager
    def _catalog_answers(self, asked: str = "") -> Iterator[None]:
        """Any failure to reach the catalog or its storage (REST server or database down) inside the
        block as one clear ``CatalogUnavailableError``; the reader's own errors pass unchanged.
        ``asked`` says what was being asked (" loading market.trades")."""
        try:
            yield
        except ReadError:
            raise
        except FileNotFoundError as exc:  # the catalog answered; the file it names is not in the warehouse
            raise CatalogUnavailableError(
                f"the catalog of {self!r} answered{asked}, but a file it names is missing from the warehouse "
                f"(deleted or moved under the catalog): {type(exc).__name__}: {exc}"
            ) from exc
        except Exception as exc:
            raise CatalogUnavailableError(
                f"the catalog of {self!r} did not answer{asked}: {type(exc).__name__}: {exc}"
            ) from exc

    def _reachable_catalog(self) -> Catalog:
        """``catalog``, with a failure to reach it as one clear error."""
        with self._catalog_answers():
            return self.catalog

    def _check_embedded_catalog_exists(self) -> None:
        """pyiceberg would silently create an empty SQLite catalog; say what is missing instead."""
        missing = missing_embedded_catalog(self.settings)
        if missing:
            raise MissingCatalogError(missing)

    def table(self, table: TableDef | str) -> Table:
        """The current version of ``table`` (a ``lakehouse.tables`` definition or its name, such as
        ``"trades"``), so new commits are visible.

        On a SQL catalog the version last loaded is reused while the catalog's pointer to its
        metadata file has not moved (one indexed row read instead of parsing a metadata file that
        grows with every snapshot); other catalogs load the table on every call.
        """
        from pyiceberg.catalog.sql import SqlCatalog
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        table = table_def(table)
        identifier = table_identifier(self.settings, table)
        known = self._loaded.get(identifier)
        if known is not None and self.metadata_pointer(table) == known.metadata_location:
            return known
        with self._catalog_answers(f" loading {identifier}"):
            try:
                loaded = self.catalog.load_table(identifier)
            except (NoSuchTableError, NoSuchNamespaceError):
                raise MissingTableError(table, identifier, repr(self)) from None
            if isinstance(self.catalog, SqlCatalog):
                self._loaded[identifier] = loaded
            return loaded

    def _readable(self, table: TableDef) -> Table:
        """``table`` for reading its current data: on a SQL catalog without its snapshot history
        (``_current_state``); other catalogs load it whole."""
        current = self._current_state(table)
        return current.table if current else self.table(table)

    def _current_state(self, table: TableDef) -> CurrentTable | None:
        """``table`` as of its current snapshot, without the snapshot history: on a SQL catalog its
        metadata file parsed without it (``lakehouse.reading.current_state``) and reused while the
        catalog's pointer stays; on a REST catalog loaded with only its refs' snapshots (counted as
        unknown); None on other catalogs."""
        from pyiceberg.catalog.rest import RestCatalog
        from pyiceberg.catalog.sql import SqlCatalog
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        catalog = self._reachable_catalog()
        identifier = table_identifier(self.settings, table)
        if isinstance(catalog, RestCatalog):
            with self._catalog_answers(f" loading {identifier}"):
                if self._refs_catalog is None:
                    self._refs_catalog = load_catalog(self.settings, refs_only=True)
                try:
                    return CurrentTable(self._refs_catalog.load_table(identifier), None)
                except (NoSuchTableError, NoSuchNamespaceError):
                    raise MissingTableError(table, identifier, repr(self)) from None
        if not isinstance(catalog, SqlCatalog):
            return None
        pointer = self.metadata_pointer(table)
        known = self._current.get(identifier)
        if known is None or known.table.metadata_location != pointer:
            with self._catalog_answers(f" loading {identifier}"):
                known = self._current[identifier] = load_current(self.catalog, identifier, pointer)
        return known

    def metadata_pointer(self, table: TableDef) -> str:
        """The catalog's pointer to ``table``'s current metadata file: it moves on every commit and
        only then, so a reader that keeps the last one re-reads a table only when it changed.

        On a SQL catalog this is one indexed row read, without parsing the metadata file (which
        holds the whole snapshot history: 0.13 s at 3,600 snapshots); a REST catalog loads the table
        with its refs' snapshots only; other catalogs load the whole table.
        """
        from pyiceberg.catalog.sql import SqlCatalog

        catalog = self._reachable_catalog()
        if not isinstance(catalog, SqlCatalog):
            return self._readable(table).metadata_location
        from sqlalchemy import text

        query = text(
            "SELECT metadata_location FROM iceberg_tables "
            "WHERE catalog_name = :catalog AND table_namespace = :namespace AND table_name = :name"
        )
        # Autocommit: an open read transaction would hold SQLite's shared lock between polls.
        with (
            self._catalog_answers(f" for {table.name}"),
            catalog.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
        ):
            names = {"catalog": catalog.name, "namespace": self.settings.catalog.namespace, "name": table.name}
            pointer = connection.execute(query, names).scalar_one_or_none()
        if pointer is None:
            raise MissingTableError(table, table_identifier(self.settings, table), repr(self))
        return pointer

    def scan_arrow(
        self,
        table: TableDef,
        filter_: BooleanExpression,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rows of ``table`` matching ``filter_`` (see ``row_filter``), only ``columns`` if given."""
        selected = tuple(columns) if columns else ("*",)
        return self._readable(table).scan(row_filter=filter_, selected_fields=selected).to_arrow()

    # -- market data ----------------------------------------------------------------------------

    def bars_arrow(self, symbols: Symbols, start: TimeLike, end: TimeLike, interval: str = "1m") -> pa.Table:
        """The bars of ``interval`` that hold any time in ``[start, end)``, sorted by symbol then
        time: ``start`` is rounded down to the interval, so a start mid-bar returns that whole bar
        (10:30:30 returns the 10:30 minute), and a bar starts before ``end``.

        ``interval`` other than ``1m`` rolls the 1-minute bars up (see ``lakehouse.reading.rollup``);
        the last bar then holds only the minutes before ``end``.
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
        columns: str | Sequence[str] | None = None,
    ) -> pa.Table:
        """Trades whose ``event_time`` is in ``[start, end)``, sorted by symbol then event time.

        All trades are returned, including those the bar rule leaves out (odd lots, Form T...):
        ``conditions`` says which. ``columns`` is one column name or a list of them; ``symbol`` and
        ``event_time`` always come first.
        """
        wanted = symbol_list(symbols)
        start_utc, end_utc = time_range(start, end)
        if isinstance(columns, str):  # one name, not its letters
            columns = [columns]
        if columns:
            unknown = [c for c in columns if c not in TRADES.column_names]
            if unknown:
                raise UnknownColumnError(unknown, TRADES)
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
        columns: str | Sequence[str] | None = None,
    ) -> pd.DataFrame:
        return self.trades_arrow(symbols, start, end, columns).to_pandas()

    def latest_bars(self, symbols: Symbols | None = None, minutes: int = 60, interval: str = "1m") -> pd.DataFrame:
        """Each symbol's last ``minutes`` of bars, ending at its newest bar (no need to know when
        the data stops, which for replayed demo data is not today). A span longer than the data
        (``float("inf")`` included) gives all of it.

        With an ``interval`` above ``1m``, the bars of that interval holding any of those minutes,
        as ``bars`` gives them: the first may start before the span (the last hour in day bars is
        that day's bar), and the last holds only the minutes up to the newest bar's end."""
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not minutes > 0:
            raise ValueError(f"minutes must be a number above 0, got {minutes!r}")
        seconds = interval_seconds(interval)
        newest = self._newest_bar_of(symbols, "window_end")
        if not newest:
            return self._empty(BARS_1M)
        # A span reaching before 1970 holds every bar (the contract's times start in 2000): cut there,
        # so no datetime arithmetic overflows (float('inf'), 10**12 minutes).
        reach = min(newest.values()) - EPOCH
        span = timedelta(minutes=minutes) if minutes < reach / timedelta(minutes=1) else reach
        frames = [self.bars(group, start, end, interval) for group, start, end in read_together(newest, span)]
        bars = pd.concat(frames, ignore_index=True).sort_values(["symbol", "window_start"], ignore_index=True)
        cutoff = bars["symbol"].map({s: floor_to(end - span, seconds) for s, end in newest.items()})
        return bars[bars["window_start"] >= cutoff].reset_index(drop=True)

    def latest_bar_per_symbol(self, symbols: Symbols | None = None) -> pd.DataFrame:
        """Each symbol's newest 1-minute bar with its change on the day, one row per symbol.

        The day is the UTC calendar day of that bar (it holds the whole regular session of US and
        Vietnamese markets, as the ``1d`` rollup does); ``day_open`` is the open of the day's first
        bar, ``change = close - day_open`` and ``change_pct`` its share of ``day_open`` in percent.
        Reads only each symbol's newest day partition.
        """
        newest = self._newest_bar_of(symbols, "window_start")
        columns = [*BARS_1M.column_names, "day_open", "change", "change_pct"]
        if not newest:  # typed as when there are bars, so the same cell works on both
            return self._empty(BARS_1M).assign(day_open=pd.Series(dtype="float64"),
                                               change=pd.Series(dtype="float64"),
                                               change_pct=pd.Series(dtype="float64")).loc[:, columns]
        by_day: dict[datetime, list[str]] = {}
        for symbol, start in newest.items():
            by_day.setdefault(floor_to(start, 86_400), []).append(symbol)
        frames = [self.bars_arrow(day_symbols, day, day + timedelta(days=1)).to_pandas()
                  for day, day_symbols in by_day.items()]
        day_bars = pd.concat(frames, ignore_index=True).sort_values(["symbol", "window_start"])
        grouped = day_bars.groupby("symbol", sort=True)
        latest = grouped.tail(1).set_index("symbol")
        latest["day_open"] = grouped["open"].first()
        latest["change"] = latest["close"] - latest["day_open"]
        latest["change_pct"] = 100.0 * latest["change"] / latest["day_open"]
        return latest.reset_index().loc[:, columns]

    def vendor_bars(self, symbols: Symbols, start: TimeLike, end: TimeLike, interval: str = "1m") -> pd.DataFrame:
        """The vendor's own bars (vnstock) of ``interval`` whose ``bar_start`` is in ``[start, end)``,
        sorted by symbol then time; empty for symbols the vendor has none of (not an error: most
        symbols have no vendor bars), but a symbol the vendor has in another case or with spaces
        (``"fpt"`` for ``FPT``) raises ``UnknownSymbolError`` naming it. A day bar (``1d``) is taken
        by its market's date, as our own day bars are: vnstock's starts at midnight in Hanoi, 17:00
        UTC the day before, and ``[2026-01-05, 2026-01-06)`` gives the bar of 5 January."""
        interval_seconds(interval)  # an unknown interval is refused the same way as for our bars
        wanted = symbol_list(symbols)
        start_utc, end_utc = time_range(start, end)
        daily = VENDOR_INTERVAL[interval] == "1D"
        margin = timedelta(days=1) if daily else timedelta(0)
        rows = self.scan_arrow(VENDOR_BARS, And(row_filter(VENDOR_BARS, wanted, start_utc - margin, end_utc + margin),
                                                EqualTo("interval", VENDOR_INTERVAL[interval])))
        frame = rows.sort_by([("symbol", "ascending"), ("bar_start", "ascending")]).to_pandas()
        absent = set(wanted) - set(frame["symbol"])
        if absent:  # no bars is no error, but "fpt" for the vendor's FPT is a typo
            known = self.symbols(VENDOR_BARS)
            by_letters = {k.strip().upper() for k in known}
            mistyped = [s for s in absent if s not in known and s.strip().upper() in by_letters]
            if mistyped:
                raise UnknownSymbolError(mistyped, known, VENDOR_BARS)
        if daily:
            day = vendor_bar_day(frame)
            frame = frame[(day >= start_utc) & (day < end_utc)].reset_index(drop=True)
        return frame

    def table_ages(self, tables: Sequence[TableDef | str] = (TRADES, BARS_1M, VENDOR_BARS, LATE_TRADES, QUARANTINE,
                                                             FEED_EVENTS)) -> pd.DataFrame:
        """Per table: its newest event time (``EVENT_TIME_COLUMN``), that time's age now, rows and
        snapshots, and whether it exists. From metadata and file statistics only (no data read).
        Columns: ``table, exists, newest_event_time, age, rows, snapshots``."""
        now = pd.Timestamp(self._clock()).tz_convert("UTC")
        records = []
        for table in map(table_def, [tables] if isinstance(tables, str | TableDef) else tables):
            try:
                if table is BARS_1M:
                    newest = max(self.newest_bar_event_times().values(), default=None)
                else:
                    newest = self._newest_in_table(table, EVENT_TIME_COLUMN[table.name])
                current = self._current_state(table)
                if current is None or current.snapshots is None:  # the count needs the whole table
                    loaded = self.table(table)
                    snapshots = len(loaded.metadata.snapshots)
                else:
                    loaded, snapshots = current.table, current.snapshots
            except MissingTableError:
                records.append({"table": table.name, "exists": False, "newest_event_time": pd.NaT,
                                "rows": 0, "snapshots": 0})
                continue
            snapshot = loaded.current_snapshot()
            rows = int(snapshot.summary.get("total-records", 0)) if snapshot and snapshot.summary else 0
            records.append({"table": table.name, "exists": True, "newest_event_time": newest, "rows": rows,
                            "snapshots": snapshots})
        frame = pd.DataFrame.from_records(records, columns=["table", "exists", "newest_event_time", "rows",
                                                            "snapshots"])
        frame["newest_event_time"] = pd.to_datetime(frame["newest_event_time"], utc=True)
        frame["age"] = now - frame["newest_event_time"]
        return frame.loc[:, ["table", "exists", "newest_event_time", "age", "rows", "snapshots"]]

    def symbols(self, table: TableDef | str = BARS_1M) -> list[str]:
        """The symbols ``table`` holds data for, from partition metadata (no data files are read).

        Only the tables partitioned by symbol (``SYMBOL_TABLES``: trades, bars_1m, vendor_bars,
        late_trades) can answer so; another table is refused."""
        table = table_def(table)
        if table not in SYMBOL_TABLES:
            raise ValueError(f"table {table.name} is not partitioned by symbol; symbols() reads "
                             f"{', '.join(t.name for t in SYMBOL_TABLES)}")
        loaded = self._readable(table)
        if loaded.current_snapshot() is None:  # created, never written
            return []
        partitions = loaded.inspect.partitions()
        if partitions.num_rows == 0:
            return []
        names = pc.unique(partition_symbols(partitions)).to_pylist()
        symbols = {s for s in names if s}
        if None in names:  # files of a day-only append spec, not yet folded: their rows say
            symbols.update(self._newest_in_appended_files(table, self._data_files(table), table.day_column))
        return sorted(symbols)

    def freshness(self) -> pd.DataFrame:
        """Per symbol: the newest trade, the newest trade folded into a bar, and how old each is.

        Age means one thing for every table: now minus the newest event time the table holds. For
        bars that is the event time of the newest trade folded into a bar (``last_event_time``),
        not the end of the newest window: an open window ends in the future. Bars written before
        that column existed fall back to their ``window_start`` (an age never understated).

        Read from the data files' column statistics (upper bounds), so no data is scanned. Columns:
        ``symbol, latest_trade_time, latest_bar_event_time, latest_bar_end, trade_age, bar_age``
        (ages are ``Timedelta`` from ``clock()``; a symbol a table has no data for, or a missing
        table, gives NaT there).
        """
        now = pd.Timestamp(self._clock()).tz_convert("UTC")
        columns = ("latest_trade_time", "latest_bar_event_time", "latest_bar_end")
        found: dict[str, dict[str, datetime]] = {name: {} for name in columns}
        with contextlib.suppress(MissingTableError):
            found["latest_trade_time"] = self._newest_per_symbol(TRADES, "event_time")
        with contextlib.suppress(MissingTableError):
            found["latest_bar_end"] = self._newest_per_symbol(BARS_1M, "window_end")
            found["latest_bar_event_time"] = self.newest_bar_event_times()
        if not found["latest_trade_time"] and not found["latest_bar_end"]:
            self.table(BARS_1M)  # neither table has data: raise the clear error if one is missing
        frame = pd.DataFrame(found, columns=list(columns))
        frame = frame.rename_axis("symbol").sort_index().reset_index()
        for name in columns:
            frame[name] = pd.to_datetime(frame[name], utc=True)
        frame["trade_age"] = now - frame["latest_trade_time"]
        frame["bar_age"] = now - frame["latest_bar_event_time"]
        return frame

    def newest_bar_event_times(self) -> dict[str, datetime]:
        """Per symbol, the event time of the newest trade folded into a bar (file statistics of
        ``last_event_time``; a symbol whose bars predate that column: its newest ``window_start``)."""
        newest = {s: t for s, t in self._newest_per_symbol(BARS_1M, "last_event_time").items() if t is not None}
        starts = self._newest_per_symbol(BARS_1M, "window_start")
        return {symbol: newest.get(symbol, start) for symbol, start in starts.items()}

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
        late = self.scan_arrow(
            LATE_TRADES,
            row_filter(LATE_TRADES, None, start_utc, end_utc),
            columns=("symbol", "trade_id", "event_time", "detected_time"),
        ).to_pandas()
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

    def quarantine_example(self, topic: str, reason: str) -> dict[str, object] | None:
        """One quarantined message of ``topic`` rejected for ``reason`` (the earliest by Kafka
        position), every column as stored: ``raw_value`` holds the message's bytes untouched.
        None when no message matches."""
        if not isinstance(topic, str) or not isinstance(reason, str):
            raise ValueError(f"expected a topic and a reason as strings, got {topic!r}, {reason!r}")
        rows = self.scan_arrow(QUARANTINE, And(EqualTo("topic", topic), EqualTo("reason", reason)))
        if rows.num_rows == 0:
            return None
        first = rows.sort_by([("kafka_partition", "ascending"), ("kafka_offset", "ascending")]).slice(0, 1)
        return first.to_pylist()[0]

    def late_trade_example(self, symbol: str) -> dict[str, object] | None:
        """One late trade of ``symbol`` (the one detected last), as stored in ``late_trades``; None
        when the symbol has none."""
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"expected one symbol, got {symbol!r}")
        rows = self.scan_arrow(LATE_TRADES, row_filter(LATE_TRADES, [symbol]))
        if rows.num_rows == 0:
            return None
        return rows.sort_by([("detected_time", "descending"), ("trade_id", "ascending")]).slice(0, 1).to_pylist()[0]

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

    def _newest_bar_of(self, symbols: Symbols | None, column: str) -> dict[str, datetime]:
        """``_newest_per_symbol`` of ``bars_1m`` for ``symbols`` (None: every symbol), each of which
        must have bars."""
        newest = self._newest_per_symbol(BARS_1M, column)
        if symbols is None:
            return newest
        wanted = symbol_list(symbols)
        unknown = set(wanted) - set(newest)
        if unknown:
            raise UnknownSymbolError(unknown, newest, BARS_1M)
        return {s: newest[s] for s in wanted}

    def _newest_per_symbol(self, table: TableDef, column: str) -> dict[str, datetime]:
        """Largest value of ``column`` per symbol, from the live data files' upper bounds."""
        data_files = self._data_files(table)
        newest: dict[str, datetime] = {}
        if data_files.num_rows == 0:
            return newest
        symbols = partition_symbols(data_files).to_pylist()
        metrics = pc.struct_field(data_files.column("readable_metrics"), column)
        upper = pc.struct_field(metrics, "upper_bound").to_pylist()
        missing_stats: set[str] = set()
        for symbol, bound in zip(symbols, upper, strict=True):
            if symbol is None:  # a file of a day-only append spec: many symbols, read below
                continue
            if bound is None:
                missing_stats.add(symbol)
            elif symbol not in newest or bound > newest[symbol]:
                newest[symbol] = bound
        if missing_stats:  # a writer that kept no statistics: read that one column instead
            newest.update(self._newest_by_scan(table, column, sorted(missing_stats)))
        if None in symbols:
            for symbol, bound in self._newest_in_appended_files(table, data_files, column).items():
                if symbol not in newest or bound > newest[symbol]:
                    newest[symbol] = bound
        return newest

    def _data_files(self, table: TableDef) -> pa.Table:
        """The live data files of ``table`` (its ``files`` metadata, delete files left out)."""
        files = live_files(self._readable(table))
        return files.filter(pc.equal(files.column("content"), 0))

    def _newest_in_appended_files(self, table: TableDef, data_files: pa.Table, column: str) -> dict[str, datetime]:
        """Per symbol, the largest ``column`` among the rows of the ``data_files`` without a symbol
        partition: the streams' appends not yet folded into day-symbol files
        (``lakehouse.fold``). Read from those files' oldest day column value on, which
        prunes the scan to the newest minutes."""
        day_column = table.day_column or column
        unfolded = pc.is_null(partition_symbols(data_files))
        lower = pc.struct_field(pc.struct_field(data_files.filter(unfolded).column("readable_metrics"), day_column),
                                "lower_bound")
        filter_ = AlwaysTrue() if lower.null_count or not len(lower) else GreaterThanOrEqual(
            day_column, pc.min(lower).as_py().isoformat())
        return _max_per_symbol(self.scan_arrow(table, filter_, columns=tuple(dict.fromkeys(("symbol", column)))),
                               column)

    def _newest_in_table(self, table: TableDef, column: str) -> datetime | None:
        """Largest value of ``column`` in the whole table, from file upper bounds (a scan of that one
        column only when a file kept no statistics for it)."""
        data_files = self._data_files(table)
        if data_files.num_rows == 0:
            return None
        upper = pc.struct_field(pc.struct_field(data_files.column("readable_metrics"), column), "upper_bound")
        if upper.null_count:
            return pc.max(self.scan_arrow(table, AlwaysTrue(), columns=(column,)).column(column)).as_py()
        return pc.max(upper).as_py() if len(upper) else None

    def _newest_by_scan(self, table: TableDef, column: str, symbols: Iterable[str]) -> dict[str, datetime]:
        return _max_per_symbol(self.scan_arrow(table, row_filter(table, list(symbols)), columns=("symbol", column)),
                               column)

    def _empty(self, table: TableDef) -> pd.DataFrame:
        return self._readable(table).schema().as_arrow().empty_table().to_pandas()


def partition_symbols(files: pa.Table) -> pa.ChunkedArray:
    """The ``symbol`` of each row's ``partition`` struct (a ``files`` or ``partitions`` metadata table),
    null for files of a day-only spec. pyiceberg leaves the field out of the struct when no live file
    has it (every file still appended, none folded)."""
    partition = files.column("partition")
    if partition.type.get_field_index("symbol") < 0:
        return pa.chunked_array([pa.nulls(len(files), pa.string())])
    return pc.struct_field(partition, "symbol")


def _max_per_symbol(rows: pa.Table, column: str) -> dict[str, datetime]:
    """{symbol: largest ``column``} of ``rows`` (which hold both columns)."""
    grouped = rows.group_by("symbol").aggregate([(column, "max")])
    return dict(zip(grouped.column("symbol").to_pylist(), grouped.column(f"{column}_max").to_pylist(), strict=True))
