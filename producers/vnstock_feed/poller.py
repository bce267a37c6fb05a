"""The vnstock polling loop: every interval, for each symbol, publish what is new since the marks.

One poll per symbol: intraday trades (paging back until the page reaches the high-water mark),
then 1-minute and daily bars (final bars only). After Kafka acknowledged the poll's messages, the
marks are saved, so a restart continues exactly where the last acknowledged poll ended. Outside
HOSE/HNX sessions the loop idles until the next one opens (backfill mode loads history instead).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from lakehouse.messages import BarInterval, Trade
from lakehouse.times import from_epoch_ms, now_ms
from producers.backoff import Backoff
from producers.kafka_sink import KafkaSink
from producers.progress import FeedCounters, ProgressLog
from producers.quarantine import QuarantinedInput
from producers.vnstock_feed.convert import bars_from_rows, new_final_bars, new_trades, trades_from_rows
from producers.vnstock_feed.source import SourceUnavailableError, VnstockSource
from producers.vnstock_feed.trading_hours import is_trading_time, local_date, seconds_until_open
from producers.vnstock_feed.watermark import HighWaterMarks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VnstockTopics:
    trades: str
    vendor_bars: str
    quarantine: str


@dataclass
class PollResult:
    trades: int = 0
    bars: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    failed_symbols: list[str] = field(default_factory=list)  # retried next poll, from their marks


# Failed symbols in a row that mean the source is down (the poll ends and the loop backs off).
SOURCE_DOWN_AFTER = 3


def source_is_down(failed_in_a_row: int, calls: int) -> bool:
    """``SOURCE_DOWN_AFTER`` failures in a row, or every call when there are fewer."""
    return failed_in_a_row >= min(SOURCE_DOWN_AFTER, calls)

QUARANTINED_ROWS_REMEMBERED = 10_000
# Attempts a backfill gives one symbol and interval before it moves on without it.
BACKFILL_ATTEMPTS = 4


class VnstockPoller:
    def __init__(
        self,
        source: VnstockSource,
        sink: KafkaSink,
        topics: VnstockTopics,
        marks: HighWaterMarks,
        symbols: list[str],
        intervals: tuple[BarInterval, ...] = (BarInterval.MINUTE_1, BarInterval.DAY_1),
        page_size: int = 500,
        max_pages: int = 20,
        first_poll_days: int = 3,
        backoff: Backoff | None = None,
        clock_ms: Callable[[], int] = now_ms,
        progress_interval_seconds: float = 60.0,
    ) -> None:
        self.source, self.sink, self.topics, self.marks = source, sink, topics, marks
        self.symbols, self.intervals = symbols, intervals
        self.page_size, self.max_pages, self.first_poll_days = page_size, max_pages, first_poll_days
        self.backoff = backoff or Backoff(initial_seconds=2.0, max_seconds=300.0)
        self.clock_ms = clock_ms
        self.counters = FeedCounters()
        self.progress = ProgressLog("vnstock", sink.stats, self.counters, progress_interval_seconds)
        self.stop_event = threading.Event()
        self._quarantined_rows: dict[str, None] = {}  # insertion-ordered: the oldest is forgotten first

    def request_stop(self) -> None:
        self.stop_event.set()

    # --- one poll ------------------------------------------------------------------------------
    def _fetch_trades(self, symbol: str) -> list[Trade]:
        """Page backwards from the newest trade until a page reaches the mark (or ``max_pages``)."""
        mark = self.marks.trade_mark(symbol)
        received = self.clock_ms()
        collected: dict[str, Trade] = {}
        before_s: int | None = None
        for _ in range(self.max_pages):
            rows = self.source.intraday(symbol, self.page_size, before_s)
            converted = trades_from_rows(symbol, rows, received)
            self._quarantine(converted.quarantined)
            fresh = [t for t in converted.trades if t.trade_id not in collected]
            collected.update((t.trade_id, t) for t in fresh)
            if len(rows) < self.page_size or not fresh:
                break
            oldest_ms = min(t.event_time_ms for t in converted.trades) if converted.trades else None
            if oldest_ms is None or oldest_ms <= mark.time_ms:
                break
            before_s = oldest_ms // 1000  # at-or-before: overlap is removed by trade id
        else:
            log.warning(
                "%s: more than %d pages of new trades; older ones of this poll are skipped",
                symbol,
                self.max_pages,
            )
        return list(collected.values())

    def _quarantine(self, records: list[QuarantinedInput]) -> None:
        """Each bad row once per process: the vendor serves it again whenever its page is read."""
        for record in records:
            if record.raw in self._quarantined_rows:
                continue
            self._quarantined_rows[record.raw] = None
            while len(self._quarantined_rows) > QUARANTINED_ROWS_REMEMBERED:
                del self._quarantined_rows[next(iter(self._quarantined_rows))]
            self.sink.publish(self.topics.quarantine, record, self.stop_event.is_set)
            log.warning("quarantined a vnstock row: %s", record.reason)
            self.counters.quarantined += 1

    def poll_symbol(self, symbol: str, result: PollResult, include_trades: bool = True) -> None:
        now = self.clock_ms()
        if include_trades:
            trades, trade_mark = new_trades(self._fetch_trades(symbol), self.marks.trade_mark(symbol))
            for trade in trades:
                self.sink.publish(self.topics.trades, trade, self.stop_event.is_set)
            if trades:
                self.counters.source_lag_ms = now - trades[-1].event_time_ms
                self.counters.last_message_ms = self.counters.last_trade_ms = now
            result.trades += len(trades)
            self._pending_trade_marks[symbol] = trade_mark
        today = local_date(now)
        for interval in self.intervals:
            last = self.marks.bar_mark(symbol, interval)
            start = local_date(last) if last >= 0 else today - timedelta(days=self.first_poll_days)
            self._publish_bars(symbol, interval, start, today, last, now, result)

    def _publish_bars(
        self,
        symbol: str,
        interval: BarInterval,
        start: date,
        end: date,
        last_ms: int,
        now: int,
        result: PollResult,
    ) -> None:
        converted = bars_from_rows(symbol, interval, self.source.bars(symbol, interval, start, end), now)
        self._quarantine(converted.quarantined)
        # vnstock sizes its request by a bar count, so the answer can reach before ``start``.
        in_range = [b for b in converted.bars if start <= local_date(b.bar_start_ms) <= end]
        bars = new_final_bars(in_range, last_ms, now)
        for vendor_bar in bars:
            self.sink.publish(self.topics.vendor_bars, vendor_bar, self.stop_event.is_set)
        if bars:
            key = HighWaterMarks.bar_key(symbol, interval)
            self._pending_bar_marks[key] = max(bars[-1].bar_start_ms, self._pending_bar_marks.get(key, -1))
        result.bars[interval.value] = result.bars.get(interval.value, 0) + len(bars)

    def poll_once(self, include_trades: bool = True) -> PollResult:
        """Poll every symbol once; marks advance only for what Kafka acknowledged.

        A symbol whose call fails is skipped this time (it is polled again next time, from its
        mark) and the others go on. The poll raises, so the loop backs off, when the source refused
        us, or when ``SOURCE_DOWN_AFTER`` symbols in a row failed: the source is down, not a symbol.
        """
        result = PollResult()
        self._pending_trade_marks: dict = {}
        self._pending_bar_marks: dict[str, int] = {}
        failure: SourceUnavailableError | None = None
        in_a_row = 0
        for symbol in self.symbols:
            if self.stop_event.is_set():
                break
            try:
                self.poll_symbol(symbol, result, include_trades)
                in_a_row = 0
            except SourceUnavailableError as exc:
                log.warning("vnstock %s: %s", symbol, exc)
                result.failed_symbols.append(symbol)
                in_a_row += 1
                if exc.refused or source_is_down(in_a_row, len(self.symbols)):
                    failure = exc
                    break
        self._commit_marks()
        result.quarantined = self.counters.quarantined
        if failure is not None:
            raise failure
        if result.failed_symbols:
            log.error("vnstock poll: %d of %d symbols failed and are retried next poll: %s",
                      len(result.failed_symbols), len(self.symbols), ", ".join(result.failed_symbols))
        return result

    def _commit_marks(self) -> None:
        if not (self._pending_trade_marks or self._pending_bar_marks):
            return
        if not self.sink.flush(timeout_seconds=60):
            log.error(
                "Kafka did not acknowledge this poll within 60s; marks not advanced (it will be re-polled)"
            )
            return
        self.marks.trades.update(self._pending_trade_marks)
        self.marks.bars.update(self._pending_bar_marks)
        self.marks.save()

    # --- loops ---------------------------------------------------------------------------------
    def run(self, poll_interval_seconds: float, ignore_market_hours: bool = False) -> None:
        """Poll until stopped; idle outside sessions; back off (with the source's hint) on failures."""
        attempt = 0
        while not self.stop_event.is_set():
            now = from_epoch_ms(self.clock_ms())
            if not ignore_market_hours and not is_trading_time(now):
                wait = min(seconds_until_open(now), 600.0)
                log.info(
                    "market closed (HOSE/HNX); next session in %.0f min, idling", seconds_until_open(now) / 60
                )
                self.stop_event.wait(max(wait, 1.0))
                continue
            try:
                result = self.poll_once()
                attempt = 0
                log.info("vnstock poll: %d new trades, bars %s", result.trades, result.bars or "{}")
                delay = poll_interval_seconds
            except SourceUnavailableError as exc:
                delay = max(exc.retry_after_seconds or 0.0, self.backoff.delay_seconds(attempt))
                attempt += 1
                self.counters.reconnects += 1
                log.warning("vnstock source unavailable; retry %d in %.0fs", attempt, delay)
            self.progress.maybe_log()
            self.stop_event.wait(delay)
        self.progress.maybe_log(force=True)

    def backfill(self, start: date, end: date) -> PollResult:
        """Load final bars for ``start``..``end`` (Vietnam dates) for every symbol and interval.

        Re-publishes bars already sent (the vendor-bars table upserts on its key); the marks only
        move forward. VCI serves intraday trades for the latest session only, so none are loaded.
        A refusal is waited out; any other failure is retried ``BACKFILL_ATTEMPTS`` times, then
        that symbol and interval is given up (``failed_symbols``) and the rest goes on, unless
        ``SOURCE_DOWN_AFTER`` were given up in a row: the source is down, and this raises.
        """
        result = PollResult()
        self._pending_trade_marks, self._pending_bar_marks = {}, {}
        now = self.clock_ms()
        given_up_in_a_row = 0
        for symbol in self.symbols:
            for interval in self.intervals:
                failure = self._backfill_one(symbol, interval, start, end, now, result)
                if failure is None:
                    given_up_in_a_row = 0
                    continue
                result.failed_symbols.append(f"{symbol} {interval}")
                given_up_in_a_row += 1
                if source_is_down(given_up_in_a_row, len(self.symbols) * len(self.intervals)):
                    self._finish_backfill()
                    raise failure
        self._finish_backfill()
        if result.failed_symbols:
            log.error("backfill %s..%s: given up after %d attempts each (run it again for them): %s",
                      start, end, BACKFILL_ATTEMPTS, ", ".join(result.failed_symbols))
        return result

    def _backfill_one(self, symbol: str, interval: BarInterval, start: date, end: date, now: int,
                      result: PollResult) -> SourceUnavailableError | None:
        """Backfill one symbol and interval; the last failure when it was given up, else None."""
        attempt = 0
        while not self.stop_event.is_set():
            try:
                self._publish_bars(symbol, interval, start, end, -1, now, result)
                return None
            except SourceUnavailableError as exc:
                delay = max(exc.retry_after_seconds or 0.0, self.backoff.delay_seconds(attempt))
                attempt += 1
                if not exc.refused and attempt >= BACKFILL_ATTEMPTS:
                    log.warning("backfill %s %s: %s; given up after %d attempts", symbol, interval, exc, attempt)
                    return exc
                log.warning("backfill %s %s: %s; retry %d in %.0fs", symbol, interval, exc, attempt, delay)
                self.stop_event.wait(delay)
        return None

    def _finish_backfill(self) -> None:
        """Advance the bar marks that moved forward, once Kafka has acknowledged the bars."""
        self._pending_bar_marks = {
            k: v for k, v in self._pending_bar_marks.items() if v > self.marks.bars.get(k, -1)
        }
        self._commit_marks()
        self.sink.flush(timeout_seconds=60)
