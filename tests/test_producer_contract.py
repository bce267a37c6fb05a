"""The producers' own validation is the contract's: whatever they publish validates against the model
(``model_validate_json`` of the published bytes gives the same message back), and whatever they
cannot convert becomes a quarantine record, never an exception and never nothing."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.messages import BarInterval, QuarantinedInput, Trade, VendorBar
from producers.finnhub.parser import parse_frame
from producers.vnstock_feed.convert import bars_from_rows, trades_from_rows
from tests.hostile_messages import FIELD_VALUES, ODD_NUMBERS, TEXT
from tests.test_finnhub_parser import items, json_values

RECEIVED_MS = 1_767_261_600_000
NUMBERS = st.one_of(st.sampled_from(ODD_NUMBERS), st.floats(), st.integers(), FIELD_VALUES)


def assert_published_bytes_validate(messages: list, model: type) -> None:
    for message in messages:
        assert model.model_validate_json(message.to_json_bytes()) == message


@settings(max_examples=300, deadline=None)
@given(st.lists(items | json_values, max_size=6), TEXT)
def test_every_finnhub_item_is_published_as_the_model_accepts_it_or_quarantined(data: list, symbol: str) -> None:
    frame = parse_frame(json.dumps({"type": "trade", "data": [*data, {"s": symbol, "p": 1, "t": RECEIVED_MS, "v": 1}]},
                                   allow_nan=True), RECEIVED_MS)

    assert len(frame.trades) + len(frame.quarantined) == len(data) + 1
    assert_published_bytes_validate(frame.trades, Trade)
    assert_published_bytes_validate(frame.quarantined, QuarantinedInput)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_a_finnhub_frame_of_any_bytes_is_published_valid_or_quarantined_valid(raw: bytes | str) -> None:
    frame = parse_frame(raw, RECEIVED_MS)

    assert_published_bytes_validate(frame.trades, Trade)
    assert_published_bytes_validate(frame.quarantined, QuarantinedInput)


TRADE_FIELDS = {"time_ms": NUMBERS, "price": NUMBERS, "volume": NUMBERS, "id": TEXT | NUMBERS}
BAR_FIELDS = {name: NUMBERS for name in ("time_ms", "open", "high", "low", "close", "volume")}
# Rows with every field (hostile values) and rows with fields missing.
vnstock_trade_rows = st.lists(
    st.fixed_dictionaries(TRADE_FIELDS, optional={"match_type": TEXT | FIELD_VALUES})
    | st.fixed_dictionaries({}, optional=TRADE_FIELDS), max_size=6,
)
vnstock_bar_rows = st.lists(st.fixed_dictionaries(BAR_FIELDS) | st.fixed_dictionaries({}, optional=BAR_FIELDS),
                            max_size=6)


@settings(max_examples=300, deadline=None)
@given(vnstock_trade_rows, vnstock_bar_rows, st.sampled_from(list(BarInterval)))
def test_every_vnstock_row_is_published_as_the_model_accepts_it_or_quarantined(
    trade_rows: list, bar_rows: list, interval: BarInterval
) -> None:
    trades = trades_from_rows("VCB", trade_rows, RECEIVED_MS)
    bars = bars_from_rows("VCB", interval, bar_rows, RECEIVED_MS)

    assert len(trades.trades) + len(trades.quarantined) == len(trade_rows)
    assert len(bars.bars) + len(bars.quarantined) == len(bar_rows)
    assert_published_bytes_validate(trades.trades, Trade)
    assert_published_bytes_validate(bars.bars, VendorBar)
    assert_published_bytes_validate(trades.quarantined + bars.quarantined, QuarantinedInput)
