"""The Spark jobs validate Kafka messages by the same contract the producers' pydantic models do."""

from __future__ import annotations

import json

import pydantic
import pytest

from lakehouse.messages import Source, Trade, VendorBar, trade_id
from lakehouse.parsing import PARSED, REJECT_REASON, MessageParser

VALID = Trade(
    source=Source.FINNHUB, symbol="BRK.B", price=412.5, volume=100.0, event_time_ms=1_767_261_600_123,
    conditions=["1", "12"], venue="N", received_time_ms=1_767_261_600_150,
    trade_id=trade_id(Source.FINNHUB, "BRK.B", 1_767_261_600_123, 412.5, 100.0, ["1", "12"]),
)


def mutated(**changes: object) -> bytes:
    payload = json.loads(VALID.model_dump_json())
    for key, value in changes.items():
        if value is ...:
            payload.pop(key)
        else:
            payload[key] = value
    return json.dumps(payload).encode()


CASES: list[tuple[bytes | None, str | None]] = [
    (VALID.to_json_bytes(), None),
    (mutated(venue=None, conditions=[]), None),
    (mutated(extra_field="ignored by both sides"), None),
    (None, "empty message"),
    (b"{not json", "Invalid JSON: key must be a string at line 1 column 2"),
    (b"[1, 2, 3]", "Input should be an object"),
    (mutated(price="abc"), "price: Input should be a valid number, unable to parse string as a number"),
    (mutated(price=...), "price: Field required"),
    (mutated(price=0), "price: Input should be greater than 0"),
    (mutated(volume=-5), "volume: Input should be greater than or equal to 0"),
    (mutated(schema_version=2), "schema_version: Input should be 1"),
    (mutated(source="nasdaq"), "source: Input should be 'finnhub' or 'vnstock'"),
    (mutated(symbol=""), "symbol: String should have at least 1 character"),
    (mutated(symbol="AA PL"), "symbol: String should match pattern '^[A-Za-z0-9.:/^_\\-]+$'"),
    (mutated(event_time_ms=-1),
     "event_time_ms: -1 is before 2000-01-01T00:00Z, the earliest time a message may carry"),
    (mutated(received_time_ms=1_767_261_600),
     "received_time_ms: 1767261600 is before 2000-01-01T00:00Z: seconds instead of milliseconds?"),
    (mutated(trade_id=...), "trade_id: Field required"),
    (mutated(conditions=[str(i) for i in range(17)]),
     "conditions: List should have at most 16 items after validation, not 17"),
]


def test_spark_accepts_and_rejects_what_pydantic_does_with_the_first_broken_rule(spark) -> None:
    rows = [(offset, value) for offset, (value, _) in enumerate(CASES)]
    frame = spark.createDataFrame(rows, "offset long, value binary")

    verdicts = MessageParser(Trade)(frame).orderBy("offset").select(REJECT_REASON).collect()
    reasons = [row[REJECT_REASON] for row in verdicts]

    assert reasons == [expected for _, expected in CASES]
    for value, expected in CASES:
        if expected is None:
            Trade.model_validate_json(value)
        else:
            with pytest.raises(pydantic.ValidationError):
                Trade.model_validate_json(value)


def test_a_vendor_bar_whose_high_and_low_do_not_bound_it_is_rejected_by_both(spark) -> None:
    bar = {"source": "vnstock", "symbol": "VCB", "interval": "1D", "bar_start_ms": 1_767_225_600_000, "open": 10.0,
           "high": 9.0, "low": 8.0, "close": 9.5, "volume": 1.0, "received_time_ms": 1_767_261_600_000}
    frame = spark.createDataFrame([(json.dumps(bar).encode(),)], "value binary")

    [row] = MessageParser(VendorBar)(frame).select(REJECT_REASON).collect()

    assert row[REJECT_REASON] == "Value error, low <= open, close <= high does not hold"
    with pytest.raises(pydantic.ValidationError):
        VendorBar.model_validate(bar)


def test_a_batch_on_the_fast_path_runs_no_python_and_one_off_it_is_judged_with_the_rest(spark) -> None:
    # A Python stage runs a worker per task even with no row to judge, and a second cache and a
    # union cost a pass: a batch whose every message is canonical must have neither.
    parser = MessageParser(Trade)
    canonical = [(offset, VALID.model_copy(update={"price": 400.0 + offset}).to_json_bytes()) for offset in range(50)]
    off_path = [*canonical, (50, mutated(price=0)), (51, mutated(extra_field="judged by the model"))]
    columns = ["offset", "value", PARSED, REJECT_REASON]
    plans, verdicts, judged = [], [], []
    for rows in (canonical, off_path):
        frame = spark.createDataFrame(rows, "offset long, value binary")
        with parser.persisted(frame, columns) as parsed:
            verdicts.append([row[REJECT_REASON] for row in parsed.orderBy("offset").collect()])
            plans.append(parsed._jdf.queryExecution().executedPlan().toString())
        judged.append(parser.judged_by_model)

    fast_plan, judged_plan = plans
    assert "ArrowEvalPython" not in fast_plan and "Union" not in fast_plan
    assert "Union" in judged_plan  # the model's cached verdicts beside the fast rows
    assert verdicts[0] == [None] * 50
    assert verdicts[1] == [None] * 50 + ["price: Input should be greater than 0", None]
    assert judged == [0, 2]  # what a benchmark checks: its feed never left the fast path
