"""CLI: ``python -m producers.vnstock_feed [--backfill 2025-01-02:2025-01-31] [--ignore-market-hours]``.

Settings: ``[vnstock]`` in conf/lakehouse.toml (symbols, poll_interval_seconds, base_url to point at a
local simulator) and LAKEHOUSE__VNSTOCK__* / LAKEHOUSE__KAFKA__*. High-water marks live in
``<state_dir>/vnstock/high_water_marks.json``. Exit status 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, date, datetime

from lakehouse.job_args import at_least
from lakehouse.logs import configure_logging
from lakehouse.messages import BarInterval
from lakehouse.ops.metrics_http import MetricsPortError, serve_metrics
from lakehouse.settings import SettingsError, load_settings
from producers.kafka_sink import broker_reachable, no_broker_message, open_sink
from producers.lifecycle import on_stop_signals
from producers.metrics import register_producer_metrics
from producers.vnstock_feed.trading_hours import is_trading_time

log = logging.getLogger("producers.vnstock_feed")


def _date_range(text: str) -> tuple[date, date]:
    start, _, end = text.partition(":")
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end or start)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD[:YYYY-MM-DD], got {text!r}") from exc
    if last < first:  # an empty range backfilled nothing and said nothing
        raise argparse.ArgumentTypeError(f"the range ends before it starts: {text!r}")
    return first, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m producers.vnstock_feed",
        description="Poll vnstock (VCI) trades and OHLCV bars into Kafka.",
    )
    parser.add_argument("--symbols", help="comma-separated symbols (default: vnstock.symbols setting)")
    parser.add_argument(
        "--backfill",
        type=_date_range,
        metavar="START[:END]",
        help="load bars for this date range (Vietnam dates), then exit",
    )
    parser.add_argument("--intervals", default="1m,1D", help="bar intervals to publish (default 1m,1D)")
    parser.add_argument(
        "--ignore-market-hours", action="store_true", help="poll even outside HOSE/HNX sessions"
    )
    parser.add_argument(
        "--requests-per-minute",
        type=at_least(1, int),  # 0 or less: no call could ever be made (the pacer raised IndexError)
        default=18,
        help="client-side pace; vnstock's guest quota is 20/min",
    )
    parser.add_argument("--once", action="store_true", help="poll once and exit")
    parser.add_argument(
        "--broker-wait", type=float, default=10.0, help="seconds to wait at start for a Kafka broker to answer"
    )
    args = parser.parse_args(argv)
    configure_logging()
    try:
        settings = load_settings()
        intervals = tuple(BarInterval(i.strip()) for i in args.intervals.split(",") if i.strip())
    except (SettingsError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    try:  # ops hook: Prometheus metrics on 127.0.0.1 (metrics.vnstock_port; 0 = off), before any connection
        serve_metrics(settings.metrics.vnstock_port, "vnstock producer", setting="vnstock_port")
    except MetricsPortError as taken:
        log.error("%s", taken)
        return 2
    bootstrap = settings.kafka.bootstrap_servers
    if not broker_reachable(bootstrap, args.broker_wait):
        log.error("%s", no_broker_message(bootstrap))
        return 2

    # Imported here: importing vnstock takes seconds and must not slow down --help.
    from producers.vnstock_feed.poller import VnstockPoller, VnstockTopics
    from producers.vnstock_feed.source import RequestPacer, SourceUnavailableError, VnstockSource
    from producers.vnstock_feed.watermark import HighWaterMarks

    symbols = (
        [s.strip() for s in args.symbols.split(",") if s.strip()]
        if args.symbols
        else settings.vnstock.symbols
    )
    sink = open_sink(settings, "vnstock")
    if sink is None:
        return 2
    poller = VnstockPoller(
        VnstockSource(settings.vnstock.base_url, RequestPacer(args.requests_per_minute)),
        sink,
        VnstockTopics(
            settings.kafka.trades_topic, settings.kafka.vendor_bars_topic, settings.kafka.quarantine_topic
        ),
        HighWaterMarks(settings.state_dir / "vnstock" / "high_water_marks.json"),
        symbols,
        intervals,
    )
    on_stop_signals("vnstock-producer", poller.request_stop)
    register_producer_metrics("vnstock", sink, poller.counters, in_session=lambda: is_trading_time(datetime.now(UTC)))
    log.info(
        "vnstock producer: %s via %s -> %s",
        ",".join(symbols),
        settings.vnstock.base_url or "VCI",
        settings.kafka.bootstrap_servers,
    )
    try:
        if args.backfill:
            result = poller.backfill(*args.backfill)
            log.info("backfill %s..%s: bars %s", *args.backfill, result.bars)
        elif args.once:
            result = poller.poll_once()
            log.info("poll: %d trades, bars %s", result.trades, result.bars)
        else:
            poller.run(settings.vnstock.poll_interval_seconds, ignore_market_hours=args.ignore_market_hours)
            result = None
        if result is not None and result.failed_symbols:  # named in the ERROR line the poller logged
            return 1 if sink.close() else 3
    except SourceUnavailableError as unavailable:  # a single run has no next poll to retry in
        log.error("vnstock source %s unavailable, nothing more polled (what Kafka acknowledged is kept): %s",
                  settings.vnstock.base_url or "VCI", unavailable)
        sink.close()
        return 1
    return 0 if sink.close() else 3


if __name__ == "__main__":
    sys.exit(main())
