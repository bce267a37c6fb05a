"""Table maintenance: compaction, snapshot expiry, orphan clean-up and (for ``trades``) manifest
rewrites, safe beside running streams.

Streaming appends leave many small files and snapshots. These Iceberg procedures fix that without
stopping the streams: compaction commits a ``replace`` snapshot (which Iceberg's streaming reader
skips), and only snapshots older than the retention are expired, so a downstream stream (bars read
the trades table) never loses a snapshot it has not read yet, unless the table holds more than
``max_snapshots``: every snapshot is a part of the table's metadata file, which each commit rewrites
and each reader parses, so a 1-second trigger's 21,600 snapshots in 6 hours (18 MiB) made a
pyiceberg table load take 0.7 s and a Spark append twice as long
(docs/performance.md#snapshot-history).

Coexisting with the writers, by design first and by retry second:

- Compaction keeps out of the files a live writer may still delete (``tables.Compaction``): a
  day-partitioned table is compacted in its closed days only (``bars_1m`` also before the first day
  its stream still holds open bars of, ``first_open_bars_day``), a table whose writers only append is
  compacted whole, a table upserted by MERGE anywhere is not compacted. An append never conflicts
  with a rewrite; a copy-on-write MERGE or an overwrite does, and the one that commits second fails.
- Manifests are merged by the appends (``commit.manifest-merge.*`` in ``tables.py``), and not
  rewritten here for those tables: ``rewrite_manifests`` fails whenever an append merged a manifest
  it was replacing. ``trades``'s appends merge none (its folds empty the appended manifests), so its
  folds' and compactions' manifests, each partly live, would pile up day after day: once its
  current snapshot lists more than ``max_manifests``, they are rewritten here. Only the table's
  default-spec manifests are rewritten, never the appended ones a fold may be dropping meanwhile,
  and the ``replace`` snapshot it commits is skipped by the streaming reader.
- Compaction commits per file group (partial progress, one group at a time, since concurrent group
  commits conflict with each other), so a conflict loses one group, not the run.
- Iceberg re-applies a commit that lost a race on the new table state (``commit.retry.*``); what it
  cannot re-apply (a validation failure: an input file is gone) is a conflict, and the step is run
  again after a backoff, a bounded number of times. A step that still fails is counted and reported,
  and the other steps and tables go on.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

from lakehouse.iceberg_writes import COMMIT_CONFLICT_MARKERS
from lakehouse.logs import describe_error
from lakehouse.tables import BARS_1M, Compaction, TableDef, merges_manifests
from lakehouse.times import from_epoch_micros

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakehouse.shutdown import StopRequest

log = logging.getLogger(__name__)
T = TypeVar("T")

# Text of the Java exceptions that mean "another writer committed first".
CONFLICT_MARKERS = (
    *COMMIT_CONFLICT_MARKERS,
    # rewrite_data_files with partial progress, when a file group's commit failed (validation
    # failures included) while the other groups committed.
    "rewrite commits failed",
)


class Step(Enum):
    REWRITE_DATA_FILES = "rewrite_data_files"
    REWRITE_MANIFESTS = "rewrite_manifests"
    EXPIRE_SNAPSHOTS = "expire_snapshots"
    REMOVE_ORPHAN_FILES = "remove_orphan_files"


@dataclass(frozen=True)
class MaintenancePolicy:
    snapshot_retention: timedelta = timedelta(hours=6)
    retain_last_snapshots: int = 20
    # An hour of commits at a 1 s trigger (5 at the default 5 s): a 3 MiB metadata file.
    max_snapshots: int = 3_600
    # A table whose appends merge no manifests (trades) gets them rewritten past this many: each
    # commit writes the whole manifest list, and a full scan opens every manifest.
    max_manifests: int = 200
    orphan_age: timedelta = timedelta(days=1)  # younger files may belong to a commit in flight
    # Listing every file of a table is a run's dearest step, and a file becomes an orphan old enough
    # to remove only ``orphan_age`` after it was written: looking more often finds nothing new.
    orphan_check_interval: timedelta = timedelta(hours=1)
    target_file_size_bytes: int = 128 * 1024 * 1024
    min_input_files: int = 2
    # A day is closed once its last window is past the streams' allowed lateness and this margin:
    # a bars job catching up on a backlog still MERGEs into a day the clock has just closed.
    allowed_lateness: timedelta = timedelta(seconds=60)
    closed_day_margin: timedelta = timedelta(hours=1)
    # A step that conflicted runs again this many times in all, after 2, 4, 8... s (jittered).
    step_attempts: int = 4
    backoff_first_seconds: float = 2.0
    backoff_max_seconds: float = 30.0


@dataclass
class MaintenanceCounters:
    """What maintenance met since the process started, for the operator and for Prometheus (the
    endpoint of ``maintenance --interval``, lakehouse.maintenance_runs).

    Keys are (table, step); ``last_success_seconds`` is, per table, the epoch second at which a
    run last finished every step of it.
    """

    commit_conflicts: Counter[tuple[str, str]] = field(default_factory=Counter)
    retries: Counter[tuple[str, str]] = field(default_factory=Counter)
    step_failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    runs_completed: int = 0
    last_success_seconds: dict[str, float] = field(default_factory=dict)
    last_orphan_check_seconds: dict[str, float] = field(default_factory=dict)

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """Every counter as (metric name, labels, value), as served. The per-table success time is
        ``..._table_last_success_...``: the unlabelled ``lakehouse_maintenance_last_success_timestamp_seconds``
        is the run record's (lakehouse.ops.job_runs), which the alerts read."""
        out: list[tuple[str, dict[str, str], float]] = []
        for name, counts in (
            ("lakehouse_maintenance_commit_conflicts_total", self.commit_conflicts),
            ("lakehouse_maintenance_retries_total", self.retries),
            ("lakehouse_maintenance_step_failures_total", self.step_failures),
        ):
            out.extend((name, {"table": table, "step": step}, float(n)) for (table, step), n in sorted(counts.items()))
        out.append(("lakehouse_maintenance_runs_total", {}, float(self.runs_completed)))
        out.extend(("lakehouse_maintenance_table_last_success_timestamp_seconds", {"table": table}, at)
                   for table, at in sorted(self.last_success_seconds.items()))
        out.extend(("lakehouse_maintenance_last_orphan_check_timestamp_seconds", {"table": table}, at)
                   for table, at in sorted(self.last_orphan_check_seconds.items()))
        return out

    def summary(self) -> str:
        return (f"{self.runs_completed} runs, {sum(self.commit_conflicts.values())} commit conflicts, "
                f"{sum(self.retries.values())} retries, {sum(self.step_failures.values())} steps failed")


