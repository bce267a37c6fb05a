"""The Kafka message contracts: what producers publish and jobs consume, defined once.

Every message is one JSON object, keyed by symbol, carrying ``schema_version``. Times are UTC epoch
milliseconds (``*_ms``). Producers build these models; the Spark jobs derive their JSON schema and
validation rules from them (``lakehouse.parsing``), so the two sides cannot drift apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, model_validator
from pydantic_core import PydanticCustomError, core_schema

SCHEMA_VERSION = 1

Symbol = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9.:/^_\-]+$")]
ConditionCode = Annotated[str, Field(max_length=32)]

# From 2000-01-01T00:00Z: no market this project reads trades before (Finnhub's feed is live; HOSE,
# the oldest vnstock exchange, opened in July 2000), and a time in seconds (1733300000, 2024 read as
# 1970-01-21) or any smaller unit mix-up falls below it. Up to 2099-12-31: a later time is no
# market's (a time in microseconds is past it), and one of year ~5138 or later overflowed the bars'
# exact (event time, Kafka position) order key, failing the bars stream on every restart; pandas
# (the reading API) holds nothing after 2262.
EARLIEST_EPOCH_MS = 946_684_800_000
LATEST_EPOCH_MS = 4_102_444_799_999


@dataclass(frozen=True)
class NotBefore:
    """A lower bound on an epoch-ms time whose refusal names the likely mistake, a time in seconds
    (pydantic's own ``ge`` would say only "greater than or equal to 946684800000"). The Spark jobs
    apply the same bound on their fast path (``lakehouse.parsing``)."""

    earliest_ms: int
    label: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {**handler(schema), "minimum": self.earliest_ms}

    def _check(self, value: int) -> int:
        if value >= self.earliest_ms:
            return value
        if self.earliest_ms <= value * 1000 <= LATEST_EPOCH_MS:
            hint = ": seconds instead of milliseconds?"
        else:
            hint = ", the earliest time a message may carry"
        raise PydanticCustomError("time_too_early", "{value} is before {label}{hint}",
                                  {"value": value, "label": self.label, "hint": hint})


EpochMs = Annotated[int, Field(le=LATEST_EPOCH_MS), NotBefore(EARLIEST_EPOCH_MS, "2000-01-01T00:00Z")]

# Prices and volumes end where no market is (the dearest share trades near 1e6, a meme token's
# trade near 1e10 units) and well before float64 does: a bar's notional is sum(price * volume), and
# one trade at price 1e308 made it infinite and its VWAP infinite or NaN. At the bounds a trade's
# notional is 1e27, and a minute of a million such trades is still exact enough and finite.
MAX_PRICE = 1e12
MAX_VOLUME = 1e15
Price = Annotated[float, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)]
Volume = Annotated[float, Field(ge=0, le=MAX_VOLUME, allow_inf_nan=False)]


class Source(StrEnum):
    FINNHUB = "finnhub"
    VNSTOCK = "vnstock"


class _Message(BaseModel):
    # Unknown fields are ignored, as the Spark jobs ignore them: a newer producer may add a field
    # without breaking older consumers. A change of meaning needs a new schema_version.
    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION

    def key(self) -> bytes:
        """Kafka key: messages of one symbol share a partition and so keep their order."""
        return getattr(self, "symbol", "").encode()

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class Trade(_Message):
    """One executed trade as reported by a source."""

    source: Source
    symbol: Symbol
    price: Price
    volume: Volume
    event_time_ms: EpochMs
    # Each code short (Finnhub's are numbers such as "12"): one 1.5 MB code passed the model and
    # Kafka refused the record, which ended the producer.
    conditions: list[ConditionCode] = Field(default_factory=list, max_length=16)
    venue: str | None = Field(default=None, max_length=32)
    received_time_ms: EpochMs
    trade_id: str = Field(min_length=1, max_length=64)


class BarInterval(StrEnum):
    """Vendor bar intervals, in vnstock's own spelling."""

    MINUTE_1 = "1m"
    MINUTE_5 = "5m"
    MINUTE_15 = "15m"
    MINUTE_30 = "30m"
    HOUR_1 = "1H"
    DAY_1 = "1D"


class VendorBar(_Message):
    """An OHLCV bar computed by the data vendor (vnstock), not by us."""

    source: Source
    symbol: Symbol
    interval: BarInterval
    bar_start_ms: EpochMs
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Volume
    received_time_ms: EpochMs

    @model_validator(mode="after")
    def _high_low_bound_the_bar(self) -> VendorBar:
        if not (self.low <= min(self.open, self.close) and self.high >= max(self.open, self.close)):
            raise ValueError("low <= open, close <= high does not hold")
        return self


class FeedEventKind(StrEnum):
    GAP = "gap"


class FeedEvent(_Message):
    """Something a consumer must know about the feed itself, e.g. a gap while disconnected.

    A ``gap`` says: between ``start_ms`` and ``end_ms`` the producer was not receiving, so trades
    in that span may be missing.
    """

    source: Source
    kind: FeedEventKind
    start_ms: EpochMs
    end_ms: EpochMs
    reason: str = Field(max_length=500)
    symbol: str = ""

    def key(self) -> bytes:
        return self.source.value.encode()


class QuarantinedInput(_Message):
    """Something a producer received from a source and could not turn into a message.

    Published to the quarantine topic keyed by source, so nothing a source sends is dropped
    silently; the quarantine job lands it in the quarantine table with its reason.
    """

    source: Source
    reason: str = Field(max_length=2000)
    raw: str
    raw_truncated: bool = False
    received_time_ms: EpochMs

    def key(self) -> bytes:
        return self.source.value.encode()


def trade_id(
    source: Source,
    symbol: str,
    event_time_ms: int,
    price: float,
    volume: float,
    conditions: list[str] | tuple[str, ...] = (),
    ordinal: int = 0,
    vendor_id: str | None = None,
) -> str:
    """A deterministic id for a trade, from the source's own fields.

    The same trade re-sent (by a reconnect replay or a producer restart) gets the same id, so the
    jobs can store it once. Where the vendor has its own id it is used; otherwise the id hashes
    the trade's fields plus ``ordinal``: the position of this trade among identical-looking trades
    (same symbol, ms, price, volume, conditions) within one source frame or poll, so that two
    genuine trades that look alike are not collapsed into one.
    """
    if vendor_id is not None:
        basis = f"{source.value}|{symbol}|vendor|{vendor_id}"
    else:
        basis = "|".join(
            [source.value, symbol, str(event_time_ms), repr(float(price)), repr(float(volume)),
             ",".join(sorted(conditions)), str(ordinal)]
        )
    return hashlib.sha256(basis.encode()).hexdigest()[:32]
