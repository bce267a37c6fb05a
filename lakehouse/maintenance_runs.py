"""Maintenance as the job runs it: once, or every interval until a stop request, each complete run
without a failed step recorded as a success for ``lakehouse status`` and Prometheus.

The steps themselves (compaction, snapshot expiry, orphan removal, retries) are
``lakehouse.maintenance``; ``jobs/maintenance.py`` is the command line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lakehouse.maintenance import (
    MaintenanceCounters,
    MaintenancePolicy,
    MaintenanceReport,
    failed_steps,
    maintain_every,
    maintain_tables,
)
from lakehouse.ops.batch_runs import MAINTENANCE, maintenance_run
from lakehouse.ops.job_runs import record_success, serve_job_metrics
from lakehouse.settings import Settings
from lakehouse.shutdown import StopRequest
from lakehouse.tables import TableDef

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(MAINTENANCE)


def serve_maintenance_metrics(settings: Settings, counters: MaintenanceCounters) -> Callable[[], None] | None:
    """For ``--interval``: the last run's record and ``counters`` on metrics.maintenance_port (0: off);
    served before the Spark session starts (``lakehouse.job_args.job_metrics``)."""
    return serve_job_metrics(settings.metrics.maintenance_port, settings.state_dir, MAINTENANCE, counters.samples,
                             setting="maintenance_port")


def run_maintenance(
    spark: SparkSession,
    settings: Settings,
    tables: Sequence[TableDef],
    policy: MaintenancePolicy,
    interval_seconds: float,
    stop: StopRequest,
    counters: MaintenanceCounters,
    missing_ok: bool = False,
) -> int:
    """Maintain ``tables`` once (``interval_seconds`` 0) or every ``interval_seconds`` until ``stop``,
    counting into ``counters``; return the exit code: 1 if a single run left a step failed after its
    retries, else 0. A stop waits for the table being maintained. ``missing_ok``: a table not created
    yet is skipped, not a failure (see ``maintain_tables``)."""
    catalog, namespace = settings.catalog.name, settings.catalog.namespace

    def record(reports: list[MaintenanceReport], seconds: float) -> None:
        """Ops hook: a complete run without a failed step is a success for `lakehouse status`."""
        if len(reports) == len(tables) and not failed_steps(reports):
            record_success(settings.state_dir, maintenance_run(reports, datetime.now(UTC), seconds))

    log.info("maintaining %s in %s.%s %s; SIGTERM or SIGINT stops it after the table in hand",
             ", ".join(t.name for t in tables), catalog, namespace,
             f"every {interval_seconds:g} s" if interval_seconds else "once")
    if interval_seconds:
        maintain_every(spark, catalog, namespace, tables, policy, counters, interval_seconds, stop, record, missing_ok)
        log.info("maintenance stopped: %s", counters.summary())
        return 0
    started = time.monotonic()
    reports = maintain_tables(spark, catalog, namespace, tables, policy, counters, stop, missing_ok)
    record(reports, time.monotonic() - started)
    failed = failed_steps(reports)
    if failed:
        log.error("maintenance: %d steps still failed after their retries: %s", len(failed), "; ".join(failed))
        return 1
    log.info("maintenance run done: %s", counters.summary())
    return 0
