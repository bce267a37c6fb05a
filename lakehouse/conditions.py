"""Which trades may update a bar: one documented trade-condition rule, as Python and as Spark.

Finnhub sends each US-stock trade's sale conditions as numeric strings (``"c": ["1", "24", "12"]``).
Their meaning is Finnhub's "trade conditions" sheet, linked from the WebSocket trades docs
(https://finnhub.io/docs/api/websocket-trades ->
https://docs.google.com/spreadsheets/d/1PUxiSWPHSODbaTaoL2Vef6DgU-yFtlRGZf19oBb9Hp0): 1 Regular,
3 Average Price Trade, 12 Odd Lot Trade, 24 Form-T Trade, ... 39 Corrected Consolidated Close.

The rule is Alpaca's published minute-bar rule ("Stock Minute Bars",
https://alpaca.markets/learn/stock-minute-bars/, and its full list in
https://forum.alpaca.markets/t/unstable-minute-bar-real-time-data-2022-03-30-googl/8996), which
follows the SIPs' consolidated "update last sale" guidance (CTS Output Specification, page 64;
UTP/UTDF Specification, page 43): a trade carrying ANY of the conditions below is not used for the
bar at all (open, high, low, close, volume, trade count, VWAP). They are prints that do not
reflect the market at that moment: averaged or derivatively priced prints, non-regular settlement
(cash, next day, seller's option), reports of older trades (sold out of sequence, prior reference
price, bunched sold, corrections), official open/close restatements, odd lots, and extended-hours
(Form T) prints. Consequence to know: pre- and post-market trades (condition 24) make no bars.

Trades from other sources (vnstock) carry no SIP conditions and are always eligible; so is a
Finnhub trade with no conditions (crypto and forex updates).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column

# Finnhub code -> SIP condition (CTS / UTDF letter) that the minute-bar rule excludes.
EXCLUDED_FINNHUB_CONDITIONS: dict[str, str] = {
    "3": "Average Price Trade (CTS B / UTDF W)",
    "5": "Cash Sale (C)",
    "9": "Bunched Sold Trade (G)",
    "10": "Price Variation Trade (H)",
    "12": "Odd Lot Trade (I)",
    "16": "Market Center Official Close (M)",
    "17": "Next Day (N)",
    "20": "Market Center Official Open (Q)",
    "21": "Prior Reference Price (P)",
    "22": "Seller (R)",
    "24": "Form T / extended hours (T)",
    "25": "Extended Hours Sold Out of Sequence (U)",
    "26": "Contingent Trade (V)",
    "30": "Sold Out of Sequence (Z)",
    "32": "Derivatively Priced (4)",
    "37": "Qualified Contingent Trade (7)",
    "39": "Corrected Consolidated Close (9)",
}
EXCLUDED_CODES: frozenset[str] = frozenset(EXCLUDED_FINNHUB_CONDITIONS)

# Only this source's condition codes are SIP conditions in Finnhub's numbering.
CONDITIONED_SOURCE = "finnhub"


def is_bar_eligible(source: str, conditions: Iterable[str] | None) -> bool:
    """True if a trade with these conditions may update OHLC, volume, count and VWAP."""
    if source != CONDITIONED_SOURCE or not conditions:
        return True
    return EXCLUDED_CODES.isdisjoint(code.strip() for code in conditions if code is not None)


def bar_eligible_column(source: str | Column = "source", conditions: str | Column = "conditions") -> Column:
    """The same rule as ``is_bar_eligible``, as a Spark boolean Column (never null)."""
    from pyspark.sql import functions as F

    source_col = F.col(source) if isinstance(source, str) else source
    conditions_col = F.col(conditions) if isinstance(conditions, str) else conditions
    excluded = sorted(EXCLUDED_CODES)
    has_excluded = F.exists(
        F.coalesce(conditions_col, F.array().cast("array<string>")),
        lambda code: F.coalesce(F.trim(code).isin(excluded), F.lit(False)),
    )
    return F.coalesce(source_col != F.lit(CONDITIONED_SOURCE), F.lit(True)) | ~has_excluded
