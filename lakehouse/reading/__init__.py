"""Reading the lakehouse from Python: ``Lakehouse().bars("AAPL", "2026-01-05", "2026-01-06")``.

See ``lakehouse.reading.api`` for what each call reads and how it prunes.
"""

from lakehouse.reading.api import Lakehouse, pick_symbol, row_filter
from lakehouse.reading.errors import (
    CatalogUnavailableError,
    EmptyRangeError,
    MissingCatalogError,
    MissingTableError,
    ReadError,
    UnknownColumnError,
    UnknownIntervalError,
    UnknownSymbolError,
)
from lakehouse.reading.rollup import rollup_bars

__all__ = [
    "CatalogUnavailableError",
    "EmptyRangeError",
    "Lakehouse",
    "MissingCatalogError",
    "MissingTableError",
    "ReadError",
    "UnknownColumnError",
    "UnknownIntervalError",
    "UnknownSymbolError",
    "pick_symbol",
    "rollup_bars",
    "row_filter",
]
