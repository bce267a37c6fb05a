"""The vnstock producer: the real vnstock library -> local VCI-shaped server -> real local Kafka."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest

from lakehouse.local.kafka_broker import LocalKafkaBroker, ensure_topics
from lakehouse.messages import BarInterval
from producers.backoff import Backoff
from producers.kafka_sink import KafkaSink, SinkConfig
from producers.simulators.kafka_reader import read_topic
from producers.simulators.vnstock_server import VnstockSimulator
from producers.vnstock_feed.poller import BACKFILL_ATTEMPTS, VnstockPoller, VnstockTopics
from producers.vnstock_feed.source import RequestPacer, SourceUnavailableError, VnstockSource
from producers.vnstock_feed.trading_hours import VN_TZ
from producers.vnstock_feed.watermark import HighWaterMarks

SYMBOL = "FPT"


class MarketClock:
    """The simulated market's 'now', shared by the server and the producer (epoch seconds)."""

    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def set(self, at: datetime) -> None:
        self.now = at.timestamp()


@pytest.fixture(autouse=True)
def vnstock_as_a_fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """vnstock refuses intraday calls 07:00-09:00 Vietnam *wall-clock* time and keeps a per-process
    quota (20 calls/min for guests). Each test stands for its own producer process on a market
    clock of its own, so both are pinned here; the library itself is otherwise unmodified."""
    import vnai.beam.quota as quota
    import vnstock.explorer.vci.quote as vci_quote

    monkeypatch.setattr(
        vci_quote,
        "trading_hours",
        lambda *a, **k: {"is_trading_hour": True, "data_status": "realtime", "time": ""},
    )
    quota.guardian.usage_counters.clear()


@pytest.fixture
def clock() -> MarketClock:
    return MarketClock(datetime(2025, 6, 3, 10, 0, 30, tzinfo=VN_TZ))  # a Tuesday morning


@pytest.fixture
def server(clock: MarketClock) -> Iterator[VnstockSimulator]:
    simulator = VnstockSimulator(clock=lambda: clock.now).start_in_thread()
    yield simulator
    simulator.stop()


@pytest.fixture
def topics(kafka_broker: LocalKafkaBroker) -> VnstockTopics:
    suffix = uuid.uuid4().hex[:8]
    names = VnstockTopics(f"vn.trades.{suffix}", f"vn.bars.{suffix}", f"vn.quarantine.{suffix}")
    ensure_topics(kafka_broker.bootstrap_servers, [names.trades, names.vendor_bars, names.quarantine], 2)
    return names


def make_poller(
    server: VnstockSimulator,
    clock: MarketClock,
    kafka_broker: LocalKafkaBroker,
    topics: VnstockTopics,
    state: Path,
    symbols: tuple[str, ...] = (SYMBOL,),
) -> VnstockPoller:
    return VnstockPoller(
        VnstockSource(server.base_url, RequestPacer(100)),
        KafkaSink(SinkConfig(kafka_broker.bootstrap_servers)),
        topics,
        HighWaterMarks(state / "hwm.json"),
        list(symbols),
        page_size=100,
        backoff=Backoff(0.05, 0.2),
        clock_ms=lambda: int(clock.now * 1000),
    )


