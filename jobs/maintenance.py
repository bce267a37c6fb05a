"""Maintenance: compact small files, expire old snapshots and remove orphan files of the lakehouse
tables, once or every --interval seconds, while the streaming jobs keep running."""

from __future__ import annotations

import argparse
import logging
import time
from datetime import UTC, datetime, timedelta

from lakehouse.logs import configure_logging
from lakehouse.maintenance import MaintenancePolicy, maintain
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    settings = load_settings()
    known = {t.name for t in ALL_TABLES}
    tables = [name.strip() for name in args.tables.split(",") if name.strip()]
    unknown = sorted(set(tables) - known)
    if unknown:
        raise SystemExit(f"unknown tables {unknown}; known: {sorted(known)}")
    policy = MaintenancePolicy(
        snapshot_retention=timedelta(hours=args.snapshot_retention_hours),
        orphan_age=timedelta(hours=args.orphan_age_hours),
        max_snapshots=args.max_snapshots,
    )
    stop = StopRequest("maintenance").install()  # a stop waits for the table being maintained
    spark = build_spark_session(settings, "maintenance")
    if args.interval:  # ops hook: Prometheus on metrics.maintenance_port (0 = off)
        serve_job_metrics(settings.metrics.maintenance_port, settings.state_dir, "maintenance")
    try:
        while not stop.is_set():
            started = time.monotonic()
            reports = []
            for name in tables:
                if stop.is_set():
                    return 0
                report = maintain(spark, settings.catalog.name, f"{settings.catalog.namespace}.{name}", policy)
                log.info(report.describe())
                reports.append(report)
            # Ops hook: a success record for `lakehouse status` and Prometheus (lakehouse.ops.job_runs).
            record_success(settings.state_dir, maintenance_run(reports, datetime.now(UTC), time.monotonic() - started))
            if not args.interval or stop.wait(args.interval):
                return 0
        return 0
    finally:
        spark.stop()


if __name__ == "__main__":
    raise SystemExit(main())
