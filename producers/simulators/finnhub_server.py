"""A local WebSocket server that speaks Finnhub's trade protocol, for tests and the demo.

Protocol (as Finnhub's): connect to ``ws://host:port/?token=T``; send
``{"type":"subscribe","symbol":S}`` / ``{"type":"unsubscribe","symbol":S}``; receive
``{"type":"trade","data":[{"s","p","t","v","c"}...]}`` for subscribed symbols only, a
``{"type":"ping"}`` every ``ping_interval_seconds``, and ``{"type":"error","msg":...}`` for a bad
token (then the server closes) or a message it does not understand.

Replay: each symbol has one cursor shared by all connections, advanced only by what was actually
sent. So a client that drops and re-subscribes continues where it left off, and a test can assert
that every trade the server sent reached Kafka exactly once.

Fault switches (attributes, also settable while running): ``drop_after_frames`` closes the TCP
connection without a WebSocket close after that many trade frames (``max_drops`` times);
``malformed_every_frames`` adds a malformed frame after every N trade frames; ``stall_after_frames``
goes silent (no trades, no pings, the TCP link stays up) for ``stall_seconds``;
``refuse_handshake_status`` answers every upgrade with that HTTP status (401: a rejected token);
``pad_frame_after_frames`` pads that trade frame (once) with JSON whitespace to ``pad_frame_to_bytes``,
a frame as large as a busy open's (a client refuses a frame by its length alone).

CLI: ``python -m producers.simulators.finnhub_server --port 8765 --rate 500``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from producers.simulators.trade_stream import DEFAULT_START_MS, TradeItem, generated_trades, recorded_trades

log = logging.getLogger(__name__)

MALFORMED_FRAMES = (
    "{not json",
    json.dumps({"type": "trade", "data": [{"s": "BAD", "p": -1, "t": 1700000000000, "v": 1}]}),
    json.dumps({"type": "trade", "data": "nope"}),
    json.dumps([1, 2, 3]),
    json.dumps({"type": "trade", "data": [{"p": 1.5, "t": 1700000000000, "v": 3}]}),
)


@dataclass
class SymbolStream:
    items: Iterator[TradeItem]
    remaining: int | None  # None = endless
    sent: list[TradeItem] = field(default_factory=list)

    def take(self) -> TradeItem | None:
        if self.remaining == 0:
            return None
        item = next(self.items, None)
        if item is None:
            self.remaining = 0
            return None
        if self.remaining is not None:
            self.remaining -= 1
        self.sent.append(item)
        return item


class FinnhubSimulator:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        rate_per_second: float = 1000.0,
        frame_size: int = 20,
        trades_per_symbol: int | None = None,
        recording: Path | None = None,
        seed: int = 7,
        start_ms: int = DEFAULT_START_MS,
        ping_interval_seconds: float = 5.0,
        keep_sent: bool = True,
        live: bool = False,
    ) -> None:
        self.host, self.port, self.token = host, port, token
        self.rate_per_second, self.frame_size = rate_per_second, frame_size
        self.trades_per_symbol, self.seed, self.start_ms = trades_per_symbol, seed, start_ms
        self.ping_interval_seconds = ping_interval_seconds
        self.keep_sent = keep_sent
        # live: stamp each trade with the wall clock as it is sent (a few hundred ms of jitter, so
        # some arrive out of order), as a real feed during market hours; otherwise replay times.
        self.live = live
        self._recorded = recorded_trades(recording) if recording else None
        self.streams: dict[str, SymbolStream] = {}
        # fault switches
        self.drop_after_frames: int | None = None
        self.max_drops: int | None = None
        self.malformed_every_frames: int | None = None
        self.stall_after_frames: int | None = None
        self.stall_seconds: float = 0.0
        self.max_stalls: int | None = 1
        self.refuse_handshake_status: int | None = None  # e.g. 401: answer the upgrade with this HTTP status
        self.pad_frame_after_frames: int | None = None
        self.pad_frame_to_bytes = 0
        # observations, for tests
        self.connections = 0
        self.subscriptions: list[tuple[int, str]] = []  # (connection number, symbol)
        self.drops = 0
        self.stalls = 0
        self.malformed_sent = 0
        self.frames_sent = 0
        self.refused_handshakes = 0
        self.padded_frames = 0
        # The padded frame's trades and those of every later frame on its connection: what a client
        # that refuses the padded frame (and so discards the rest of that connection) never reads.
        self.sent_from_padded_frame: list[TradeItem] = []
        self._server: Server | None = None
        self._replies: set[asyncio.Future] = set()  # keeps fire-and-forget replies alive until sent
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- data -------------------------------------------------------------------------------
    def _stream(self, symbol: str) -> SymbolStream | None:
        if symbol not in self.streams:
            if self._recorded is not None:
                if symbol not in self._recorded:
                    return None
                self.streams[symbol] = SymbolStream(iter(self._recorded[symbol]), None)
            else:
                self.streams[symbol] = SymbolStream(
                    generated_trades(symbol, self.seed, self.start_ms), self.trades_per_symbol
                )
        return self.streams[symbol]

    def sent_trades(self, symbol: str) -> list[TradeItem]:
        stream = self.streams.get(symbol)
        return list(stream.sent) if stream else []

    def exhausted(self, symbols: list[str]) -> bool:
        return all((s := self.streams.get(sym)) is not None and s.remaining == 0 for sym in symbols)

    def _next_frame(self, subscribed: list[str], start: int) -> list[TradeItem]:
        """Up to ``frame_size`` trades, round-robin over the subscribed symbols."""
        items: list[TradeItem] = []
        idle_rounds = 0
        for symbol in itertools.islice(itertools.cycle(subscribed), start % len(subscribed), None):
            if len(items) >= self.frame_size or idle_rounds >= len(subscribed):
                break
            stream = self._stream(symbol)
            item = stream.take() if stream else None
            if item is None:
                idle_rounds += 1
                continue
            idle_rounds = 0
            items.append(item)
            if not self.keep_sent and stream:
                stream.sent.clear()
        return items

    # --- connection ---------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.refuse_handshake_status is None:
            return None
        self.refused_handshakes += 1
        return connection.respond(self.refuse_handshake_status, "Unauthorized: invalid token\n")

    async def _handle(self, connection: ServerConnection) -> None:
        self.connections += 1
        number = self.connections
        query = parse_qs(urlsplit(connection.request.path if connection.request else "/").query)
        if self.token is not None and query.get("token", [""])[0] != self.token:
            await connection.send(json.dumps({"type": "error", "msg": "Invalid API key"}))
            await connection.close(1008, "invalid token")
            return
        subscribed: list[str] = []
        sender = asyncio.create_task(self._send_loop(connection, subscribed))
        try:
            async for message in connection:
                self._on_client_message(connection, number, subscribed, message)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await sender

    def _on_client_message(
        self, connection: ServerConnection, number: int, subscribed: list[str], message: str | bytes
    ) -> None:
        try:
            request = json.loads(message)
            kind, symbol = request["type"], str(request["symbol"])
        except (ValueError, KeyError, TypeError):
            reply = asyncio.ensure_future(
                connection.send(json.dumps({"type": "error", "msg": "Invalid message"}))
            )
            self._replies.add(reply)
            reply.add_done_callback(self._replies.discard)
            return
        if kind == "subscribe" and symbol not in subscribed:
            subscribed.append(symbol)
            self.subscriptions.append((number, symbol))
        elif kind == "unsubscribe" and symbol in subscribed:
            subscribed.remove(symbol)

    async def _send_loop(self, connection: ServerConnection, subscribed: list[str]) -> None:
        loop = asyncio.get_running_loop()
        frames = 0
        padded_here = False
        rotation = 0
        budget = 0.0
        last_tick = last_ping = loop.time()
        while True:
            await asyncio.sleep(0.01)
            now = loop.time()
            if now - last_ping >= self.ping_interval_seconds:
                await connection.send('{"type":"ping"}')
                last_ping = now
            budget = min(budget + (now - last_tick) * self.rate_per_second, self.frame_size * 50.0)
            last_tick = now
            while subscribed and budget >= 1:
                items = self._next_frame(list(subscribed), rotation)
                rotation += 1
                if not items:
                    budget = 0
                    break
                budget -= len(items)
                if self.live:
                    now_ms = int(time.time() * 1000)
                    items = [{**item, "t": now_ms - (index * 37) % 400} for index, item in enumerate(items)]
                text = json.dumps({"type": "trade", "data": items})  # ASCII: one byte a character
                if self.pad_frame_after_frames and frames + 1 == self.pad_frame_after_frames and not self.padded_frames:
                    text = text[:-1] + " " * (self.pad_frame_to_bytes - len(text)) + "}"
                    self.padded_frames += 1
                    padded_here = True
                if padded_here:
                    self.sent_from_padded_frame.extend(items)
                await connection.send(text)
                frames += 1
                self.frames_sent += 1
                if self.malformed_every_frames and frames % self.malformed_every_frames == 0:
                    await connection.send(MALFORMED_FRAMES[self.malformed_sent % len(MALFORMED_FRAMES)])
                    self.malformed_sent += 1
                if (
                    self.drop_after_frames
                    and frames >= self.drop_after_frames
                    and (self.max_drops is None or self.drops < self.max_drops)
                ):
                    self.drops += 1
                    log.info("simulator: dropping connection after %d frames", frames)
                    connection.transport.close()  # TCP FIN, no WebSocket close frame: an abrupt drop
                    return
                if (
                    self.stall_after_frames
                    and frames == self.stall_after_frames
                    and (self.max_stalls is None or self.stalls < self.max_stalls)
                ):
                    self.stalls += 1
                    log.info("simulator: stalling for %.1fs", self.stall_seconds)
                    await asyncio.sleep(self.stall_seconds)
                    last_tick = last_ping = loop.time()

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self.host, self.port, ping_interval=None, process_request=self._process_request
        )
        self.port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def start_in_thread(self) -> FinnhubSimulator:
        """Run the server on its own event loop thread (for tests); returns once it listens."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="finnhub-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("finnhub simulator did not start")
        return self

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m producers.simulators.finnhub_server",
        description="Serve Finnhub's WebSocket trade protocol locally.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rate", type=float, default=500.0, help="trades per second per connection")
    parser.add_argument("--frame-size", type=int, default=20, help="max trades per frame")
    parser.add_argument("--trades-per-symbol", type=int, default=None, help="stop after N (default endless)")
    parser.add_argument("--recording", type=Path, help="replay this JSONL file instead of generated trades")
    parser.add_argument("--token", help="require this token (default: accept any)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drop-after-frames", type=int, help="drop each connection after N frames")
    parser.add_argument("--malformed-every", type=int, help="send a malformed frame every N frames")
    parser.add_argument("--stall-after-frames", type=int, help="go silent after N frames ...")
    parser.add_argument("--stall-seconds", type=float, default=60.0, help="... for this long")
    parser.add_argument("--live", action="store_true", help="stamp trades with the wall clock as they are sent")
    parser.add_argument("--refuse-handshake-status", type=int, help="answer every upgrade with this HTTP status")
    parser.add_argument("--pad-frame-after-frames", type=int, help="pad trade frame N (once) ...")
    parser.add_argument("--pad-frame-bytes", type=int, default=4 * 2**20 + 1, help="... to this many bytes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    simulator = FinnhubSimulator(
        args.host,
        args.port,
        token=args.token,
        rate_per_second=args.rate,
        frame_size=args.frame_size,
        trades_per_symbol=args.trades_per_symbol,
        recording=args.recording,
        seed=args.seed,
        keep_sent=False,
        live=args.live,
    )
    simulator.drop_after_frames = args.drop_after_frames
    simulator.malformed_every_frames = args.malformed_every
    simulator.stall_after_frames, simulator.stall_seconds = args.stall_after_frames, args.stall_seconds
    simulator.refuse_handshake_status = args.refuse_handshake_status
    simulator.pad_frame_after_frames, simulator.pad_frame_to_bytes = args.pad_frame_after_frames, args.pad_frame_bytes

    async def serve_forever() -> None:
        await simulator.start()
        log.info("finnhub simulator listening on %s", simulator.url)
        await asyncio.Future()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