def test_polling_across_a_restart_publishes_no_duplicates(
    server, clock, kafka_broker, topics, tmp_path
) -> None:
    first = make_poller(server, clock, kafka_broker, topics, tmp_path)
    r1 = first.poll_once()
    clock.set(datetime(2025, 6, 3, 10, 20, 50, tzinfo=VN_TZ))
    r2 = first.poll_once()  # 20 minutes later
    r_same = first.poll_once()  # nothing new
    assert first.sink.close()

    clock.set(datetime(2025, 6, 3, 15, 30, tzinfo=VN_TZ))
    restarted = make_poller(server, clock, kafka_broker, topics, tmp_path)  # same state dir
    r3 = restarted.poll_once()
    assert restarted.sink.close()

    trades = read_topic(kafka_broker.bootstrap_servers, topics.trades)
    bars = read_topic(kafka_broker.bootstrap_servers, topics.vendor_bars)
    assert r1.trades == 3 * 60 + 2 and r2.trades == 1 + 3 * 20 and r_same.trades == 0
    assert len(trades) == 3 * 255 == r1.trades + r2.trades + r3.trades  # the whole session, once
    assert not [k for k, n in Counter(t["trade_id"] for t in trades).items() if n > 1]
    assert [t["event_time_ms"] for t in trades] == sorted(t["event_time_ms"] for t in trades)
    minute_bars = [b for b in bars if b["interval"] == "1m"]
    day_bars = [b for b in bars if b["interval"] == "1D"]
    assert not [k for k, n in Counter((b["interval"], b["bar_start_ms"]) for b in bars).items() if n > 1]
    today = [
        b for b in minute_bars if b["bar_start_ms"] >= datetime(2025, 6, 3, tzinfo=VN_TZ).timestamp() * 1000
    ]
    assert len(today) == 255  # every final minute of the day
    assert day_bars[-1]["bar_start_ms"] == datetime(2025, 6, 3, tzinfo=VN_TZ).timestamp() * 1000
    assert all(t["source"] == "vnstock" and t["conditions"] in (["Buy"], ["Sell"]) for t in trades)
    assert not read_topic(kafka_broker.bootstrap_servers, topics.quarantine)


def test_backfill_loads_the_date_range_of_daily_and_minute_bars(
    server, clock, kafka_broker, topics, tmp_path
) -> None:
    poller = make_poller(server, clock, kafka_broker, topics, tmp_path)
    result = poller.backfill(date(2025, 5, 26), date(2025, 5, 30))
    assert poller.sink.close()
    bars = read_topic(kafka_broker.bootstrap_servers, topics.vendor_bars)
    days = {
        datetime.fromtimestamp(b["bar_start_ms"] / 1000, VN_TZ).date() for b in bars if b["interval"] == "1D"
    }
    assert {date(2025, 5, d) for d in range(26, 31)} <= days
    assert result.bars["1m"] == 5 * 255
    assert (
        poller.marks.bar_mark(SYMBOL, BarInterval.DAY_1)
        >= datetime(2025, 5, 30, tzinfo=VN_TZ).timestamp() * 1000
    )


def test_source_errors_back_off_and_the_next_poll_catches_up(
    server, clock, kafka_broker, topics, tmp_path
) -> None:
    poller = make_poller(server, clock, kafka_broker, topics, tmp_path)
    server.fail_next(1, 500)
    with pytest.raises(SourceUnavailableError):
        poller.poll_once()
    server.fail_next(2, 429)  # vnstock waits out Retry-After once, then opens its circuit
    with pytest.raises(SourceUnavailableError) as refused:
        poller.poll_once()
    wait = refused.value.retry_after_seconds
    assert wait is not None and 1 <= wait <= 60
    assert poller.marks.trade_mark(SYMBOL).time_ms == -1  # nothing published, nothing marked
    time.sleep(wait)
    assert poller.poll_once().trades == 3 * 60 + 2
    assert poller.sink.close()


# Trades of the session's 51st minute (VCI-style ids: date, minute index, trade of the minute).
BAD_ROWS = {
    "202506030500": {"truncTime": None},
    "202506030501": {"truncTime": 10**13},  # seconds in the year 318857
    "202506030502": {"matchPrice": "n/a"},
    "202506030510": {"truncTime": [1]},  # vnstock raised a TypeError here, which ended the producer
}
TRADES_BY_10_00_30 = 3 * 60 + 2


