"""Hostile Kafka messages for the contract's differential tests: what a broken or malicious producer
could write to a topic, by family (types, encodings, JSON syntax, numbers, times, unicode, sizes).

The model (``Model.model_validate_json``) is the reference; the tests compare a job's verdict and
stored values with it, so this module never says what is valid, only how to make messages.
"""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

from hypothesis import strategies as st

from lakehouse.messages import Source, Trade, trade_id

KAFKA_MAX_MESSAGE_BYTES = 1_048_588  # the broker's default message.max.bytes
SESSION_MS = 1_767_261_600_000  # 2026-01-01T10:00:00Z: a realistic time for a message's *_ms fields
SECONDS_NOT_MS = 1_733_300_000  # 2024-12-04T08:13:20Z in seconds: in milliseconds, 1970-01-21

LINE_ENDS = ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x00", "\t", "\x1b"]
ODD_TEXT = ["", " ", "AAPL\n", "AAPL\r", "AAPL\u2028", "\ufeffAAPL", "ＡＡＰＬ", "AAP L", "A" * 32, "A" * 33,
            "ÄPL", "\ud800", "AAPL\\", "BRK.B", "^VIX", "BINANCE:BTCUSDT", "a/b_c-d", "💹", "null", "1"]
ODD_NUMBERS = [0, -0.0, 0.0, math.inf, -math.inf, math.nan,
               5e-324, 2.2250738585072014e-308, 1e308, 1.7976931348623157e308, -1, 1, 2**53 + 1,
               2**63 - 1, 2**63, 2**64, -(2**63), 10**30, 1e-300, 0.1, 4_102_444_799_999, 4_102_444_800_000,
               253_402_300_800_000, -62_135_596_800_000, 1.5, 1e16, SECONDS_NOT_MS, 946_684_799_999,
               946_684_800_000]
NUMBER_TEXT = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "00", "01", "1.", ".5", "+1", "0x10",
               "1_000", "1E2", "-0", "123456789012345678901234567890", "1.0e+2"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
TEXT = st.one_of(
    st.sampled_from(ODD_TEXT),
    st.text(max_size=40),
    st.builds(lambda base, end: base + end, st.sampled_from(["AAPL", "X", "VCB"]), st.sampled_from(LINE_ENDS)),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=70),
)
# A field value of any JSON type, leaning to the edges of the type the field has.
INVALID_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\x80", b"\xf4\x90\x80\x80"]
FIELD_VALUES = st.one_of(
    TEXT, st.sampled_from(ODD_NUMBERS), st.floats(), st.integers(), JSON_VALUES,
    st.lists(TEXT, max_size=20), st.builds(str, st.sampled_from(ODD_NUMBERS)),
)


def valid_trade(index: int) -> dict[str, Any]:
    """A valid trade as a JSON-ready dict; ``index`` makes its trade id unique."""
    event_ms = SESSION_MS + index
    return {
        "schema_version": 1, "source": Source.FINNHUB.value, "symbol": "HOST", "price": 100.25 + index,
        "volume": 10.0, "event_time_ms": event_ms, "conditions": ["1"], "venue": None,
        "received_time_ms": event_ms + 5,
        "trade_id": trade_id(Source.FINNHUB, "HOST", event_ms, 100.25 + index, 10.0, ["1"], ordinal=index),
    }


# Valid messages of the other topics, as JSON-ready dicts.
VALID_BAR = {"source": "vnstock", "symbol": "VCB", "interval": "1D", "bar_start_ms": SESSION_MS, "open": 10.0,
             "high": 11.0, "low": 9.0, "close": 10.5, "volume": 1.0, "received_time_ms": SESSION_MS + 5}
VALID_GAP = {"source": "finnhub", "kind": "gap", "start_ms": SESSION_MS, "end_ms": SESSION_MS + 1,
             "reason": "disconnected"}
VALID_REJECT = {"source": "finnhub", "reason": "not JSON", "raw": "{x", "raw_truncated": False,
                "received_time_ms": SESSION_MS}


def _dumps(payload: dict[str, Any], canonical: bool = False) -> str:
    """JSON text; ``canonical`` writes it as ``model_dump_json`` does (no whitespace), the jobs' fast path."""
    return json.dumps(payload, allow_nan=True, ensure_ascii=False, separators=(",", ":") if canonical else None)


