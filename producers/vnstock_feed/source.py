"""The real ``vnstock`` library (source VCI) behind a small interface that speaks plain rows.

Why an adapter: vnstock returns pandas frames with Vietnam-local times and signals trouble through
several exception types (and, for its client-side quota, ``SystemExit``); the poller wants UTC
epoch-ms rows and three outcomes: rows, "no data", or "back off for N seconds".

Base URL: VCI's endpoint root is a module constant (``vnstock/explorer/vci/const.py``
``_TRADING_URL``) copied into each ``Quote`` as ``base_url``; setting that instance attribute points
one client at ``settings.vnstock.base_url`` without patching the library.

vnstock's client-side quota for an anonymous (guest) user is 20 requests/minute per process;
exceeding it makes vnai call ``sys.exit``. :class:`RequestPacer` keeps us under it.

One bad row must not cost a page: vnstock converts an intraday page as one frame, so a single
trade without a time (or a time in the year 318857) fails the whole page. Such a page is fetched
again through vnstock's own request client and read row by row (:func:`intraday_rows`); the bad
row then reaches the poller as it came, and the poller quarantines it. Bars likewise: one bar
whose price is not a number fails vnstock's whole chart page, and so every poll of that symbol's
bars; such a page is read bar by bar (:func:`chart_rows`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from lakehouse.messages import BarInterval
from producers.vnstock_feed.trading_hours import VN_TZ

# vnstock's helper library (vnai) sends usage telemetry and, on import, writes "agent onboarding"
# files (AGENTS.md in the working directory, CLAUDE.md/GEMINI.md in the home directory) unless
# told not to. Set before the import; these are the only environment writes in the producers.
for _switch, _value in (
    ("VNSTOCK_TELEMETRY", "off"),
    ("VNSTOCK_DISABLE_AGENT_SETUP", "1"),
    ("VNSTOCK_AGENT_TARGETS", "none"),
    ("VNSTOCK_DISABLE_GLOBAL_AGENT", "1"),
):
    os.environ.setdefault(_switch, _value)

from vnstock.core.exceptions import DataSourceBlockedError, VnstockError  # noqa: E402
from vnstock.core.utils.client import send_request  # noqa: E402
from vnstock.explorer.vci.const import _INTERVAL_MAP, _INTRADAY_URL  # noqa: E402
from vnstock.explorer.vci.quote import Quote  # noqa: E402

log = logging.getLogger(__name__)


def _route_vnstock_logs() -> None:
    """vnstock gives each of its modules' loggers a console handler of its own at DEBUG (when the
    module is imported), so with ours every record printed twice in two formats. Its loggers go
    through ours instead, warnings and up. Its client logs a failed request as an ERROR and then
    raises it; the producer reports that error itself, once, with what it means for the poll."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.split(".")[0] == "vnstock" and isinstance(logger, logging.Logger) and logger.handlers:
            logger.handlers.clear()
            logger.setLevel(logging.NOTSET)
    logging.getLogger("vnstock").setLevel(logging.WARNING)
    logging.getLogger("vnstock.core.utils.client").setLevel(logging.CRITICAL)


_route_vnstock_logs()

GUEST_REQUESTS_PER_MINUTE = 20


