"""Maintenance: compact small files, expire old snapshots and remove orphan files of the lakehouse
tables, once or every --interval seconds, while the streaming jobs keep running."""

from __future__ import annotations

import argparse
import logging
import time
from datetime import UTC, datetime, timedelta

from lakehouse.logs import configure_logging
from lakehouse.maintenance import (
    MaintenanceCounters,
    MaintenancePolicy,
    MaintenanceReport,
    failed_steps,
    maintain_every,
    maintain_tables,
)
from lakehouse.ops.batch_runs import maintenance_run
from lakehouse.ops.job_runs import record_success, serve_job_metrics
from lakehouse.settings import load_settings
from lakehouse.shutdown import StopRequest
from lakehouse.spark import build_spark_session
from lakehouse.tables import ALL_TABLES

log = logging.getLogger("maintenance")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.replace("\n", " "))
    parser.add_argument("--tables", default=",".join(t.name for t in ALL_TABLES),
                        help="comma-separated table names (default: all)")
    parser.add_argument("--interval", type=float, default=0, help="repeat every N seconds (default: run once)")
    parser.add_argument("--snapshot-retention-hours", type=float, default=6.0,
                        help="keep the snapshots of these last hours (a stream reading the table may lag this far)")
    parser.add_argument("--max-snapshots", type=int, default=MaintenancePolicy.max_snapshots,
                        help="but never more than this many per table: each is part of the metadata file every "
                        "commit rewrites and every reader parses (default: an hour of commits at a 1 s trigger)")
    parser.add_argument("--orphan-age-hours", type=float, default=24.0,
                        help="only files older than this can be orphans (younger may be in-flight commits)")
    parser.add_argument("--step-attempts", type=int, default=MaintenancePolicy.step_attempts,
                        help="run a step that met a commit conflict this many times in all, with backoff")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    settings = load_settings()
    by_name = {t.name: t for t in ALL_TABLES}
    names = [name.strip() for name in args.tables.split(",") if name.strip()]
    unknown = sorted(set(names) - set(by_name))
    if unknown:
        raise SystemExit(f"unknown tables {unknown}; known: {sorted(by_name)}")
    tables = [by_name[name] for name in names]
    policy = MaintenancePolicy(
        snapshot_retention=timedelta(hours=args.snapshot_retention_hours),
        orphan_age=timedelta(hours=args.orphan_age_hours),
        max_snapshots=args.max_snapshots,
        allowed_lateness=timedelta(seconds=settings.streaming.allowed_lateness_seconds),
        step_attempts=args.step_attempts,
    )
    stop = StopRequest("maintenance").install()  # a stop waits for the table being maintained
    counters = MaintenanceCounters()
    spark = build_spark_session(settings, "maintenance")
    if args.interval:  # ops hook: Prometheus on metrics.maintenance_port (0 = off)
        serve_job_metrics(settings.metrics.maintenance_port, settings.state_dir, "maintenance")

    def record(reports: list[MaintenanceReport], seconds: float) -> None:
        """Ops hook: a complete run without a failed step is a success for `lakehouse status`."""
        if len(reports) == len(tables) and not failed_steps(reports):
            record_success(settings.state_dir, maintenance_run(reports, datetime.now(UTC), seconds))

    try:
        catalog, namespace = settings.catalog.name, settings.catalog.namespace
        log.info("maintaining %s in %s.%s %s; SIGTERM or SIGINT stops it after the table in hand",
                 ", ".join(names), catalog, namespace,
                 f"every {args.interval:g} s" if args.interval else "once")
        if args.interval:
            maintain_every(spark, catalog, namespace, tables, policy, counters, args.interval, stop, record)
            log.info("maintenance stopped: %s", counters.summary())
            return 0
        started = time.monotonic()
        reports = maintain_tables(spark, catalog, namespace, tables, policy, counters, stop)
        record(reports, time.monotonic() - started)
        failed = failed_steps(reports)
        if failed:
            log.error("maintenance: %d steps still failed after their retries: %s", len(failed), "; ".join(failed))
            return 1
        log.info("maintenance done: %s", counters.summary())
        return 0
    finally:
        spark.stop()


if __name__ == "__main__":
    raise SystemExit(main())
