"""The Finnhub WebSocket loop: connect, subscribe, publish trades, reconnect with backoff, record gaps.

Connection life:
1. connect to ``<url>?token=…`` (the token is never logged: every logged URL goes through
   :func:`redact_url`), send ``{"type":"subscribe","symbol":S}`` for every configured symbol;
2. read frames; after a re-connect, the first trade frame closes the open ``gap`` FeedEvent (from
   the last frame before the drop to that frame: trades in that span may be missing, and a consumer
   can see it; a handshake alone proves nothing, the subscription may not have taken effect);
3. trades go to the trades topic, bad frames/items to the quarantine topic; a silence
   longer than ``stall_timeout_seconds`` (Finnhub pings every few seconds even when quiet) counts
   as a dead connection;
4. on any drop: back off exponentially with jitter, and go to 1. A frame larger than
   ``max_frame_bytes`` (``finnhub.max_frame_bytes``) makes the client close the connection (close
   code 1009); the frame and what followed it on that connection are lost, so it is said in an ERROR
   line naming the setting and recorded as a gap like any drop. A handshake refused with HTTP 401
   or 403 (a bad or revoked token) is said once in an ERROR line naming the token setting, and
   retried like any drop: a restart would not bring a new token, and a process that stays up keeps
   its backoff and its metrics (the feed-stalled alert fires), where exiting under a supervisor
   that restarts it would hammer Finnhub.

Stopping (``stop`` event, set by SIGTERM/SIGINT) closes the socket; the caller then flushes the sink.
With a ``mark_file`` the time of the last frame (or the start of a gap still open) outlives the
process, and the next run's first trade frame closes a gap from it: a restart, a deploy or a crash
left no trace in ``feed_events`` before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI, PayloadTooBig
from websockets.frames import CloseCode

from lakehouse.messages import FeedEvent, FeedEventKind, Source
from lakehouse.settings import FINNHUB_MAX_FRAME_BYTES
from lakehouse.times import now_ms
from producers.backoff import Backoff
from producers.finnhub.parser import FrameKind, newest_event_ms, parse_frame
from producers.kafka_sink import KafkaSink, SinkClosedError
from producers.progress import FeedCounters, ProgressLog
from producers.quarantine import QuarantinedInput

log = logging.getLogger(__name__)


def url_with_token(url: str, token: str | None) -> str:
    if not token:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def redact_url(url: str) -> str:
    """The URL with any token value replaced, safe for logs and error messages."""
    return re.sub(r"(?i)(token=)[^&#\s]*", r"\1***", url)


class QuarantineWarnings:
    """At most one WARNING per interval about quarantined input, with the count and one example
    (a symbol where an item names one): a line per bad item wrote 2,460 lines in 5 s at 500 bad
    trades/s, and none said which symbol."""

    def __init__(self, interval_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_seconds, self._clock = interval_seconds, clock
        self._count, self._since = 0, clock()
        self._symbol: str | None = None
        self._reason: str | None = None
        self._next_line = self._since  # the first bad input is reported at once

    def add(self, records: list[QuarantinedInput]) -> None:
        for record in records:
            self._count += 1
            symbol = _symbol_of(record) if self._symbol is None else None
            if self._reason is None or symbol is not None:
                self._symbol, self._reason = symbol, record.reason[:300]
        self.maybe_log()

    def maybe_log(self, force: bool = False) -> None:
        now = self._clock()
        if not self._count or (now < self._next_line and not force):
            return
        example = f"symbol {self._symbol!r}: " if self._symbol is not None else ""
        log.warning("quarantined %d finnhub frames/items in the last %.0fs, e.g. %s%s",
                    self._count, max(now - self._since, 0.0), example, self._reason)
        self._count, self._symbol, self._reason = 0, None, None
        self._since, self._next_line = now, now + self.interval_seconds


def _symbol_of(record: QuarantinedInput) -> str | None:
    """The ``s`` of a quarantined trade item, if it has one."""
    try:
        item = json.loads(record.raw)
    except (ValueError, RecursionError):
        return None
    symbol = item.get("s") if isinstance(item, dict) else None
    return symbol[:40] if isinstance(symbol, str) else None


def refused_frame_bytes(closed: ConnectionClosed) -> int | None:
    """The size of the frame the client refused as too big, if that is why the connection closed;
    0 when unknown (a compressed frame is refused part way through inflating it)."""
    if closed.sent is None or closed.sent.code != CloseCode.MESSAGE_TOO_BIG:
        return None
    cause = closed.__cause__
    if not isinstance(cause, PayloadTooBig) or cause.size is None:
        return 0
    return cause.size + (cause.current_size or 0)  # a fragmented message: the fragments read before it


@dataclass(frozen=True)
class FinnhubTopics:
    trades: str
    feed_events: str
    quarantine: str


class LastFrameMark:
    """The feed's last frame time (epoch ms) in a file, written at most once a second while trades
    flow and at once when a gap opens or the feed stops: a crash loses at most a second of it, so a
    gap from it errs on the long side."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self._clock, self._written_at = path, clock, float("-inf")

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def write(self, epoch_ms: int, force: bool = False) -> None:
        if not force and self._clock() - self._written_at < 1.0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(str(epoch_ms))
        partial.replace(self.path)
        self._written_at = self._clock()


