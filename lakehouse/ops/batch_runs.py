"""What a maintenance or sync run did, as the counts its ``JobRun`` record carries.

Counts are named in the job's words; the record's metric names come from them
(``lakehouse_maintenance_files_rewritten``, ``lakehouse_bigquery_sync_tables_updated``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from lakehouse.bigquery import Action, TablePlan
from lakehouse.maintenance import MaintenanceReport
from lakehouse.ops.job_runs import JobRun

MAINTENANCE = "maintenance"
BIGQUERY_SYNC = "bigquery_sync"


def maintenance_run(reports: Sequence[MaintenanceReport], finished_time: datetime, seconds: float) -> JobRun:
    return JobRun(MAINTENANCE, finished_time, seconds, {
        "tables_maintained": sum(not r.skipped for r in reports),
        "files_rewritten": sum(r.rewritten_files for r in reports),
        "files_added": sum(r.added_files for r in reports),
        "snapshots_expired": sum(r.expired_snapshots for r in reports),
        "orphan_files_removed": sum(r.orphan_files_removed for r in reports),
    })


def sync_run(plans: Sequence[TablePlan], finished_time: datetime, seconds: float) -> JobRun:
    """Counts of the tables by what happened to them; ``tables_updated`` includes created ones."""
    def count(*actions: Action) -> int:
        return sum(plan.action in actions for plan in plans)

    return JobRun(BIGQUERY_SYNC, finished_time, seconds, {
        "tables_updated": count(Action.CREATE, Action.UPDATE),
        "tables_created": count(Action.CREATE),
        "tables_unchanged": count(Action.UNCHANGED),
        "tables_skipped": count(Action.SKIP),
    })


def sync_succeeded(plans: Sequence[TablePlan]) -> bool:
    """A run that left any table in conflict or failed is not a success to record."""
    return all(plan.action not in (Action.CONFLICT, Action.FAILED) for plan in plans)
