"""The Kafka message contracts: what producers publish and jobs consume, defined once.

Every message is one JSON object, keyed by symbol, carrying ``schema_version``. Times are UTC epoch
milliseconds (``*_ms``). Producers build these models; the Spark jobs derive their JSON schema and
validation rules from them (``lakehouse.parsing``), so the two sides cannot drift apart.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1

Symbol = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9.:/^_\-]+$")]
# Up to 2099-12-31: a later time is no market's, and one of year ~5138 or later overflowed the bars'
# exact (event time, Kafka position) order key, failing the bars stream on every restart; pandas
# (the reading API) holds nothing after 2262.
ConditionCode = Annotated[str, Field(max_length=32)]
EpochMs = Annotated[int, Field(ge=0, le=4_102_444_799_999)]


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
    price: float = Field(gt=0, allow_inf_nan=False)
    volume: float = Field(ge=0, allow_inf_nan=False)
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
    open: float = Field(gt=0, allow_inf_nan=False)
    high: float = Field(gt=0, allow_inf_nan=False)
    low: float = Field(gt=0, allow_inf_nan=False)
    close: float = Field(gt=0, allow_inf_nan=False)
    volume: float = Field(ge=0, allow_inf_nan=False)
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
