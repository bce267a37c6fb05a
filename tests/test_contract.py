"""One contract, enforced identically: what the jobs' parser stores is exactly what the pydantic
model accepts, with the model's own values, and everything else is rejected with the model's reason.

The reference is ``Model.model_validate_json`` itself, so these tests cannot drift from the contract.
"""

from __future__ import annotations

import enum
from typing import Any

import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.messages import FeedEvent, Trade, VendorBar
from lakehouse.parsing import EMPTY_MESSAGE, PARSED, REJECT_REASON, MessageParser, reject_reason
from tests.hostile_messages import FIELD_VALUES, NAMED_CASES, float_bits, hostile_trade


def model_verdict(model: type[pydantic.BaseModel], raw: bytes | None) -> tuple[tuple | None, str | None]:
    """(the model's field values, comparable bit for bit, or None; the reason, or None)."""
    if raw is None:
        return None, EMPTY_MESSAGE
    try:
        message = model.model_validate_json(raw)
    except pydantic.ValidationError as error:
        return None, reject_reason(error)
    return comparable([getattr(message, name) for name in model.model_fields]), None


def comparable(values: list[Any]) -> tuple:
    def one(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, float):
            return ("float", float_bits(value))
        if isinstance(value, list):
            return tuple(one(v) for v in value)
        return value

    return tuple(one(value) for value in values)


def parser_verdicts(spark, model: type[pydantic.BaseModel], corpus: list[bytes | None]) -> list[tuple]:
    frame = spark.createDataFrame([(i, raw) for i, raw in enumerate(corpus)], "offset long, value binary")
    rows = MessageParser(model)(frame).orderBy("offset").collect()
    assert [row["value"] for row in rows] == corpus, "the parser must pass the raw bytes through untouched"
    return [
        (None if row[PARSED] is None else comparable(list(row[PARSED])), row[REJECT_REASON]) for row in rows
    ]


def assert_parser_agrees_with_model(spark, model: type[pydantic.BaseModel], corpus: list[bytes | None]) -> None:
    expected = [model_verdict(model, raw) for raw in corpus]
    actual = parser_verdicts(spark, model, corpus)
    disagreements = [(raw[:200] if raw else raw, want, got)
                     for raw, want, got in zip(corpus, expected, actual, strict=True) if want != got]
    assert not disagreements, f"{len(disagreements)} of {len(corpus)} disagree, e.g. {disagreements[:3]}"


def test_the_issues_hostile_examples_get_the_models_verdict_and_values(spark) -> None:
    corpus = list(NAMED_CASES.values())

    assert_parser_agrees_with_model(spark, Trade, corpus)
    verdicts = dict(zip(NAMED_CASES, parser_verdicts(spark, Trade, corpus), strict=True))
    for name in ("symbol as a number", "trade_id as a number", "venue as an object", "conditions as numbers",
                 "symbol ending in a line feed", "single quotes", "trailing bytes", "two objects",
                 "invalid UTF-8 in the trade id", "BOM", "tombstone", "empty"):
        assert verdicts[name][0] is None, f"{name} must be rejected"
    assert verdicts["price a whole number"][0][3] == ("float", float_bits(7.0))
    assert verdicts["tombstone"][1] == EMPTY_MESSAGE
    assert verdicts["symbol as a number"][1] == "symbol: Input should be a valid string"


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_hostile_trades_get_the_models_verdict_and_values_from_the_parser(spark, data) -> None:
    corpus = [data.draw(hostile_trade(index)) for index in range(400)]

    assert_parser_agrees_with_model(spark, Trade, corpus)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.dictionaries(
    st.sampled_from([*VendorBar.model_fields, *FeedEvent.model_fields]), FIELD_VALUES, max_size=12,
), min_size=100, max_size=100))
def test_hostile_vendor_bars_and_feed_events_get_the_models_verdict(spark, payloads) -> None:
    bar = {"source": "vnstock", "symbol": "VCB", "interval": "1D", "bar_start_ms": 0, "open": 10.0,
           "high": 11.0, "low": 9.0, "close": 10.5, "volume": 1.0, "received_time_ms": 0}
    gap = {"source": "finnhub", "kind": "gap", "start_ms": 0, "end_ms": 1, "reason": "disconnected"}
    import json

    for model, base in ((VendorBar, bar), (FeedEvent, gap)):
        corpus = [json.dumps({**base, **payload}, allow_nan=True).encode("utf-8", "surrogatepass")
                  for payload in payloads]
        assert_parser_agrees_with_model(spark, model, [json.dumps(base).encode(), *corpus])
