"""CLI: ``python -m producers.finnhub [--symbols AAPL,MSFT] [--url ws://127.0.0.1:8765]``.

Settings come from conf/lakehouse.toml and LAKEHOUSE__FINNHUB__* / LAKEHOUSE__KAFKA__* (the token:
LAKEHOUSE__FINNHUB__TOKEN). Exit status 0 after a clean stop with every record acknowledged by Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import traceback
from datetime import UTC, datetime
from urllib.parse import urlsplit

from lakehouse.job_args import above_zero, at_least
from lakehouse.logs import configure_logging
from lakehouse.ops.market_calendar import US, in_session
from lakehouse.ops.metrics_http import MetricsPortError, serve_metrics
from lakehouse.settings import SettingsError, load_settings, symbols_problem, websocket_url_problem
from producers.backoff import Backoff
from producers.lifecycle import on_stop_signals

log = logging.getLogger("producers.finnhub")

FINNHUB_HOST = "finnhub.io"  # the real service, which refuses a connection without a token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m producers.finnhub",
        description="Stream Finnhub WebSocket trades into Kafka (trades, feed gaps, quarantine topics).",
    )
    parser.add_argument("--url", help="WebSocket URL (default: finnhub.url setting); ?token= is added")
    parser.add_argument("--symbols", help="comma-separated symbols (default: finnhub.symbols setting)")
    # Finnhub pings every few seconds: a shorter silence is no dead link, and a shorter backoff
    # cap hammers a server that refuses us (--max-backoff 0 made 2,185 handshakes in 4 s).
    parser.add_argument("--stall-timeout", type=at_least(1.0), default=30.0,
                        help="seconds of silence = dead link (>= 1)")
    parser.add_argument("--max-backoff", type=at_least(1.0), default=60.0,
                        help="longest wait between reconnects (s, >= 1)")
    parser.add_argument("--progress-interval", type=above_zero, default=30.0, help="seconds between progress lines")
    parser.add_argument("--broker-wait", type=at_least(0.0), default=10.0,
                        help="seconds to wait at start for a Kafka broker to answer")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    symbols = settings.finnhub.symbols if args.symbols is None else [s.strip() for s in args.symbols.split(",")]
    if problem := symbols_problem([s for s in symbols if s]):
        parser.exit(2, f"{parser.prog}: --symbols: {problem}\n")
    token = settings.finnhub.token.get_secret_value() if settings.finnhub.token else None
    if args.url is not None and (problem := websocket_url_problem(args.url)):
        parser.exit(2, f"{parser.prog}: --url: {problem}\n")
    url = args.url or settings.finnhub.url
    host = urlsplit(url).hostname or ""
    if token is None and (host == FINNHUB_HOST or host.endswith("." + FINNHUB_HOST)):
        log.error("no Finnhub token: set LAKEHOUSE__FINNHUB__TOKEN (an API key from finnhub.io), "
                  "or point --url / LAKEHOUSE__FINNHUB__URL at a local simulator")
        return 2
    # Kafka's, the WebSocket's and Prometheus' clients only now: a start refused above (an option,
    # a symbol, a URL, the token) ends in 0.3 CPU-s without them instead of 0.5.
    from producers.finnhub.client import FinnhubFeed, FinnhubTopics
    from producers.kafka_sink import broker_reachable, no_broker_message, open_sink
    from producers.metrics import register_producer_metrics

    try:  # ops hook: Prometheus metrics on 127.0.0.1 (metrics.finnhub_port; 0 = off), before any connection
        stop_metrics = serve_metrics(settings.metrics.finnhub_port, "finnhub producer", setting="finnhub_port")
    except MetricsPortError as taken:
        log.error("%s", taken)
        return 2
    bootstrap = settings.kafka.bootstrap_servers
    if not broker_reachable(bootstrap, args.broker_wait):
        log.error("%s", no_broker_message(bootstrap))
        return 2
    sink = open_sink(settings, "finnhub")
    if sink is None:
        return 2
    feed = FinnhubFeed(
        url=url,
        token=token,
        symbols=symbols,
        sink=sink,
        topics=FinnhubTopics(
            settings.kafka.trades_topic, settings.kafka.feed_events_topic, settings.kafka.quarantine_topic
        ),
        backoff=Backoff(max_seconds=args.max_backoff),
        stall_timeout_seconds=args.stall_timeout,
        progress_interval_seconds=args.progress_interval,
        mark_file=settings.state_dir / "producers" / "finnhub-last-frame",
        max_frame_bytes=settings.finnhub.max_frame_bytes,
    )
    on_stop_signals("finnhub-producer", feed.request_stop)
    register_producer_metrics("finnhub", sink, feed.counters, in_session=lambda: in_session(US, datetime.now(UTC)))
    log.info(
        "finnhub producer: %s -> %s (%d symbols)",
        feed.safe_url,
        settings.kafka.bootstrap_servers,
        len(symbols),
    )
    try:
        asyncio.run(feed.run())
    except Exception as failure:  # the traceback is redacted: an exception's text may hold the URL with the token
        log.error("finnhub producer failed; flushing what was read\n%s",
                  feed.redact("".join(traceback.format_exception(failure))).rstrip())
        sink.close()
        return 1
    delivered = sink.close()
    if stop_metrics:
        stop_metrics()
    log.info(
        "finnhub producer stopped: %d trades published, %d acknowledged, %d gaps recorded",
        feed.trades_published,
        sink.stats.acked,
        feed.gaps_published,
    )
    return 0 if delivered else 3


if __name__ == "__main__":
    sys.exit(main())
