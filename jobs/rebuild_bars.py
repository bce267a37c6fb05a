"""Rebuild bars: recompute ``bars_1m`` for whole, closed UTC days from the ``trades`` table, late
trades included, and replace those days' bars in one commit.

The job is wiring; the logic lives in ``lakehouse.bars_rebuild``.

    python -m jobs.rebuild_bars --day 2026-02-25 [--day ...] [--symbol AAPL ...]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from lakehouse.bars_rebuild import open_days, rebuild_days
from lakehouse.job_args import a_symbol, iso_day, job_parser, job_settings
from lakehouse.logs import configure_logging
from lakehouse.spark import build_spark_session, ensure_tables
from lakehouse.tables import BARS_1M, TRADES

JOB_NAME = "rebuild_bars"
log = logging.getLogger(JOB_NAME)


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(JOB_NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--day", type=iso_day, action="append", required=True,
                        help="UTC day to rebuild, YYYY-MM-DD (repeat for several)")
    parser.add_argument("--symbol", type=a_symbol, action="append", default=[],
                        help="only this symbol (repeatable; default all)")
    args = parser.parse_args(argv)
    configure_logging()
    settings = job_settings(parser, args.config)
    still_open = open_days(args.day, datetime.now(UTC), settings.streaming.allowed_lateness_seconds)
    if still_open:
        log.error("not over yet (the streaming bars job still owns them): %s", ", ".join(map(str, still_open)))
        return 2
    spark = build_spark_session(settings, "lakehouse-rebuild-bars")
    try:
        ensure_tables(spark, settings, (TRADES, BARS_1M))
        report = rebuild_days(spark, settings, args.day, args.symbol)
        log.info("rebuilt %s%s: %d bars written, %d replaced", ", ".join(map(str, report.days)),
                 f" for {', '.join(args.symbol)}" if args.symbol else "", report.bars_written, report.bars_replaced)
        if not (report.bars_written or report.bars_replaced):
            log.warning("no eligible trades and no bars%s on %s: nothing was rebuilt (an exchange holiday, or not "
                        "the day, symbol or lakehouse meant)", f" of {', '.join(args.symbol)}" if args.symbol else "",
                        ", ".join(map(str, report.days)))
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