class SourceUnavailableError(RuntimeError):
    """The source failed or refused; retry after ``retry_after_seconds`` (None = use own backoff)."""

    def __init__(
        self, message: str, retry_after_seconds: float | None = None, refused: bool = False, unreadable: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        # The source answered, but vnstock could not convert its answer (one bad row fails a page):
        # the page is worth reading again row by row.
        self.unreadable = unreadable
        # The source refused us (rate limit, quota) or we are stopping: the other symbols' calls
        # would fail the same way, so the poll ends here. Otherwise only this call failed.
        self.refused = refused or retry_after_seconds is not None


class RequestPacer:
    """At most ``per_minute`` calls in any 60 s window: waits (interruptibly) rather than be cut off."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._wait = wait or (lambda seconds: threading.Event().wait(seconds))
        self._calls: deque[float] = deque()

    def acquire(self) -> bool:
        """Block until a call is allowed; False if the wait was interrupted (stop requested)."""
        while True:
            now = self._clock()
            while self._calls and now - self._calls[0] >= 60.0:
                self._calls.popleft()
            if len(self._calls) < self.per_minute:
                self._calls.append(now)
                return True
            if self._wait(60.0 - (now - self._calls[0]) + 0.01):
                return False


EPOCH = pd.Timestamp(0, tz="UTC")


def _epoch_ms(times: pd.Series) -> list[int]:
    """vnstock times are Vietnam wall-clock (naive) or aware; either way -> UTC epoch ms."""
    stamps = pd.to_datetime(times)
    if stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize(VN_TZ)
    # By the timedelta, not the raw int64: that is in the frame's unit (ns today, but pandas also
    # gives s, ms or us resolutions), and nanoseconds // 1e6 on microseconds stamps 1970.
    return [int(v) for v in (stamps.dt.tz_convert("UTC") - EPOCH) // pd.Timedelta(milliseconds=1)]


# VCI's intraday fields -> the poller's row keys; VCI prices are VND, vnstock's thousands of VND.
VCI_MATCH_TYPES = {"b": "Buy", "s": "Sell"}
VCI_PRICE_SCALE = 1000.0


def intraday_rows(answer: object) -> list[dict[str, Any]]:
    """VCI's raw intraday answer -> the rows ``intraday`` returns, one at a time and never raising:
    a field that cannot be read stays as it came (under ``raw``), so the poller quarantines that
    row alone. The same units and labels as vnstock's conversion."""
    if isinstance(answer, dict):
        answer = answer.get("data", [])
    if not isinstance(answer, list):
        raise ValueError(f"an intraday answer is a list of trades, not {type(answer).__name__}")
    return [_intraday_row(item) for item in answer]


def _intraday_row(item: object) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"raw": item}
    row: dict[str, Any] = {"raw": item, "id": item.get("id"), "volume": item.get("matchVol")}
    row["match_type"] = VCI_MATCH_TYPES.get(str(item.get("matchType")), item.get("matchType") or "unknown")
    try:
        row["price"] = float(item["matchPrice"]) / VCI_PRICE_SCALE
    except (KeyError, TypeError, ValueError):
        row["price"] = item.get("matchPrice")
    try:
        row["time_ms"] = int(item["truncTime"]) * 1000
    except (KeyError, TypeError, ValueError, OverflowError):
        row["time_ms"] = item.get("truncTime")
    return row


# vnstock asks VCI for this many bars per business day of the range, by VCI's time frame.
_BARS_PER_BUSINESS_DAY = {"ONE_DAY": 1, "ONE_HOUR": 5, "ONE_MINUTE": 255}
_INTERVAL_MINUTES = {"5m": 5, "15m": 15, "30m": 30}  # vnstock builds these from 1-minute bars


def chart_payload(symbol: str, interval: BarInterval, start: date, end: date) -> dict[str, Any]:
    """The gap-chart request vnstock's ``Quote.history`` sends for this range (the same ``to`` and
    ``countBack``, read from vnstock 4.0.8), so the bar-by-bar read asks for the same bars."""
    end_time = datetime.combine(end, datetime.min.time()) + timedelta(days=1)
    frame = _INTERVAL_MAP[interval.value]
    business_days = len(pd.bdate_range(start=datetime.combine(start, datetime.min.time()), end=end_time))
    return {
        "timeFrame": frame,
        "symbols": [symbol],
        "to": int(end_time.timestamp()),  # naive, so the machine's zone: as vnstock does
        "countBack": business_days * _BARS_PER_BUSINESS_DAY[frame] + 1,
    }