@st.composite
def hostile_trade(draw: st.DrawFn, index: int = 0) -> bytes:
    """One message for the trades topic: a valid trade broken (or not) in one or two ways."""
    payload = valid_trade(index)
    fields = list(Trade.model_fields)
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([*fields, "extra"]))
        if draw(st.booleans()) and name in payload:
            del payload[name]
        else:
            payload[name] = draw(FIELD_VALUES)
    family = draw(st.sampled_from(["plain", "plain", "plain", "number_text", "syntax", "encoding", "utf8", "size"]))
    text = _dumps(payload, canonical=draw(st.booleans()))
    if family == "number_text":
        name = draw(st.sampled_from(["price", "volume", "event_time_ms", "received_time_ms", "schema_version"]))
        text = _dumps({**payload, name: "@@"}).replace('"@@"', draw(st.sampled_from(NUMBER_TEXT)))
    elif family == "syntax":
        text = draw(st.sampled_from([
            text.replace('"', "'"), text + " x", text + text, text + "\n", " \t" + text, text[:-1],
            "/* c */" + text, text[:-1] + ', "symbol": "DUP"}', text[:-1] + ', "symbol": "HOST"}',
            '{"symbol": "DUP", ' + text[1:], "[" + text + "]", "[" * 5000 + "]" * 5000,
            text[:-1] + ', "deep": ' + "[" * 300 + "]" * 300 + "}", text.replace(": ", ":\u00a0"), "", "null",
        ]))
    elif family == "encoding":
        codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "utf-8-sig", "cp1252"]))
        return text.encode(codec, errors="replace")
    elif family == "utf8":
        raw = text.encode("utf-8", errors="surrogatepass")
        splice = draw(st.sampled_from(INVALID_UTF8))
        at = raw.find(b'"symbol": "') + len(b'"symbol": "')
        where = draw(st.sampled_from([at, at + 2, len(raw) - 2]))
        return raw[:where] + splice + raw[where:]
    elif family == "size":
        target = draw(st.sampled_from([1_000, 100_000, KAFKA_MAX_MESSAGE_BYTES - 1_000]))
        name = draw(st.sampled_from(["padding", "trade_id", "venue", "symbol"]))
        payload[name] = "x" * target
        text = _dumps(payload)
    return text.encode("utf-8", errors="surrogatepass")


NAMED_CASES: dict[str, bytes | None] = {
        "valid": _dumps(valid_trade(0)).encode(),
        "canonical": Trade.model_validate(valid_trade(18)).to_json_bytes(),
        "canonical, symbol ending in a line feed": _dumps({**valid_trade(19), "symbol": "AAPL\n"}, True).encode(),
        "canonical, trailing line feed": Trade.model_validate(valid_trade(20)).to_json_bytes() + b"\n",
        "canonical, price 1e400": _dumps(valid_trade(21), True).replace('"price":121.25', '"price":1e400').encode(),
        "canonical, volume -0.0": _dumps({**valid_trade(22), "volume": -0.0}, True).encode(),
        "canonical, price 1e308": _dumps({**valid_trade(34), "price": 1e308}, True).encode(),
        "canonical, price just over 1e12": _dumps({**valid_trade(35), "price": 1.0000000000001e12}, True).encode(),
        "canonical, price 1e12": _dumps({**valid_trade(36), "price": 1e12}, True).encode(),
        "canonical, volume 1e300": _dumps({**valid_trade(37), "volume": 1e300}, True).encode(),
        "canonical, volume 1e15": _dumps({**valid_trade(38), "volume": 1e15}, True).encode(),
        "canonical, price 1e-400": _dumps(valid_trade(23), True).replace('"price":123.25', '"price":1e-400').encode(),
        "symbol as a number": _dumps({**valid_trade(1), "symbol": 123}).encode(),
        "trade_id as a number": _dumps({**valid_trade(2), "trade_id": 42}).encode(),
        "venue as an object": _dumps({**valid_trade(3), "venue": {"a": 1}}).encode(),
        "conditions as numbers": _dumps({**valid_trade(4), "conditions": [1, 2]}).encode(),
        "symbol ending in a line feed": _dumps({**valid_trade(5), "symbol": "AAPL\n"}).encode(),
        "single quotes": _dumps(valid_trade(6)).replace('"', "'").encode(),
        "trailing bytes": _dumps(valid_trade(7)).encode() + b" garbage",
        "two objects": (_dumps(valid_trade(8)) + _dumps(valid_trade(9))).encode(),
        "invalid UTF-8 in the trade id":
            _dumps(valid_trade(10)).encode().replace(b'"trade_id": "', b'"trade_id": "\xff'),
        "NaN price": _dumps({**valid_trade(11), "price": math.nan}).encode(),
        "price as a string": _dumps({**valid_trade(12), "price": "100.5"}).encode(),
        "volume -0.0": _dumps({**valid_trade(13), "volume": -0.0}).encode(),
        "event time beyond 2099": _dumps({**valid_trade(14), "event_time_ms": 4_102_444_800_000}).encode(),
        "event time in seconds": _dumps({**valid_trade(28), "event_time_ms": SECONDS_NOT_MS}).encode(),
        "canonical, event time in seconds": _dumps({**valid_trade(29), "event_time_ms": SECONDS_NOT_MS}, True).encode(),
        "canonical, received time in seconds":
            _dumps({**valid_trade(30), "received_time_ms": SECONDS_NOT_MS}, True).encode(),
        "canonical, event time 0": _dumps({**valid_trade(31), "event_time_ms": 0}, True).encode(),
        "canonical, event time a millisecond before 2000":
            _dumps({**valid_trade(32), "event_time_ms": 946_684_799_999}, True).encode(),
        "canonical, event time 2000-01-01T00:00Z": _dumps({**valid_trade(33), "event_time_ms": 946_684_800_000},
                                                           True).encode(),
        "canonical, event time in the year 6000":
            _dumps({**valid_trade(24), "event_time_ms": 127_174_492_800_000}, True).encode(),
        "canonical, a condition code of 33 characters":
            _dumps({**valid_trade(25), "conditions": ["1", "C" * 33]}, True).encode(),
        "canonical, a condition code of 32 characters":
            _dumps({**valid_trade(26), "conditions": ["C" * 32]}, True).encode(),
        "a condition code of 500,000 characters": _dumps({**valid_trade(27), "conditions": ["1" * 500_000]}).encode(),
        "price a whole number": _dumps({**valid_trade(15), "price": 7}).encode(),
        "escaped symbol": _dumps(valid_trade(16)).replace('"HOST"', '"\\u0048OST"').encode(),
        "BOM": b"\xef\xbb\xbf" + _dumps(valid_trade(17)).encode(),
        "tombstone": None,
        "empty": b"",
}


