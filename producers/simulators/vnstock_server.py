"""A local HTTP server that answers like Vietcap's (VCI) trading API, so the real ``vnstock``
library (4.0.8, source VCI) runs unmodified against it. Point vnstock here with
``settings.vnstock.base_url = "http://127.0.0.1:PORT/api/"``.

Endpoints and shapes (read from vnstock/explorer/vci/quote.py and core/utils/transform.py):

``POST /api/chart/OHLCChart/gap-chart``  body ``{"timeFrame": "ONE_MINUTE"|"ONE_HOUR"|"ONE_DAY",
  "symbols": [S], "to": epoch_s, "countBack": N}`` -> ``[{"symbol": S, "t": [epoch_s...],
  "o": [...], "h": [...], "l": [...], "c": [...], "v": [...]}]``: the last N bars starting before
  ``to``. Prices in VND (vnstock divides by 1000); daily bars start at 00:00 Vietnam time.
``POST /api/market-watch/LEData/getAll``  body ``{"symbol": S, "limit": N, "truncTime": epoch_s|null}``
  -> ``[{"id", "truncTime": epoch_s, "matchPrice", "matchVol", "matchType": "b"|"s"}]``: the newest
  N matched trades of the latest trading day (09:00-11:30, 13:00-14:45), newest first; with
  ``truncTime``, only trades at or before it (for paging backwards).

Data is a deterministic function of (symbol, time), served up to the server's clock ``now`` (a
callable, so tests move time forward). Three trades per session minute, at :05, :25 and :45.
Fault switches: :meth:`fail_next` answers the next N requests with an HTTP status (e.g. 429, 500);
:meth:`garble_next` answers them with a body that is not JSON (an HTML page, a cut-off answer);
:meth:`corrupt_trade` overwrites fields of one trade of a symbol in every intraday answer, and
:meth:`corrupt_bar` those of one bar in every chart answer;
:meth:`fail_symbol` answers every request for one symbol with an HTTP status.

CLI: ``python -m producers.simulators.vnstock_server --port 8766``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from producers.vnstock_feed.trading_hours import SESSIONS, VN_TZ, is_trading_day

# Continuous matching ends at 14:30 and the ATC auction at 14:45, so VCI's minute bars stop at 14:45:
# 150 + 105 = 255 bars a day, the count vnstock itself assumes when it sizes ``countBack``.
BAR_SESSIONS = ((time_of_day(9, 0), time_of_day(11, 30)), (time_of_day(13, 0), time_of_day(14, 45)))

log = logging.getLogger(__name__)

CHART_PATH = "/api/chart/OHLCChart/gap-chart"
INTRADAY_PATH = "/api/market-watch/LEData/getAll"
TRADE_SECONDS = (5, 25, 45)


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from the given parts."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _tick(price: float) -> int:
    return max(10, round(price / 10.0) * 10)  # whole tens of VND survive vnstock's /1000, 2 d.p.


def base_price(symbol: str) -> float:
    return 10_000 + _unit(symbol, "base") * 90_000


def bar(symbol: str, interval: str, start_s: int) -> tuple[int, int, int, int, int]:
    """(open, high, low, close, volume) of one bar, in VND."""
    mid = base_price(symbol) * (1 + 0.05 * (_unit(symbol, interval, start_s // 86400) - 0.5))
    open_, close = (
        _tick(mid * (1 + 0.01 * (_unit(symbol, interval, start_s, "o") - 0.5))),
        _tick(mid * (1 + 0.01 * (_unit(symbol, interval, start_s, "c") - 0.5))),
    )
    high = max(open_, close) + _tick(mid * 0.002 * _unit(symbol, interval, start_s, "h"))
    low = max(10, min(open_, close) - _tick(mid * 0.002 * _unit(symbol, interval, start_s, "l")))
    volume = 100 * (1 + int(_unit(symbol, interval, start_s, "v") * 5000))
    return open_, high, low, close, volume


def session_minutes(day: date) -> list[datetime]:
    """Start of every 1-minute bar VCI serves for ``day`` (aware, Vietnam time)."""
    if not is_trading_day(day):
        return []
    minutes = []
    for start, end in BAR_SESSIONS:
        cursor, stop = datetime.combine(day, start, VN_TZ), datetime.combine(day, end, VN_TZ)
        while cursor < stop:
            minutes.append(cursor)
            cursor += timedelta(minutes=1)
    return minutes


def _bar_starts(interval: str, before_s: int, count: int) -> list[int]:
    """The last ``count`` bar starts (epoch s) strictly before ``before_s``, oldest first."""
    starts: list[int] = []
    day = datetime.fromtimestamp(before_s, UTC).astimezone(VN_TZ).date()
    for _ in range(count + 3660):  # walk back at most ~10 years of days
        if len(starts) >= count:
            break
        if is_trading_day(day):
            if interval == "ONE_DAY":
                candidates = [int(datetime.combine(day, datetime.min.time(), VN_TZ).timestamp())]
            elif interval == "ONE_HOUR":
                candidates = [int(m.timestamp()) for m in session_minutes(day) if m.minute == 0]
            else:
                candidates = [int(m.timestamp()) for m in session_minutes(day)]
            starts.extend(reversed([s for s in candidates if s < before_s][-(count - len(starts)) :]))
        day -= timedelta(days=1)
    return sorted(starts)


def trades_of_day(symbol: str, day: date, until_s: int) -> list[dict[str, Any]]:
    """Matched trades of ``day`` up to ``until_s`` (epoch s), oldest first, in VCI's shape."""
    trades = []
    for index, minute in enumerate(session_minutes(day)):
        for k, second in enumerate(TRADE_SECONDS):
            at = int(minute.timestamp()) + second
            if at > until_s:
                return trades
            _open, high, low, *_ = bar(symbol, "ONE_MINUTE", int(minute.timestamp()))
            price = _tick(low + (high - low) * _unit(symbol, at, "p"))
            trades.append(
                {
                    "id": f"{day:%Y%m%d}{index:03d}{k}",
                    "symbol": symbol,
                    "truncTime": at,
                    "matchPrice": price,
                    "matchVol": 100 * (1 + int(_unit(symbol, at, "v") * 50)),
                    "matchType": "b" if _unit(symbol, at, "side") < 0.5 else "s",
                }
            )
    return trades


