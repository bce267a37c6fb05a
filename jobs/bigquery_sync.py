"""BigQuery sync: keep one external ICEBERG table per lakehouse table pointed at its current metadata.

The job is wiring; the logic lives in ``lakehouse.bigquery_sync``.

    python -m jobs.bigquery_sync                 # once; exit 1 if a table could not be synced
    python -m jobs.bigquery_sync --dry-run       # print the plan (and the DDL), change nothing
    python -m jobs.bigquery_sync --interval 300  # every 5 minutes until SIGTERM/SIGINT
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from lakehouse.bigquery import validate_dataset_id, validate_project_id
from lakehouse.bigquery_sync import JOB_NAME, client_or_none, print_report, run_every, sync_and_record
from lakehouse.job_args import a_bigquery_connection, above_zero, job_metrics, job_parser, job_settings
from lakehouse.logs import configure_logging
from lakehouse.ops.job_runs import serve_job_metrics
from lakehouse.shutdown import StopRequest

log = logging.getLogger(JOB_NAME)


def main(argv: Sequence[str] | None = None) -> int:
    parser = job_parser(JOB_NAME, __doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    parser.add_argument("--interval", type=above_zero, metavar="SECONDS",
                        help="run every SECONDS until SIGTERM/SIGINT (default: once)")
    parser.add_argument("--connection", type=a_bigquery_connection, metavar="PROJECT.LOCATION.CONNECTION_ID",
                        help="BigQuery connection for BigLake external tables, also as "
                        "projects/P/locations/L/connections/ID (default: none)")
    args = parser.parse_args(argv)
    configure_logging()
    settings = job_settings(parser, args.config)
    if args.interval is not None:  # ops hook: Prometheus on metrics.sync_port, 0 = off
        job_metrics(parser, lambda: serve_job_metrics(settings.metrics.sync_port, settings.state_dir, JOB_NAME,
                                                      setting="sync_port"))
    try:
        validate_project_id(settings.bigquery.project)
        validate_dataset_id(settings.bigquery.dataset)
        client = client_or_none(settings, args.dry_run)
    except ValueError as error:
        log.error("%s", error)
        return 2
    stop = None if args.interval is None else StopRequest(JOB_NAME).install()
    sync = partial(sync_and_record, settings, client, args.dry_run, args.connection, stop)
    if stop is None:  # once
        report = sync()
        print_report(report)
        return 0 if report.ok else 1
    log.info("syncing %s.%s every %.0f s", settings.bigquery.project, settings.bigquery.dataset, args.interval)
    run_every(args.interval, sync, stop)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