def chart_rows(answer: object, interval: BarInterval) -> list[dict[str, Any]]:
    """VCI's raw gap-chart answer -> the rows ``bars`` returns, never raising on a bar: a bar with a
    field that cannot be read carries ``error`` and its bar as it came (under ``raw``), so the
    poller quarantines that bar alone. The same units as vnstock's conversion (prices / 1000,
    rounded to 2 places; a day bar at 00:00 Vietnam time). 5/15/30-minute bars are built from
    1-minute ones as vnstock does; one that holds a bad minute is quarantined whole."""
    if isinstance(answer, dict):
        answer = answer.get("data", [])
    if not isinstance(answer, list):
        raise ValueError(f"a chart answer is a list, not {type(answer).__name__}")
    if not answer:
        return []
    series = answer[0]
    if not isinstance(series, dict):
        raise ValueError(f"a chart answer holds a dict per symbol, not {type(series).__name__}")
    columns = {f: series.get(f) if isinstance(series.get(f), list) else [] for f in "tohlcv"}
    rows = [
        _chart_row({f: values[i] if i < len(values) else None for f, values in columns.items()}, interval)
        for i in range(max(map(len, columns.values())))
    ]
    minutes = _INTERVAL_MINUTES.get(interval.value)
    return _resampled(rows, minutes * 60_000) if minutes else rows