NOT_RUNNING = "producer not running (stopped, restarted or crashed)"


class FinnhubFeed:
    def __init__(
        self,
        url: str,
        token: str | None,
        symbols: list[str],
        sink: KafkaSink,
        topics: FinnhubTopics,
        backoff: Backoff | None = None,
        stall_timeout_seconds: float = 30.0,
        progress_interval_seconds: float = 30.0,
        clock_ms: Callable[[], int] = now_ms,
        rng: random.Random | None = None,
        mark_file: Path | None = None,
        max_frame_bytes: int = FINNHUB_MAX_FRAME_BYTES,
    ) -> None:
        self._url = url_with_token(url, token)
        self.max_frame_bytes = max_frame_bytes
        self._token = token
        self.symbols = symbols
        self.sink = sink
        self.topics = topics
        self.backoff = backoff or Backoff()
        self.stall_timeout_seconds = stall_timeout_seconds
        self.clock_ms = clock_ms
        self.rng = rng or random.Random()
        self.counters = FeedCounters()
        self.quarantine_warnings = QuarantineWarnings()
        self.progress = ProgressLog("finnhub", sink.stats, self.counters, progress_interval_seconds)
        self.trades_published = 0
        self.gaps_published = 0
        self._stop = asyncio.Event()
        self._stopping = threading.Event()  # readable from a blocked publish(), settable from a signal
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mark = LastFrameMark(mark_file) if mark_file is not None else None

    @property
    def safe_url(self) -> str:
        return redact_url(self._url)

    def request_stop(self) -> None:
        """Stop reading; safe to call from a signal handler or another thread."""
        self._stopping.set()
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)

    def redact(self, text: str) -> str:
        """``text`` with the token masked wherever it appears, safe to log."""
        text = redact_url(text)
        return text.replace(self._token, "***") if self._token else text

    async def run(self) -> None:
        """Run until :meth:`request_stop`; never raises for network trouble (it retries)."""
        self._loop = asyncio.get_running_loop()
        if self._stopping.is_set():
            return
        attempt = 0
        if self._mark is not None and (since := self._mark.read()) is not None:
            self._gap = (since, NOT_RUNNING)  # the time between runs, closed by the first trade
        progress_task = asyncio.create_task(self._log_progress())
        try:
            while not self._stop.is_set():
                reason = ""
                try:
                    async with connect(
                        self._url,
                        open_timeout=10,
                        close_timeout=2,
                        max_size=self.max_frame_bytes,
                        ping_interval=20,
                        ping_timeout=20,
                    ) as socket:
                        log.info(
                            "connected to %s; subscribing to %d symbols", self.safe_url, len(self.symbols)
                        )
                        for symbol in self.symbols:
                            await socket.send(json.dumps({"type": "subscribe", "symbol": symbol}))
                        worked, reason = await self._read(socket)
                        if worked:
                            attempt = 0  # the next drop is a new outage: wait the first step again
                            self._token_rejected = False
                except InvalidStatus as exc:
                    reason = self.redact(f"{type(exc).__name__}: {exc}")[:300]
                    self._say_if_token_rejected(exc.response.status_code)
                except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
                    reason = self.redact(f"{type(exc).__name__}: {exc}")[:300]
                except SinkClosedError as exc:  # stop requested while Kafka's buffer was full
                    log.error("stopping while Kafka is not taking records: %s", exc)
                    break
                except InvalidURI as exc:  # configuration error: retrying cannot help
                    # from None: the chained InvalidURI's text holds the URL with the token
                    raise ValueError(f"invalid Finnhub URL: {self.redact(str(exc))}") from None
                if self._stop.is_set():
                    break
                last_reason = reason or "disconnected"
                self._open_gap(last_reason)
                delay = self.backoff.delay_seconds(attempt, self.rng)
                attempt += 1
                self.counters.reconnects += 1
                log.warning(
                    "finnhub connection lost (%s); reconnect %d in %.1fs", last_reason, attempt, delay
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
        finally:
            progress_task.cancel()
            mark = self._gap[0] if self._gap else self._last_frame_ms
            if self._mark is not None and mark is not None:
                self._mark.write(mark, force=True)
            self.quarantine_warnings.maybe_log(force=True)
            self.progress.maybe_log(force=True)

    _last_frame_ms: int | None = None
    _gap: tuple[int, str] | None = None  # (start_ms, reason) of the gap no trade has closed yet
    _token_rejected = False  # said since the last connection that worked

    def _say_if_token_rejected(self, status: int) -> None:
        """One ERROR line for a refused token: the WARNING per attempt does not say what to fix."""
        if status in (401, 403) and not self._token_rejected:
            self._token_rejected = True
            log.error("Finnhub rejected the token (HTTP %d): check finnhub.token / LAKEHOUSE__FINNHUB__TOKEN; "
                      "retrying with backoff", status)

    def _open_gap(self, reason: str) -> None:
        """Start a gap at the last frame before this drop, or keep the open one (a connection that
        delivered no trade did not end it) with the newest reason."""
        start_ms = self._gap[0] if self._gap else self._last_frame_ms or self.clock_ms()
        self._gap = (start_ms, reason)
        if self._mark is not None:
            self._mark.write(start_ms, force=True)

    async def _read(self, socket: ClientConnection) -> tuple[bool, str]:
        """Read frames until the socket closes, stalls, or stop is requested: whether the
        connection worked (a trade or ping came, not only errors), and why the reading ended
        ("" for a stop). A close by the server ends the reading like a stall, so the caller
        still learns that the connection worked and resets its backoff."""
        worked = False
        stop_waiter = asyncio.create_task(self._stop.wait())
        try:
            while not self._stop.is_set():
                receive = asyncio.create_task(socket.recv())
                done, _ = await asyncio.wait(
                    {receive, stop_waiter},
                    timeout=self.stall_timeout_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if receive not in done:
                    receive.cancel()
                    await socket.close()
                    if self._stop.is_set():
                        return worked, ""
                    stalled = f"stalled: no frame for {self.stall_timeout_seconds:.0f}s"
                    log.warning("%s; closing the connection", stalled)
                    return worked, stalled
                try:
                    raw = receive.result()
                except ConnectionClosed as closed:
                    if (size := refused_frame_bytes(closed)) is not None:
                        return worked, self._say_frame_refused(size)
                    return worked, self.redact(f"{type(closed).__name__}: {closed}")[:300]
                worked = self._handle(raw) in ("trade", "ping") or worked
            return worked, ""
        finally:
            stop_waiter.cancel()

    def _say_frame_refused(self, size: int) -> str:
        """One ERROR line for a frame over the limit (the drop's WARNING does not say what to raise);
        the gap's reason."""
        refused = (f"a frame of {size} bytes, larger than" if size else "a frame larger than") + (
            f" finnhub.max_frame_bytes ({self.max_frame_bytes} bytes), was refused")
        log.error("%s: the connection closed and reconnects, and that frame's trades are missing (a feed gap is "
                  "recorded); raise finnhub.max_frame_bytes / LAKEHOUSE__FINNHUB__MAX_FRAME_BYTES",
                  f"Finnhub sent {refused}")
        return refused

    def _handle(self, raw: str | bytes) -> FrameKind:
        """Publish one frame's trades and quarantine records; its kind."""
        received = self.clock_ms()
        self._last_frame_ms = received
        self.counters.last_message_ms = received
        frame = parse_frame(raw, received)
        if frame.kind == "trade" and self._gap is not None:
            gap_start_ms, reason = self._gap
            self._publish_gap(gap_start_ms, received, reason)
            self._gap = None
        if frame.trades:
            self.counters.last_trade_ms = received
        if self._mark is not None and self._gap is None:
            self._mark.write(received)
        should_stop = self._stopping.is_set
        for trade in frame.trades:
            self.sink.publish(self.topics.trades, trade, should_stop)
        self.trades_published += len(frame.trades)
        for record in frame.quarantined:
            self.sink.publish(self.topics.quarantine, record, should_stop)
        self.quarantine_warnings.add(frame.quarantined)
        self.counters.quarantined += len(frame.quarantined)
        newest = newest_event_ms(frame.trades)
        if newest is not None:
            self.counters.source_lag_ms = received - newest
        if frame.kind == "error":
            log.error("finnhub error frame: %s", self.redact(frame.error_message or ""))
        return frame.kind

    def _publish_gap(self, start_ms: int, end_ms: int, reason: str) -> None:
        event = FeedEvent(
            source=Source.FINNHUB,
            kind=FeedEventKind.GAP,
            start_ms=start_ms,
            end_ms=max(start_ms, end_ms),
            reason=reason[:500],
        )
        self.sink.publish(self.topics.feed_events, event, self._stopping.is_set)
        self.gaps_published += 1
        self.counters.gaps += 1
        log.warning("recorded a feed gap of %.1fs (%s)", (end_ms - start_ms) / 1000, reason)

    async def _log_progress(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.quarantine_warnings.maybe_log()
            self.progress.maybe_log()


__all__ = ["FinnhubFeed", "FinnhubTopics", "SinkClosedError", "redact_url", "url_with_token"]
