"""The Finnhub frame parser: trades out, bad input to quarantine, never an exception."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosedError, PayloadTooBig
from websockets.frames import Close, CloseCode

from producers.finnhub.client import redact_url, refused_frame_bytes, url_with_token
from producers.finnhub.parser import parse_frame

RECEIVED = 1_700_000_001_000


def trade_frame(*items: dict) -> str:
    return json.dumps({"type": "trade", "data": list(items)})


def test_trade_frame_becomes_trades_with_deterministic_ids() -> None:
    raw = trade_frame({"s": "AAPL", "p": 189.5, "t": 1_700_000_000_123, "v": 100, "c": ["1", "12"]})
    first, again = parse_frame(raw, RECEIVED), parse_frame(raw, RECEIVED + 5)
    assert first.kind == "trade" and not first.quarantined
    trade = first.trades[0]
    assert (trade.symbol, trade.price, trade.volume, trade.event_time_ms) == (
        "AAPL",
        189.5,
        100.0,
        1_700_000_000_123,
    )
    assert trade.conditions == ["1", "12"] and trade.received_time_ms == RECEIVED
    assert trade.trade_id == again.trades[0].trade_id


def test_look_alike_trades_in_one_frame_keep_distinct_ids() -> None:
    item = {"s": "MSFT", "p": 370.0, "t": 1_700_000_000_000, "v": 10}
    frame = parse_frame(trade_frame(item, item, item), RECEIVED)
    assert len({t.trade_id for t in frame.trades}) == 3


def test_one_bad_item_is_quarantined_and_the_rest_of_the_frame_survives() -> None:
    good = {"s": "AAPL", "p": 1.0, "t": 1_700_000_000_000, "v": 1, "c": None}
    bad = {"s": "AAPL", "p": -3, "t": 1_700_000_000_000, "v": 1}
    frame = parse_frame(trade_frame(good, bad, {"p": 1}), RECEIVED)
    assert len(frame.trades) == 1 and len(frame.quarantined) == 2
    assert json.loads(frame.quarantined[0].raw) == bad
    assert "price" in frame.quarantined[0].reason and "lacks s" in frame.quarantined[1].reason


def test_a_trade_time_in_seconds_is_quarantined_as_a_unit_mix_up_not_stored_as_a_1970_trade() -> None:
    """Finnhub's ``t`` is epoch milliseconds: 1733300000 is 2024-12-04 in seconds, 1970-01-21 in ms."""
    item = {"s": "AAPL", "p": 189.5, "t": 1_733_300_000, "v": 100}
    frame = parse_frame(trade_frame(item, {**item, "t": 1_733_300_000_000}), RECEIVED)
    assert [t.event_time_ms for t in frame.trades] == [1_733_300_000_000]
    [record] = frame.quarantined
    assert json.loads(record.raw) == item
    assert record.reason == (
        "invalid trade item: event_time_ms: 1733300000 is before 2000-01-01T00:00Z: seconds instead of milliseconds?")


def test_ping_error_and_unknown_frames_publish_nothing() -> None:
    assert parse_frame('{"type":"ping"}', RECEIVED).kind == "ping"
    error = parse_frame('{"type":"error","msg":"Invalid API key"}', RECEIVED)
    assert error.kind == "error" and error.error_message == "Invalid API key" and not error.quarantined
    assert parse_frame('{"type":"news","data":[]}', RECEIVED).kind == "other"


def test_invalid_json_is_quarantined_with_its_raw_text() -> None:
    frame = parse_frame("{not json", RECEIVED)
    assert frame.kind == "invalid" and frame.quarantined[0].raw == "{not json"
    assert "not valid JSON" in frame.quarantined[0].reason


def test_boolean_and_non_finite_numbers_are_rejected() -> None:
    frame = parse_frame(
        '{"type":"trade","data":[{"s":"A","p":true,"t":1,"v":1},{"s":"A","p":NaN,"t":1,"v":1}]}', RECEIVED
    )
    assert not frame.trades and len(frame.quarantined) == 2


def test_token_is_added_to_the_url_and_redacted_in_logs() -> None:
    url = url_with_token("wss://ws.finnhub.io", "s3cr3t")
    assert url == "wss://ws.finnhub.io?token=s3cr3t"
    assert "s3cr3t" not in redact_url(url) and "token=***" in redact_url(url)


def test_a_close_for_a_frame_too_big_gives_its_size_when_websockets_knows_it() -> None:
    def closed(code: CloseCode, cause: BaseException | None) -> ConnectionClosedError:
        error = ConnectionClosedError(None, Close(code, ""), None)
        error.__cause__ = cause
        return error

    assert refused_frame_bytes(closed(CloseCode.MESSAGE_TOO_BIG, PayloadTooBig(5_000_000, 4_194_304))) == 5_000_000
    assert refused_frame_bytes(closed(CloseCode.MESSAGE_TOO_BIG, PayloadTooBig(None, 4_194_304))) == 0  # inflating
    assert refused_frame_bytes(closed(CloseCode.ABNORMAL_CLOSURE, None)) is None
    assert refused_frame_bytes(ConnectionClosedError(None, None, None)) is None  # closed by the server


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=5)
    ),
    max_leaves=20,
)
items = st.fixed_dictionaries(
    {},
    optional={
        "s": st.one_of(st.text(max_size=40), json_values),
        "p": json_values | st.floats(),
        "t": st.integers() | json_values,
        "v": st.floats() | json_values,
        "c": st.lists(st.text(max_size=5) | st.integers(), max_size=20) | json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_no_byte_string_crashes_the_parser(raw: bytes | str) -> None:
    frame = parse_frame(raw, RECEIVED)
    assert frame.kind in ("trade", "ping", "error", "other", "invalid")


@settings(max_examples=400, deadline=None)
@given(st.lists(items | json_values, max_size=6), st.sampled_from(["trade", "ping", "error", 3, None]))
def test_every_item_becomes_a_trade_or_a_quarantine_record(data: list, kind: object) -> None:
    frame = parse_frame(json.dumps({"type": kind, "data": data}), RECEIVED)
    if kind == "trade":
        assert len(frame.trades) + len(frame.quarantined) == len(data)
        assert len({t.trade_id for t in frame.trades}) == len(frame.trades)