def _chart_row(raw: dict[str, Any], interval: BarInterval) -> dict[str, Any]:
    row: dict[str, Any] = {"raw": raw}
    problems = []
    try:
        at = pd.Timestamp(int(raw["t"]), unit="s", tz="UTC")
        if interval == BarInterval.DAY_1:
            at = pd.Timestamp(at.tz_convert(VN_TZ).date(), tz=VN_TZ)
        row["time_ms"] = int((at - EPOCH) // pd.Timedelta(milliseconds=1))
    except (TypeError, ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        problems.append(f"t {raw['t']!r} is not a time in epoch seconds")
    for field, name in zip("ohlc", ("open", "high", "low", "close"), strict=True):
        try:
            row[name] = round(float(raw[field]) / VCI_PRICE_SCALE, 2)
        except (TypeError, ValueError):
            problems.append(f"{name} {raw[field]!r} is not a number")
    try:
        row["volume"] = float(raw["v"])
    except (TypeError, ValueError):
        problems.append(f"volume {raw['v']!r} is not a number")
    if problems:
        row["error"] = "; ".join(problems)
    return row


def _resampled(minute_rows: list[dict[str, Any]], interval_ms: int) -> list[dict[str, Any]]:
    buckets: dict[int | None, list[dict[str, Any]]] = {}
    for row in minute_rows:
        at = row.get("time_ms")
        buckets.setdefault(None if at is None else at - at % interval_ms, []).append(row)
    out = []
    for start, rows in sorted(buckets.items(), key=lambda item: (item[0] is not None, item[0] or 0)):
        bad = [r for r in rows if "error" in r]
        if start is None or bad:
            reason = bad[0]["error"] if bad else "no time"
            out.append({"raw": [r["raw"] for r in rows], "error": f"a 1-minute bar in it: {reason}"})
            continue
        rows.sort(key=lambda r: r["time_ms"])
        out.append({
            "raw": [r["raw"] for r in rows], "time_ms": start, "open": rows[0]["open"],
            "high": max(r["high"] for r in rows), "low": min(r["low"] for r in rows),
            "close": rows[-1]["close"], "volume": sum(r["volume"] for r in rows),
        })
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if frame is None or frame.empty:
        return []
    rows = frame.drop(columns=["time"]).to_dict("records")
    for row, at_ms in zip(rows, _epoch_ms(frame["time"]), strict=True):
        row["time_ms"] = at_ms
    return rows


class VnstockSource:
    def __init__(self, base_url: str | None, pacer: RequestPacer) -> None:
        self.base_url = base_url
        self.pacer = pacer
        self._quotes: dict[str, Quote] = {}

    def _quote(self, symbol: str) -> Quote:
        if symbol not in self._quotes:
            quote = Quote(symbol, show_log=False)
            if self.base_url:
                quote.base_url = self.base_url if self.base_url.endswith("/") else self.base_url + "/"
            self._quotes[symbol] = quote
        return self._quotes[symbol]

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        if not self.pacer.acquire():
            raise SourceUnavailableError("stopping", refused=True)
        try:
            return call()
        except DataSourceBlockedError as exc:
            wait = getattr(exc, "remaining", None) or getattr(exc, "cooldown", None) or exc.retry_after
            raise SourceUnavailableError(f"{what}: source refused ({type(exc).__name__})", wait, refused=True) from exc
        except SystemExit as exc:  # vnai's client-side quota exits the process; we refuse to
            raise SourceUnavailableError(f"{what}: vnstock quota exhausted", 60.0) from exc
        except ValueError as exc:
            if "Không tìm thấy dữ liệu" in str(exc):  # vnstock's "no data found"
                return None
            raise SourceUnavailableError(f"{what}: {exc}", unreadable=True) from exc
        except (ConnectionError, VnstockError, OSError) as exc:
            raise SourceUnavailableError(f"{what}: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # vnstock converting an answer it did not expect (TypeError, KeyError...)
            raise SourceUnavailableError(f"{what}: {type(exc).__name__}: {exc}", unreadable=True) from exc

    def intraday(self, symbol: str, page_size: int, before_s: int | None = None) -> list[dict[str, Any]]:
        """The newest ``page_size`` matched trades of the latest session (at or before ``before_s``)."""
        what = f"intraday {symbol}"
        try:
            frame = self._call(
                what,
                lambda: self._quote(symbol).intraday(page_size=page_size, last_time=before_s, show_log=False),
            )
        except SourceUnavailableError as exc:
            if not exc.unreadable:
                raise
            log.warning("%s: vnstock could not read the page (%s); reading it row by row", what, exc)
            return self._intraday_row_by_row(symbol, page_size, before_s)
        return _records(frame) if frame is not None else []

    def _intraday_row_by_row(self, symbol: str, page_size: int, before_s: int | None) -> list[dict[str, Any]]:
        quote = self._quote(symbol)
        payload = {"symbol": symbol, "limit": page_size, "truncTime": before_s}
        answer = self._call(
            f"intraday {symbol} (row by row)",
            lambda: send_request(url=f"{quote.base_url}{_INTRADAY_URL}/LEData/getAll", headers=quote.headers,
                                 method="POST", payload=payload, show_log=False),
        )
        try:
            return intraday_rows(answer)
        except ValueError as exc:
            raise SourceUnavailableError(f"intraday {symbol}: {exc}") from exc

    def bars(self, symbol: str, interval: BarInterval, start: date, end: date) -> list[dict[str, Any]]:
        """OHLCV bars from ``start`` to ``end`` (Vietnam dates, inclusive)."""
        what = f"{interval} bars {symbol}"
        try:
            frame = self._call(
                what,
                lambda: self._quote(symbol).history(
                    start=start.isoformat(), end=end.isoformat(), interval=interval.value
                ),
            )
        except SourceUnavailableError as exc:
            if not exc.unreadable:
                raise
            log.warning("%s: vnstock could not read the page (%s); reading it bar by bar", what, exc)
            return self._bars_one_by_one(symbol, interval, start, end)
        return _records(frame) if frame is not None else []

    def _bars_one_by_one(self, symbol: str, interval: BarInterval, start: date, end: date) -> list[dict[str, Any]]:
        quote = self._quote(symbol)
        what = f"{interval} bars {symbol} (bar by bar)"
        answer = self._call(
            what,
            lambda: send_request(url=f"{quote.base_url}chart/OHLCChart/gap-chart", headers=quote.headers,
                                 method="POST", payload=chart_payload(symbol, interval, start, end),
                                 show_log=False),
        )
        try:
            return chart_rows(answer, interval)
        except ValueError as exc:
            raise SourceUnavailableError(f"{what}: {exc}") from exc
