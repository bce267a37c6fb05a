"""The real ``vnstock`` library (source VCI) behind a small interface that speaks plain rows.

Why an adapter: vnstock returns pandas frames with Vietnam-local times and signals trouble through
several exception types (and, for its client-side quota, ``SystemExit``); the poller wants UTC
epoch-ms rows and three outcomes: rows, "no data", or "back off for N seconds".

Base URL: VCI's endpoint root is a module constant (``vnstock/explorer/vci/const.py``
``_TRADING_URL``) copied into each ``Quote`` as ``base_url``; setting that instance attribute points
one client at ``settings.vnstock.base_url`` without patching the library.

vnstock's client-side quota for an anonymous (guest) user is 20 requests/minute per process;
exceeding it makes vnai call ``sys.exit``. :class:`RequestPacer` keeps us under it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import date
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

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


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


def _epoch_ms(times: pd.Series) -> list[int]:
    """vnstock times are Vietnam wall-clock (naive) or aware; either way -> UTC epoch ms."""
    stamps = pd.to_datetime(times)
    if stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize(VN_TZ)
    return [int(v) for v in stamps.dt.tz_convert("UTC").astype("int64") // 1_000_000]


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

    def _call(self, what: str, call: Callable[[], pd.DataFrame]) -> pd.DataFrame | None:
        if not self.pacer.acquire():
            raise SourceUnavailableError("stopping")
        try:
            return call()
        except DataSourceBlockedError as exc:
            wait = getattr(exc, "remaining", None) or getattr(exc, "cooldown", None) or exc.retry_after
            raise SourceUnavailableError(f"{what}: source refused ({type(exc).__name__})", wait) from exc
        except SystemExit as exc:  # vnai's client-side quota exits the process; we refuse to
            raise SourceUnavailableError(f"{what}: vnstock quota exhausted", 60.0) from exc
        except ValueError as exc:
            if "Không tìm thấy dữ liệu" in str(exc):  # vnstock's "no data found"
                return None
            raise SourceUnavailableError(f"{what}: {exc}") from exc
        except (ConnectionError, VnstockError, OSError, KeyError) as exc:
            raise SourceUnavailableError(f"{what}: {type(exc).__name__}: {exc}") from exc

    def intraday(self, symbol: str, page_size: int, before_s: int | None = None) -> list[dict[str, Any]]:
        """The newest ``page_size`` matched trades of the latest session (at or before ``before_s``)."""
        frame = self._call(
            f"intraday {symbol}",
            lambda: self._quote(symbol).intraday(page_size=page_size, last_time=before_s, show_log=False),
        )
        return _records(frame) if frame is not None else []

    def bars(self, symbol: str, interval: BarInterval, start: date, end: date) -> list[dict[str, Any]]:
        """OHLCV bars from ``start`` to ``end`` (Vietnam dates, inclusive)."""
        frame = self._call(
            f"{interval} bars {symbol}",
            lambda: self._quote(symbol).history(
                start=start.isoformat(), end=end.isoformat(), interval=interval.value
            ),
        )
        return _records(frame) if frame is not None else []
