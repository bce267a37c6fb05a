"""Errors an analyst can act on: each message says what was asked, what exists, and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from lakehouse.tables import BARS_1M, FEED_EVENTS, LATE_TRADES, QUARANTINE, TRADES, VENDOR_BARS, TableDef

# Which job fills each table, for the "missing table" message.
CREATED_BY: dict[str, str] = {
    TRADES.name: "the raw-trades job (python -m jobs.raw_trades)",
    QUARANTINE.name: "the raw-trades job (python -m jobs.raw_trades)",
    BARS_1M.name: "the bars job (python -m jobs.bars)",
    LATE_TRADES.name: "the bars job (python -m jobs.bars)",
    VENDOR_BARS.name: "the vendor-bars job (python -m jobs.vendor_bars)",
    FEED_EVENTS.name: "the feed-events job (python -m jobs.feed_events)",
}


class ReadError(ValueError):
    """A request the lakehouse cannot answer as asked."""


class UnknownSymbolError(ReadError, KeyError):
    def __init__(self, missing: Iterable[str], known: Iterable[str], table: TableDef) -> None:
        self.missing = sorted(missing)
        self.known = sorted(known)
        parts = []
        for symbol in self.missing:
            close = close_matches(symbol, self.known)
            parts.append(f"{symbol!r} (did you mean {', '.join(close)}?)" if close else repr(symbol))
        shown = ", ".join(self.known[:30]) + (" ..." if len(self.known) > 30 else "")
        message = (
            f"unknown symbol {', '.join(parts)} in table {table.name}; "
            f"{len(self.known)} symbols exist: {shown or '(none yet)'}"
        )
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise print the message in quotes
        return str(self.args[0])


class UnknownColumnError(ReadError, KeyError):
    def __init__(self, missing: Iterable[str], table: TableDef) -> None:
        known = table.column_names
        parts = []
        for column in missing:
            close = difflib.get_close_matches(column, known, n=3, cutoff=0.6)
            parts.append(f"{column!r} (did you mean {', '.join(close)}?)" if close else repr(column))
        super().__init__(f"no column {', '.join(parts)} in table {table.name}; its columns: {', '.join(known)}")

    def __str__(self) -> str:
        return str(self.args[0])


class EmptyRangeError(ReadError):
    """``start`` is not before ``end``."""


class UnknownIntervalError(ReadError):
    """The bar interval is not one of the supported rollups."""


class MissingCatalogError(ReadError, LookupError):
    """The configured catalog does not exist (the embedded SQLite file was never created)."""


class MissingTableError(ReadError, LookupError):
    def __init__(self, table: TableDef, identifier: str, catalog_description: str) -> None:
        creator = CREATED_BY.get(table.name, "its job")
        super().__init__(
            f"table {identifier} does not exist in {catalog_description}: it is created by {creator}; "
            "run `make demo` for the embedded demo data, or point LAKEHOUSE__CATALOG__URI / "
            "LAKEHOUSE__CATALOG__WAREHOUSE at a lakehouse that has it"
        )
        self.table = table


def close_matches(symbol: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """Known symbols that look like ``symbol``: same letters in another case first, then near spellings."""
    by_upper = {name.upper(): name for name in known}
    if symbol.upper() in by_upper:
        return [by_upper[symbol.upper()]]
    return [by_upper[m] for m in difflib.get_close_matches(symbol.upper(), list(by_upper), n=limit, cutoff=0.6)]


class CatalogUnavailableError(ReadError, ConnectionError):
    """The catalog (or the storage behind it) did not answer: a database, REST server or bucket
    that is down or unreachable. Retrying later may succeed; nothing was read."""