@dataclass(frozen=True)
class FileStats:
    data_files: int
    partitions: int
    max_files_per_partition: int
    bytes: int

    @property
    def files_per_partition(self) -> float:
        return self.data_files / self.partitions if self.partitions else 0.0


NOT_CREATED_YET = "not created yet"


@dataclass(frozen=True)
class MaintenanceReport:
    table: str
    scope: str  # which partitions compaction was allowed to touch
    before: FileStats  # data files in that scope
    after: FileStats
    rewritten_files: int
    added_files: int
    expired_snapshots: int
    orphan_files_removed: int
    conflicts: int = 0
    rewritten_manifests: int = 0  # how many the step replaced (0 when the table was under the cap)
    failed_steps: tuple[str, ...] = ()

    @property
    def succeeded(self) -> bool:
        return not self.failed_steps

    @property
    def skipped(self) -> bool:
        """The table was not created yet (its job has not run) and the run was told that is fine."""
        return self.scope == NOT_CREATED_YET

    def describe(self) -> str:
        if self.skipped:
            return f"{self.table}: {NOT_CREATED_YET} (the job that writes it creates it on its first run); skipped"
        outcome = f"; FAILED: {', '.join(self.failed_steps)}" if self.failed_steps else ""
        return (
            f"{self.table} ({self.scope}): data files {self.before.data_files} -> {self.after.data_files} "
            f"({self.before.files_per_partition:.1f} -> {self.after.files_per_partition:.1f} per partition, "
            f"max {self.before.max_files_per_partition} -> {self.after.max_files_per_partition}); "
            f"rewrote {self.rewritten_files} into {self.added_files}; expired {self.expired_snapshots} snapshots; "
            f"rewrote {self.rewritten_manifests} manifests; "
            f"removed {self.orphan_files_removed} orphan files; {self.conflicts} commit conflicts{outcome}"
        )