def float_bits(value: float) -> bytes:
    """A float compared bit for bit (so -0.0 differs from 0.0)."""
    return struct.pack("<d", value)


def random_hostile_trade(rng: random.Random, index: int) -> bytes | None:
    """One hostile message from the same families, chosen by ``rng``: for a sample that runs through
    the real job once (Hypothesis's first example of a large strategy is its simplest one)."""
    payload: dict[str, Any] = valid_trade(index)
    for _ in range(rng.choice([0, 1, 1, 2])):
        name = rng.choice([*Trade.model_fields, "extra"])
        kind = rng.random()
        if kind < 0.15:
            payload.pop(name, None)
        elif kind < 0.45:
            payload[name] = rng.choice([*ODD_TEXT, rng.choice(["AAPL", "X"]) + rng.choice(LINE_ENDS)])
        elif kind < 0.75:
            payload[name] = rng.choice(ODD_NUMBERS)
        elif kind < 0.85:
            payload[name] = "".join(chr(rng.choice([rng.randrange(0x20, 0x7F), rng.randrange(0, 0x110000)]))
                                    for _ in range(rng.randrange(0, 12)))
        else:
            payload[name] = rng.choice([[1, 2], {"a": 1}, [], ["1"] * 17, None, True, str(rng.choice(ODD_NUMBERS))])
    text = _dumps(payload, canonical=rng.random() < 0.5)
    family = rng.choice(["plain", "plain", "plain", "number_text", "syntax", "encoding", "utf8", "size"])
    if family == "number_text":
        name = rng.choice(["price", "volume", "event_time_ms", "received_time_ms", "schema_version"])
        text = _dumps({**payload, name: "@@"}).replace('"@@"', rng.choice(NUMBER_TEXT))
    elif family == "syntax":
        text = rng.choice([text.replace('"', "'"), text + " x", text + text, text + "\n", "/* c */" + text,
                           text[:-1] + ', "symbol": "DUP"}', "[" + text + "]", "[" * 5000 + "]" * 5000, "", "null"])
    elif family == "encoding":
        return text.encode(rng.choice(["utf-16", "utf-32", "latin-1", "utf-8-sig", "cp1252"]), errors="replace")
    elif family == "utf8":
        raw = text.encode("utf-8", errors="surrogatepass")
        where = rng.randrange(1, len(raw))
        return raw[:where] + rng.choice(INVALID_UTF8) + raw[where:]
    elif family == "size":
        payload[rng.choice(["padding", "trade_id", "venue"])] = "x" * rng.choice([1_000, 100_000, 1_000_000])
        text = _dumps(payload, canonical=True)
    return text.encode("utf-8", errors="surrogatepass")
