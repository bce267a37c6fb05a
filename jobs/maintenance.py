"""Maintenance: compact small files, expire old snapshots and remove orphan files of the lakehouse
tables, once or every --interval seconds, while the streaming jobs keep running.

The job is wiring; the logic lives in ``lakehouse.maintenance_runs``.

    python -m jobs.maintenance [--tables trades,bars_1m] [--interval 3600]
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from lakehouse.job_args import above_zero, at_least, job_metrics, job_parser, job_settings, table_selection
from lakehouse.logs import configure_logging
from lakehouse.maintenance import MaintenanceCounters, MaintenancePolicy
from lakehouse.maintenance_runs import run_maintenance, serve_maintenance_metrics
from lakehouse.ops.batch_runs import MAINTENANCE as JOB_NAME
from lakehouse.shutdown import StopRequest
from lakehouse.spark import build_spark_session
from lakehouse.tables import ALL_TABLES


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(JOB_NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=table_selection, default=None,
                        help="comma-separated table names, each of which must exist (default: every table "
                        "created so far)")
    parser.add_argument("--interval", type=at_least(0), default=0,
                        help="repeat every N seconds (default: 0, run once)")
    parser.add_argument("--snapshot-retention-hours", type=above_zero, default=6.0,
                        help="keep the snapshots of these last hours (a stream reading the table may lag this far; "
                        "default %(default)s)")
    parser.add_argument("--max-snapshots", type=at_least(1, int), default=MaintenancePolicy.max_snapshots,
                        help="but never more than this many per table: each is part of the metadata file every "
                        "commit rewrites and every reader parses (default: an hour of commits at a 1 s trigger)")
    parser.add_argument("--orphan-age-hours", type=at_least(24.0), default=24.0,
                        help="only files older than this can be orphans (younger may be in-flight commits, and "
                        "Iceberg's remove_orphan_files refuses less than 24; default %(default)s)")
    parser.add_argument("--step-attempts", type=at_least(1, int), default=MaintenancePolicy.step_attempts,
                        help="run a step that met a commit conflict this many times in all, with backoff "
                        "(default %(default)s)")
    args = parser.parse_args(argv)
    configure_logging()
    settings = job_settings(parser, args.config)
    policy = MaintenancePolicy(
        snapshot_retention=timedelta(hours=args.snapshot_retention_hours),
        orphan_age=timedelta(hours=args.orphan_age_hours),
        max_snapshots=args.max_snapshots,
        allowed_lateness=timedelta(seconds=settings.streaming.allowed_lateness_seconds),
        step_attempts=args.step_attempts,
    )
    counters = MaintenanceCounters()
    if args.interval:  # ops hook: Prometheus on metrics.maintenance_port (0 = off)
        job_metrics(parser, lambda: serve_maintenance_metrics(settings, counters))
    stop = StopRequest(JOB_NAME).install()  # a stop waits for the table being maintained
    spark = build_spark_session(settings, JOB_NAME)
    try:
        return run_maintenance(spark, settings, args.tables or ALL_TABLES, policy, args.interval, stop, counters,
                               missing_ok=args.tables is None)
    finally:
        spark.stop()


if __name__ == "__main__":
    raise SystemExit(main())