def test_bad_rows_are_quarantined_alone_and_the_rest_of_their_page_is_published(
    server, clock, kafka_broker, topics, tmp_path
) -> None:
    """vnstock converts a page as one frame, so one trade without a time used to fail the page,
    every poll: the symbol stalled and nothing said which row. Now the page is read row by row."""
    for trade_id, fields in BAD_ROWS.items():
        server.corrupt_trade(SYMBOL, trade_id, **fields)
    poller = make_poller(server, clock, kafka_broker, topics, tmp_path, (SYMBOL, "VNM"))
    first = poller.poll_once()
    clock.set(datetime(2025, 6, 3, 10, 20, 50, tzinfo=VN_TZ))
    second = poller.poll_once()  # its pages hold the bad rows again
    assert poller.sink.close()

    trades = read_topic(kafka_broker.bootstrap_servers, topics.trades)
    rejects = read_topic(kafka_broker.bootstrap_servers, topics.quarantine)
    per_symbol = Counter(t["symbol"] for t in trades)
    assert first.failed_symbols == second.failed_symbols == []
    assert per_symbol == {SYMBOL: TRADES_BY_10_00_30 + 61 - len(BAD_ROWS), "VNM": TRADES_BY_10_00_30 + 61}
    assert not [k for k, n in Counter(t["trade_id"] for t in trades).items() if n > 1]
    assert sorted(json.loads(r["raw"])["id"] for r in rejects) == sorted(BAD_ROWS)  # each once
    reasons = {json.loads(r["raw"])["id"]: r["reason"] for r in rejects}
    assert "event_time_ms" in reasons["202506030501"] and "invalid intraday trade" in reasons["202506030500"]
    assert first.quarantined == second.quarantined == len(BAD_ROWS)


def test_a_symbol_the_source_cannot_answer_is_retried_next_poll_while_the_others_go_on(
    server, clock, kafka_broker, topics, tmp_path
) -> None:
    """One page that is not JSON (an HTML error page, twice: vnstock's read and the row-by-row
    read) used to end the poll at that symbol, so every later symbol waited out the back-off."""
    poller = make_poller(server, clock, kafka_broker, topics, tmp_path, (SYMBOL, "VNM", "HPG"))
    server.garble_next(2)
    first = poller.poll_once()
    second = poller.poll_once()
    assert poller.sink.close()
    trades = Counter(t["symbol"] for t in read_topic(kafka_broker.bootstrap_servers, topics.trades))
    assert first.failed_symbols == [SYMBOL] and first.trades == 2 * TRADES_BY_10_00_30
    assert second.failed_symbols == [] and second.trades == TRADES_BY_10_00_30
    assert trades == {SYMBOL: TRADES_BY_10_00_30, "VNM": TRADES_BY_10_00_30, "HPG": TRADES_BY_10_00_30}
    assert not read_topic(kafka_broker.bootstrap_servers, topics.quarantine)


def test_when_every_symbol_fails_in_a_row_the_poll_raises_and_the_loop_backs_off(
    server, clock, kafka_broker, topics, tmp_path
) -> None:
    poller = make_poller(server, clock, kafka_broker, topics, tmp_path, (SYMBOL, "VNM", "HPG", "VCB"))
    server.fail_next(3, 500)
    with pytest.raises(SourceUnavailableError):
        poller.poll_once()
    assert [body.get("symbol") for _, body in server.requests] == [SYMBOL, "VNM", "HPG"]  # not VCB
    assert poller.sink.close()


def test_a_backfill_gives_up_a_symbol_that_keeps_failing_and_loads_the_others(
    server, clock, kafka_broker, topics, tmp_path
) -> None:
    """It retried one failing symbol forever, so the symbols after it were never loaded."""
    server.fail_symbol(SYMBOL, 500)
    poller = make_poller(server, clock, kafka_broker, topics, tmp_path, (SYMBOL, "VNM"))
    result = poller.backfill(date(2025, 5, 26), date(2025, 5, 30))
    assert poller.sink.close()
    bars = read_topic(kafka_broker.bootstrap_servers, topics.vendor_bars)
    assert result.failed_symbols == [f"{SYMBOL} 1m", f"{SYMBOL} 1D"]
    assert {b["symbol"] for b in bars} == {"VNM"} and result.bars["1m"] == 5 * 255
    asked = Counter(str(body.get("symbols", [""])[0]) for _, body in server.requests)
    assert asked[SYMBOL] == 2 * BACKFILL_ATTEMPTS