class CompactionIncomplete(Exception):
    """Some of compaction's file groups failed to rewrite; the others committed. Retried like a
    conflict: the next pass plans only what is still small."""


class StepFailed(Exception):
    def __init__(self, step: Step, error: BaseException) -> None:
        super().__init__(f"{step.value}: {describe_error(error)}")
        self.step = step


def is_commit_conflict(error: BaseException) -> bool:
    if isinstance(error, CompactionIncomplete):
        return True
    text = str(error)
    return any(marker in text for marker in CONFLICT_MARKERS)


def backoff_seconds(attempt: int, policy: MaintenancePolicy, jitter: float) -> float:
    """The pause after failed attempt ``attempt`` (1-based): doubling, capped, times ``jitter``."""
    return min(policy.backoff_max_seconds, policy.backoff_first_seconds * 2 ** (attempt - 1)) * jitter


def run_step(
    table: str,
    step: Step,
    action: Callable[[], T],
    policy: MaintenancePolicy,
    counters: MaintenanceCounters,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run one maintenance step, again after a backoff while it meets commit conflicts.

    Every step is safe to repeat (compaction plans afresh from the table as it is now; expiry and
    orphan removal are idempotent). Raises ``StepFailed`` after the last attempt, or at once for an
    error that is not a conflict.
    """
    key = (table, step.value)
    for attempt in range(1, policy.step_attempts + 1):
        try:
            return action()
        except Exception as error:
            if not is_commit_conflict(error):
                counters.step_failures[key] += 1
                log.error("maintenance %s %s failed (not a commit conflict, not retried): %s",
                          table, step.value, describe_error(error))
                raise StepFailed(step, error) from error
            counters.commit_conflicts[key] += 1
            if attempt == policy.step_attempts:
                counters.step_failures[key] += 1
                log.error("maintenance %s %s: commit conflict with a concurrent writer on the last of %d "
                          "attempts, giving up until the next run: %s",
                          table, step.value, policy.step_attempts, describe_error(error))
                raise StepFailed(step, error) from error
            pause = backoff_seconds(attempt, policy, 0.5 + random.random())
            counters.retries[key] += 1
            log.warning("maintenance %s %s: commit conflict with a concurrent writer (attempt %d/%d), "
                        "retrying in %.1f s: %s",
                        table, step.value, attempt, policy.step_attempts, pause, describe_error(error))
            sleep(pause)
    raise AssertionError("unreachable")


def first_open_day(now: datetime, policy: MaintenancePolicy) -> date:
    """The earliest UTC day a stream may still write: every day before it is closed."""
    return (now - policy.allowed_lateness - policy.closed_day_margin).astimezone(UTC).date()


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def compaction_where(
    definition: TableDef | None, now: datetime, policy: MaintenancePolicy, open_from: date | None = None
) -> str | None:
    """The ``where`` of ``rewrite_data_files`` for ``definition`` (None: the whole table). Aligned to
    the day partitions, so Iceberg selects whole closed partitions and never touches an open one;
    ``open_from``: a day a stream still writes, by its own account, whatever the clock says."""
    if definition is None or definition.compaction is not Compaction.CLOSED_DAYS:
        return None
    if not definition.day_column:
        raise ValueError(f"{definition.name}: compaction of closed days needs its day_column")
    return f"{definition.day_column} < {_sql_timestamp(_day_start(first_kept_day(now, policy, open_from)))}"


def first_kept_day(now: datetime, policy: MaintenancePolicy, open_from: date | None) -> date:
    """The first day compaction keeps out of: the clock's first open day, or ``open_from`` if earlier."""
    first_open = first_open_day(now, policy)
    return first_open if open_from is None else min(first_open, open_from)


def first_open_bars_day(spark: SparkSession, qualified: str) -> date | None:
    """The first day of the bars stream's open-bars files (None: it holds none). When the stream
    replays history its open bars sit in days the clock calls closed, and compacting those files
    would make each of its commits replace the bars by key, a MERGE that loses the race to
    compaction's next run (lakehouse.bars_commit)."""
    from lakehouse.bars_commit import open_bars_files
    from lakehouse.spark import iceberg_table

    java_table = iceberg_table(spark, qualified)
    paths = open_bars_files(java_table, java_table.currentSnapshot())
    if not paths:
        return None
    listed = ", ".join("'" + path.replace("'", "''") + "'" for path in paths)
    return spark.sql(f"SELECT min(partition.{BARS_1M.day_column}_day) AS day FROM {qualified}.files "
                     f"WHERE file_path IN ({listed})").first().day


def compaction_scope(definition: TableDef | None, now: datetime, policy: MaintenancePolicy) -> str:
    if definition is None or definition.compaction is Compaction.WHOLE_TABLE:
        return "whole table"
    if definition.compaction is Compaction.NEVER:
        return "not compacted: upserted anywhere"
    return f"days before {first_open_day(now, policy)}"


def file_stats(spark: SparkSession, table: str, before_day: tuple[str, date] | None = None) -> FileStats:
    """Data files of ``table`` (``catalog.namespace.table``); with ``before_day`` = (partition field,
    day), only those of the day partitions before that day. One Spark job."""
    where = "" if before_day is None else f" WHERE partition.{before_day[0]} < DATE '{before_day[1].isoformat()}'"
    row = spark.sql(
        f"SELECT coalesce(sum(n), 0) AS files, count(*) AS partitions, coalesce(max(n), 0) AS busiest, "
        f"coalesce(sum(size), 0) AS bytes FROM (SELECT count(*) AS n, sum(file_size_in_bytes) AS size "
        f"FROM {table}.data_files{where} GROUP BY partition)"
    ).first()
    return FileStats(int(row.files), int(row.partitions), int(row.busiest), int(row.bytes))


def _sql_timestamp(moment: datetime) -> str:
    # To the microsecond: a snapshot committed earlier in the same second is older, too.
    return f"TIMESTAMP '{moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def expire_older_than(now: datetime, retention: timedelta, oldest_allowed: datetime | None) -> datetime:
    """The ``older_than`` of ``expire_snapshots``: the retention's start, or ``oldest_allowed`` (the
    commit time of the oldest of the newest ``max_snapshots``, for a table holding more) if later."""
    cutoff = now - retention
    return cutoff if oldest_allowed is None else max(cutoff, oldest_allowed)


def _oldest_of_newest(spark: SparkSession, qualified: str, count: int) -> datetime | None:
    micros = spark.sql(
        f"SELECT unix_micros(min(committed_at)) AS t FROM "
        f"(SELECT committed_at FROM {qualified}.snapshots ORDER BY committed_at DESC LIMIT {count})"
    ).first().t
    return None if micros is None else from_epoch_micros(micros)


@dataclass
class _Rewritten:
    files: int = 0
    added: int = 0


def _compact(spark: SparkSession, catalog: str, table: str, where: str | None,
             policy: MaintenancePolicy, done: _Rewritten) -> None:
    """One compaction pass; what committed is added to ``done`` even when some groups conflicted,
    so a retry (which plans only what is still small) does not lose the count."""
    where_arg = "" if where is None else f"where => \"{where}\", "
    result = spark.sql(
        f"CALL {catalog}.system.rewrite_data_files(table => '{table}', {where_arg}options => map("
        f"'min-input-files', '{policy.min_input_files}', "
        f"'target-file-size-bytes', '{policy.target_file_size_bytes}', "
        f"'partial-progress.enabled', 'true', "
        # A group whose commit failed must raise, not pass with a warning: the step retries it.
        f"'partial-progress.max-failed-commits', '0', "
        # Concurrent file-group commits of one rewrite conflict with each other (apache/iceberg#9521).
        f"'max-concurrent-file-group-rewrites', '1'))"
    ).first()
    done.files += int(result.rewritten_data_files_count)
    done.added += int(result.added_data_files_count)
    failed = int(result.failed_data_files_count)
    if failed:
        raise CompactionIncomplete(
            f"{failed} data files were left as they were: their file groups failed to rewrite"
        )


def _rewrite_manifests(spark: SparkSession, catalog: str, table: str, max_manifests: int) -> int:
    """Rewrite the default spec's manifests of ``table`` when its current snapshot lists more than
    ``max_manifests`` of them; return how many it replaced (0: under the cap, nothing committed).
    The appended (append-spec) manifests do not count: the next fold empties them."""
    from lakehouse.spark import iceberg_table

    default_spec = iceberg_table(spark, f"{catalog}.{table}").spec().specId()
    listed = spark.table(f"{catalog}.{table}.manifests").where(f"partition_spec_id = {default_spec}").count()
    if listed <= max_manifests:
        return 0
    result = spark.sql(
        f"CALL {catalog}.system.rewrite_manifests(table => '{table}', use_caching => false)"
    ).first()
    return int(result.rewritten_manifests_count) if result is not None else 0


def maintain(
    spark: SparkSession,
    catalog: str,
    table: str,
    policy: MaintenancePolicy,
    now: datetime | None = None,
    definition: TableDef | None = None,
    counters: MaintenanceCounters | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> MaintenanceReport:
    """Compact, expire and clean one table (``namespace.table`` inside ``catalog``).

    ``definition`` (the lakehouse table it is) decides which partitions compaction may touch; a
    table without one is compacted whole. Each step retries its commit conflicts on its own, and a
    step that still fails does not stop the next: the report names the failed steps.
    """
    now = now or datetime.now(UTC)
    counters = counters if counters is not None else MaintenanceCounters()
    qualified = f"{catalog}.{table}"
    compacts = definition is None or definition.compaction is not Compaction.NEVER
    open_from = first_open_bars_day(spark, qualified) if definition is BARS_1M else None
    where = compaction_where(definition, now, policy, open_from)
    in_scope = ((f"{definition.day_column}_day", first_kept_day(now, policy, open_from))
                if where and definition else None)
    conflicts_before = sum(n for (t, _), n in counters.commit_conflicts.items() if t == table)
    failed: list[str] = []

    def attempt(step: Step, action: Callable[[], T]) -> T | None:
        try:
            return run_step(table, step, action, policy, counters, sleep)
        except StepFailed:
            failed.append(step.value)
            return None

    before = file_stats(spark, qualified, in_scope)
    rewritten = _Rewritten()
    if compacts:
        attempt(Step.REWRITE_DATA_FILES, lambda: _compact(spark, catalog, table, where, policy, rewritten))

    manifests = None
    if definition is not None and not merges_manifests(definition):
        manifests = attempt(Step.REWRITE_MANIFESTS,
                            lambda: _rewrite_manifests(spark, catalog, table, policy.max_manifests))

    snapshots_before = spark.table(f"{qualified}.snapshots").count()

    def expire() -> None:
        over_the_cap = spark.table(f"{qualified}.snapshots").count() > policy.max_snapshots
        oldest_allowed = _oldest_of_newest(spark, qualified, policy.max_snapshots) if over_the_cap else None
        older_than = expire_older_than(now, policy.snapshot_retention, oldest_allowed)
        spark.sql(
            f"CALL {catalog}.system.expire_snapshots(table => '{table}', "
            f"older_than => {_sql_timestamp(older_than)}, "
            f"retain_last => {policy.retain_last_snapshots})"
        ).collect()

    attempt(Step.EXPIRE_SNAPSHOTS, expire)
    orphans = None
    checked_at = counters.last_orphan_check_seconds.get(table)
    if checked_at is None or time.time() - checked_at >= policy.orphan_check_interval.total_seconds():
        orphans = attempt(Step.REMOVE_ORPHAN_FILES, lambda: spark.sql(
            f"CALL {catalog}.system.remove_orphan_files(table => '{table}', "
            f"older_than => {_sql_timestamp(now - policy.orphan_age)})"
        ).collect())
        if orphans is not None:
            counters.last_orphan_check_seconds[table] = time.time()
    if not failed:
        counters.last_success_seconds[table] = time.time()
    return MaintenanceReport(
        table=qualified,
        scope=compaction_scope(definition, now, policy),
        before=before,
        after=file_stats(spark, qualified, in_scope),
        rewritten_files=rewritten.files,
        added_files=rewritten.added,
        # Streams keep committing meanwhile: the count is of snapshots gone, at least zero.
        expired_snapshots=max(0, snapshots_before - spark.table(f"{qualified}.snapshots").count()),
        orphan_files_removed=len(orphans or []),
        conflicts=sum(n for (t, _), n in counters.commit_conflicts.items() if t == table) - conflicts_before,
        failed_steps=tuple(failed),
        rewritten_manifests=manifests or 0,
    )


def maintain_tables(
    spark: SparkSession,
    catalog: str,
    namespace: str,
    tables: Sequence[TableDef],
    policy: MaintenancePolicy,
    counters: MaintenanceCounters,
    stop: StopRequest | None = None,
    missing_ok: bool = False,
) -> list[MaintenanceReport]:
    """One maintenance run over ``tables``: each table on its own, whatever another one met; a stop
    request is honoured between tables. Counts the run as completed only if it went through all.

    A table not created yet is a failed step, unless ``missing_ok`` (the job's default, every
    table: a deployment without vnstock never creates ``vendor_bars``); even then, a run that finds
    none of its tables has failed, as a wrong namespace must not look healthy."""
    reports = []
    missing = [d for d in tables if not _exists(spark, f"{catalog}.{namespace}.{d.name}")]
    if len(missing) == len(tables):
        missing_ok = False
    for definition in tables:
        if stop is not None and stop.is_set():
            return reports
        if definition in missing and missing_ok:
            report = _not_created_yet(f"{catalog}.{namespace}.{definition.name}")
            log.info("maintenance %s", report.describe())
            reports.append(report)
            continue
        try:
            if definition in missing:
                raise LookupError(f"no such table in catalog {catalog}: the job that writes it creates it "
                                  "on its first run")
            report = maintain(spark, catalog, f"{namespace}.{definition.name}", policy,
                              definition=definition, counters=counters)
        except Exception as error:  # reading the table's metadata failed: the next table still runs
            counters.step_failures[(f"{namespace}.{definition.name}", "file_stats")] += 1
            log.error("maintenance %s.%s: could not run: %s", namespace, definition.name, describe_error(error))
            report = None
        if report is not None:
            (log.info if report.succeeded else log.error)("maintenance %s", report.describe())
            reports.append(report)
        else:
            reports.append(MaintenanceReport(
                table=f"{catalog}.{namespace}.{definition.name}", scope="unknown", before=FileStats(0, 0, 0, 0),
                after=FileStats(0, 0, 0, 0), rewritten_files=0, added_files=0, expired_snapshots=0,
                orphan_files_removed=0, failed_steps=("file_stats",)))
    counters.runs_completed += 1
    return reports


def _exists(spark: SparkSession, qualified: str) -> bool:
    try:
        return bool(spark.catalog.tableExists(qualified))
    except Exception:  # the catalog did not answer: the table's own step reports it
        return True


def _not_created_yet(table: str) -> MaintenanceReport:
    nothing = FileStats(0, 0, 0, 0)
    return MaintenanceReport(table=table, scope=NOT_CREATED_YET, before=nothing, after=nothing, rewritten_files=0,
                             added_files=0, expired_snapshots=0, orphan_files_removed=0)


def failed_steps(reports: Sequence[MaintenanceReport]) -> list[str]:
    """``table step`` for every step that still failed after its retries."""
    return [f"{report.table} {step}" for report in reports for step in report.failed_steps]


def maintain_every(
    spark: SparkSession,
    catalog: str,
    namespace: str,
    tables: Sequence[TableDef],
    policy: MaintenancePolicy,
    counters: MaintenanceCounters,
    interval_seconds: float,
    stop: StopRequest,
    after_run: Callable[[list[MaintenanceReport], float], None] | None = None,
    missing_ok: bool = False,
) -> list[MaintenanceReport]:
    """Run maintenance every ``interval_seconds`` (from the end of one run to the start of the next)
    until ``stop`` is requested; returns the last run's reports. A failed run is logged and the loop
    goes on: the next run retries whatever is left. ``after_run`` gets each run's reports and its
    duration in seconds (the job records successes for ``lakehouse status`` with it)."""
    reports: list[MaintenanceReport] = []
    while not stop.is_set():
        started = time.monotonic()
        reports = maintain_tables(spark, catalog, namespace, tables, policy, counters, stop, missing_ok)
        log.info("maintenance run done: %s", counters.summary())
        if after_run is not None:
            after_run(reports, time.monotonic() - started)
        if stop.wait(interval_seconds):
            break
    return reports