def latest_trading_day(now_s: float) -> date:
    day = datetime.fromtimestamp(now_s, UTC).astimezone(VN_TZ).date()
    while not is_trading_day(day) or datetime.fromtimestamp(now_s, UTC) < datetime.combine(
        day, SESSIONS[0][0], VN_TZ
    ):
        day -= timedelta(days=1)
    return day


class VnstockSimulator:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, clock: Callable[[], float] = time.time
    ) -> None:
        self.clock = clock  # epoch seconds; tests replace it to move the market forward
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._failures: list[int] = []
        self._garbled: list[bytes] = []
        self._failing_symbols: dict[str, int] = {}
        self._corrupt_trades: dict[tuple[str, str], dict[str, Any]] = {}
        self._corrupt_bars: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[0], self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What ``settings.vnstock.base_url`` should be (vnstock appends the endpoint path)."""
        return f"http://{self.host}:{self.port}/api/"

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def garble_next(self, count: int, body: bytes = b"<html><body>502 Bad Gateway</body></html>") -> None:
        """The next ``count`` requests get HTTP 200 with ``body``, which is not JSON."""
        with self._lock:
            self._garbled.extend([body] * count)

    def corrupt_trade(self, symbol: str, trade_id: str, **fields: Any) -> None:
        """From now on, intraday answers for ``symbol`` carry trade ``trade_id`` with ``fields``
        overwritten (``truncTime=None``, ``matchPrice="abc"``...): a bad row the vendor keeps serving."""
        with self._lock:
            self._corrupt_trades[(symbol, trade_id)] = fields

    def corrupt_bar(self, symbol: str, time_frame: str, start_s: int, **fields: Any) -> None:
        """From now on, chart answers for ``symbol`` at ``time_frame`` ("ONE_MINUTE"...) carry the
        bar starting at ``start_s`` with ``fields`` overwritten (``o="n/a"``, ``t="soon"``...)."""
        with self._lock:
            self._corrupt_bars[(symbol, time_frame, start_s)] = fields

    def fail_symbol(self, symbol: str, status: int = 500) -> None:
        """From now on, every request for ``symbol`` gets ``status``."""
        with self._lock:
            self._failing_symbols[symbol] = status

    def garbled_answer(self) -> bytes | None:
        with self._lock:
            return self._garbled.pop(0) if self._garbled else None

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((path, body))
            if self._failures:
                return self._failures.pop(0), {"message": "simulated failure"}
            corrupt = dict(self._corrupt_trades)
            corrupt_bars = dict(self._corrupt_bars)
            asked = str(body.get("symbol") or (body.get("symbols") or [""])[0])
            if asked in self._failing_symbols:
                return self._failing_symbols[asked], {"message": f"simulated failure for {asked}"}
        now_s = self.clock()
        if path == CHART_PATH:
            symbol = str(body["symbols"][0])
            interval = str(body.get("timeFrame", "ONE_DAY"))
            before = min(int(body.get("to") or now_s), int(now_s) + 1)
            starts = _bar_starts(interval, before, max(0, min(int(body.get("countBack", 100)), 50_000)))
            rows = [
                {**dict(zip("ohlcv", bar(symbol, interval, s), strict=True)), "t": str(s),
                 **corrupt_bars.get((symbol, interval, s), {})}
                for s in starts
            ]
            return 200, [
                {
                    "symbol": symbol,
                    **{field: [row[field] for row in rows] for field in "tohlcv"},
                    "accumulatedVolume": [],
                    "accumulatedValue": [],
                    "minBatchTruncTime": None,
                }
            ]
        if path == INTRADAY_PATH:
            symbol = str(body["symbol"])
            until = int(now_s)
            if body.get("truncTime") not in (None, ""):
                until = min(until, int(float(body["truncTime"])))
            trades = [
                {**trade, **corrupt.get((symbol, trade["id"]), {})}
                for trade in trades_of_day(symbol, latest_trading_day(now_s), until)
            ]
            limit = max(1, int(body.get("limit") or 100))
            return 200, list(reversed(trades))[:limit]
        return 404, {"message": f"no such endpoint {path}"}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = self.rfile.read(length)
                garbled = simulator.garbled_answer()
                try:
                    body = json.loads(request or b"{}")
                    status, payload = simulator.answer(self.path.split("?")[0], body)
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    status, payload = 400, {"message": f"bad request: {exc}"}
                data = json.dumps(payload).encode() if garbled is None else garbled
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("vnstock simulator: " + format, *args)

        return Handler

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def start_in_thread(self) -> VnstockSimulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="vnstock-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m producers.simulators.vnstock_server",
        description="Serve VCI-shaped market data locally for vnstock.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument(
        "--now", help="freeze the market clock at this ISO time (e.g. 2025-06-02T14:00+07:00)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    frozen = datetime.fromisoformat(args.now).timestamp() if args.now else None
    simulator = VnstockSimulator(args.host, args.port, clock=(lambda: frozen) if frozen else time.time)
    log.info("vnstock (VCI) simulator on %s", simulator.base_url)
    with contextlib.suppress(KeyboardInterrupt):
        simulator.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