def test_a_backfill_against_a_source_that_is_down_raises_after_three_given_up(
    server, clock, kafka_broker, topics, tmp_path
) -> None:
    for symbol in (SYMBOL, "VNM", "HPG"):
        server.fail_symbol(symbol, 500)
    poller = make_poller(server, clock, kafka_broker, topics, tmp_path, (SYMBOL, "VNM", "HPG"))
    with pytest.raises(SourceUnavailableError):
        poller.backfill(date(2025, 5, 26), date(2025, 5, 30))
    assert len(server.requests) == 3 * BACKFILL_ATTEMPTS  # FPT 1m, FPT 1D, VNM 1m: not the rest
    assert poller.sink.close()


def _vn_s(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=VN_TZ).timestamp())


def test_a_bad_bar_is_quarantined_alone_and_its_symbols_bars_go_on(
    server, clock, kafka_broker, topics, tmp_path
) -> None:
    """vnstock converts a chart page as one frame, so one bar whose price was not a number failed
    the page, every poll: that symbol's bars stalled for good. Now the page is read bar by bar."""
    server.corrupt_bar(SYMBOL, "ONE_MINUTE", _vn_s(2025, 6, 3, 9, 30), o="n/a")
    server.corrupt_bar(SYMBOL, "ONE_MINUTE", _vn_s(2025, 6, 3, 9, 31), v=None, t="soon")
    server.corrupt_bar(SYMBOL, "ONE_DAY", _vn_s(2025, 6, 2), c="closed")
    poller = make_poller(server, clock, kafka_broker, topics, tmp_path, (SYMBOL, "VNM"))
    first = poller.poll_once(include_trades=False)
    clock.set(datetime(2025, 6, 3, 10, 20, 50, tzinfo=VN_TZ))
    second = poller.poll_once(include_trades=False)  # its pages hold the bad bars again
    assert poller.sink.close()

    bars = read_topic(kafka_broker.bootstrap_servers, topics.vendor_bars)
    rejects = read_topic(kafka_broker.bootstrap_servers, topics.quarantine)
    today_ms = _vn_s(2025, 6, 3) * 1000
    minutes = Counter(b["symbol"] for b in bars if b["interval"] == "1m" and b["bar_start_ms"] >= today_ms)
    assert first.failed_symbols == second.failed_symbols == []
    assert minutes == {SYMBOL: 80 - 2, "VNM": 80}  # 09:00-10:19 final, less the two bad ones
    days = {s: {b["bar_start_ms"] for b in bars if b["interval"] == "1D" and b["symbol"] == s} for s in (SYMBOL, "VNM")}
    assert days == {SYMBOL: set(), "VNM": {_vn_s(2025, 6, 2) * 1000}}  # the first poll reaches back to Monday
    assert not [k for k, n in Counter((b["symbol"], b["interval"], b["bar_start_ms"]) for b in bars).items() if n > 1]
    reasons = sorted(r["reason"] for r in rejects)  # each bad bar once, its fields named
    assert len(reasons) == 3, reasons
    assert "close 'closed' is not a number" in reasons[0] and reasons[0].startswith("invalid 1D bar")
    assert "open 'n/a' is not a number" in reasons[1]
    assert "t 'soon' is not a time" in reasons[2] and "volume None is not a number" in reasons[2]

    # A bar read bar by bar is the bar vnstock's own conversion gives once the bad ones are gone.
    ohlcv = ("bar_start_ms", "open", "high", "low", "close", "volume")
    read_alone = {tuple(b[k] for k in ohlcv) for b in bars if b["symbol"] == SYMBOL and b["interval"] == "1m"}
    server.corrupt_bar(SYMBOL, "ONE_MINUTE", _vn_s(2025, 6, 3, 9, 30))
    server.corrupt_bar(SYMBOL, "ONE_MINUTE", _vn_s(2025, 6, 3, 9, 31))
    by_vnstock = VnstockSource(server.base_url, RequestPacer(100)).bars(SYMBOL, BarInterval.MINUTE_1,
                                                                       date(2025, 6, 3), date(2025, 6, 3))
    by_vnstock_keys = {(r["time_ms"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in by_vnstock}
    assert len(read_alone) > 70 and read_alone <= by_vnstock_keys
