"""Folding a table's appended (day-only) files into its day-symbol files, beside the stream.

The raw stream appends to ``trades``, and the bars stream writes ``bars_1m``, with the table's
day-only spec (``TableDef.append_partition_by``): a file per task and day, whatever the number of
symbols, so a micro-batch's cost no longer grows with the symbols it touches. A fold moves the rows
of those files into files of the default (day, symbol) spec in one Iceberg rewrite commit: a reader
sees each row exactly once before, during and after it, and a symbol's reads prune to its own files
again. Every ``streaming.fold_interval_seconds`` each stream's writer starts one in a background
thread, in a FAIR pool of its own below the streams' (docs/performance.md#many-symbols). The bars
stream keeps its open bars in day-only files it replaces every batch; its fold leaves those alone
(``keep``).

Iceberg's ``rewrite_data_files`` picks files by size, not by spec, and would rewrite the small
day-symbol files of the open day again at every run; a fold takes exactly the appended files. It
uses the machinery that procedure is built on (``ScanTaskSetManager``, ``FileRewriteCoordinator``,
the ``rewritten-file-scan-task-set-id`` write), and commits a ``RewriteFiles`` of its own, which a
concurrent append never conflicts with. Maintenance compacting the same closed day may: the loser
fails its validation, commits nothing, and a fold retries at its next interval.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

from pyspark.sql import SparkSession

from lakehouse.logs import describe_error
from lakehouse.spark import append_spec_of, iceberg_table, java_static_get
from lakehouse.tables import TRADES, TableDef

log = logging.getLogger("fold")

# The paths of appended files a fold must leave where they are, given the Java table and the
# snapshot the fold reads (the bars stream's open-bars files).
KeptFiles = Callable[[object, object], set[str]]

FOLD_POOL = "fold"  # its FAIR pool (conf/fairscheduler.xml): weight 1, no minimum share
FOLD_PROPERTY = "lakehouse.fold"  # snapshot summary: the fold's id
# The fold's read is split so that every core reads (and shuffles) a share of the appended bytes,
# in tasks of at least this many bytes: many small appended files are read a few to a task.
MIN_READ_SPLIT_BYTES = 16 * 1024 * 1024
# The fold writes zstd at level 1, not the tables' 3: most of a small file's cost is setting up a
# compressor per column chunk, less at level 1; a closed day's compaction rewrites every partition
# the folds left more than one file in at the table's level (docs/performance.md#many-symbols).
FOLD_COMPRESSION_LEVEL = "1"


@dataclass(frozen=True)
class FoldReport:
    folded_files: int  # appended files whose rows moved
    written_files: int  # day-symbol files written
    rows: int
    seconds: float


def fold_appended_files(
    spark: SparkSession, table_name: str, table_def: TableDef = TRADES, keep: KeptFiles | None = None,
    days: Sequence[date] | None = None,
) -> FoldReport:
    """Move every appended (append-spec) file's rows of ``table_name`` into day-symbol files, in one
    rewrite commit, except the files ``keep`` names, and only those of ``days`` if given. A no-op,
    committing nothing, when there is none."""
    started = time.monotonic()
    jvm = spark._jvm
    table = iceberg_table(spark, table_name)
    table.refresh()
    snapshot = table.currentSnapshot()
    append_spec = append_spec_of(table, table_def)
    if snapshot is None or append_spec is None:
        return FoldReport(0, 0, 0, time.monotonic() - started)
    kept = keep(table, snapshot) if keep is not None else set()
    tasks = [task for task in appended_file_tasks(spark, table_name, table_def, table, snapshot.snapshotId(),
                                                   append_spec, days)
             if str(task.file().location()) not in kept]
    if not tasks:
        return FoldReport(0, 0, 0, time.monotonic() - started)

    task_list = jvm.java.util.ArrayList()
    appended_bytes = 0
    for task in tasks:
        task_list.add(task)
        appended_bytes += task.file().fileSizeInBytes()
    split_bytes = read_split_bytes(appended_bytes, spark.sparkContext.defaultParallelism)
    staged = jvm.org.apache.iceberg.spark.ScanTaskSetManager.get()
    with staged_write(spark, table, "fold") as group:
        staged.stageTasks(table, group, task_list)
        try:
            rows = (
                spark.read.format("iceberg")
                .option("scan-task-set-id", group)
                .option("split-size", str(split_bytes))
                .option("file-open-cost", "0")
                .load(group)
            )
            (
                rows.write.format("iceberg")
                .option("rewritten-file-scan-task-set-id", group)
                # Hash by (day, symbol): each day-symbol's rows in one task, so one file each; sorted by
                # them and written by the clustered writer, one open file per task (a fanout writer keeps
                # one per symbol-day and ran a 2,000-symbol fold out of heap).
                .option("distribution-mode", "hash")
                .option("fanout-enabled", "false")
                .option("compression-level", FOLD_COMPRESSION_LEVEL)
                .option("output-spec-id", str(table.spec().specId()))
                .mode("append")
                .save(group)
            )
            written = written_files(spark, table, group)
        finally:
            staged.removeTasks(table, group)
    rewrite = table.newRewrite().validateFromSnapshot(snapshot.snapshotId())
    row_count = 0
    for task in tasks:
        rewrite.deleteFile(task.file())
        row_count += task.file().recordCount()
    for data_file in written:
        rewrite.addFile(data_file)
    rewrite.set(FOLD_PROPERTY, group)
    rewrite.commit()
    return FoldReport(len(tasks), len(written), int(row_count), time.monotonic() - started)


def read_split_bytes(appended_bytes: int, cores: int) -> int:
    """The split size that reads ``appended_bytes`` in about ``cores`` tasks, none smaller than
    ``MIN_READ_SPLIT_BYTES``. With one split for all of a fold's appended files, a single task read
    (and shuffled) them on one core while the other idled (docs/performance.md#many-symbols)."""
    return max(MIN_READ_SPLIT_BYTES, -(-appended_bytes // max(cores, 1)))


@contextmanager
def staged_write(spark: SparkSession, table, prefix: str) -> Iterator[str]:
    """A group id under which Spark writes data files to ``table`` (a Java table) without committing
    them: ``.option("rewritten-file-scan-task-set-id", group).save(group)``, then ``written_files``.
    The caller commits them itself (the fold's rewrite, the bars stream's overwrite)."""
    group = f"{prefix}-{uuid.uuid4()}"
    cache = java_static_get(spark, "org.apache.iceberg.spark.SparkTableCache")
    cache.add(group, table)
    try:
        yield group
    finally:
        cache.remove(group)
        spark._jvm.org.apache.iceberg.spark.FileRewriteCoordinator.get().clearRewrite(table, group)


def written_files(spark: SparkSession, table, group: str) -> list:
    """The Java ``DataFile`` objects a ``staged_write`` group's writes produced."""
    return list(spark._jvm.org.apache.iceberg.spark.FileRewriteCoordinator.get().fetchNewFiles(table, group))


def appended_file_tasks(
    spark: SparkSession, table_name: str, table_def: TableDef, table, snapshot_id: int, append_spec: int,
    days: Sequence[date] | None = None,
) -> list:
    """The scan tasks (Py4J objects) of the live append-spec files at ``snapshot_id`` (of ``days`` only,
    if given).

    Their paths and oldest day-column value come from the ``files`` metadata table (a file it lists that
    the scan at ``snapshot_id`` does not, or the reverse, waits for the next fold); the Java scan is then
    filtered from that time on, so it lists the appended files and the few day-symbol files of the
    same minutes, not the whole table (each listed file is a Py4J round trip)."""
    day_column = table_def.day_column
    listed = ", ".join(f"DATE '{day.isoformat()}'" for day in days or ())
    in_days = "" if days is None else f" AND partition.{day_column}_day IN ({listed or 'NULL'})"
    bounds = spark.sql(
        f"SELECT file_path, readable_metrics.{day_column}.lower_bound AS lower "
        f"FROM {table_name}.files WHERE content = 0 AND spec_id = {append_spec}{in_days}"
    ).collect()
    if not bounds:
        return []
    paths = {row.file_path for row in bounds}
    expressions = spark._jvm.org.apache.iceberg.expressions.Expressions
    scan = table.newScan().useSnapshot(snapshot_id).ignoreResiduals()
    if all(row.lower is not None for row in bounds):
        oldest_us = min(int(row.lower.timestamp() * 1_000_000) for row in bounds)
        scan = scan.filter(expressions.greaterThanOrEqual(day_column, expressions.micros(oldest_us)))
    tasks = []
    iterable = scan.planFiles()
    try:
        iterator = iterable.iterator()
        while iterator.hasNext():
            task = iterator.next()
            if task.file().specId() == append_spec and str(task.file().location()) in paths:
                tasks.append(task)
    finally:
        iterable.close()
    return tasks


class BackgroundFolder:
    """Starts a fold every ``interval`` seconds, in a thread of its own, when none is running.

    Called by the raw-trades writer after each batch (``maybe_start``), so folds follow the stream's
    life: none before its first batch, none after it stops. A fold that fails (a conflict with
    maintenance, a catalog outage) is logged and retried at the next interval: the appended files
    stay readable where they are meanwhile.
    """

    def __init__(
        self, spark: SparkSession, table_name: str, interval: float, table_def: TableDef = TRADES,
        keep: KeptFiles | None = None,
    ):
        self.spark = spark
        self.table_name = table_name
        self.interval = interval
        self.table_def = table_def
        self.keep = keep
        self.last_started = time.monotonic()
        self.thread: threading.Thread | None = None

    def maybe_start(self) -> bool:
        if self.interval <= 0 or (self.thread is not None and self.thread.is_alive()):
            return False
        if time.monotonic() - self.last_started < self.interval:
            return False
        self.last_started = time.monotonic()
        self.thread = threading.Thread(target=self._fold, name=f"{self.table_def.name}-fold", daemon=True)
        self.thread.start()
        return True

    def _fold(self) -> None:
        # Iceberg resolves the fold's staged files through the thread's active session (its cached-
        # table catalog is registered there): make that the stream's session in this thread too.
        self.spark._jvm.org.apache.spark.sql.SparkSession.setActiveSession(self.spark._jsparkSession)
        context = self.spark.sparkContext
        context.setLocalProperty("spark.scheduler.pool", FOLD_POOL)
        context.setJobGroup("fold", f"fold appended {self.table_def.name} files into day-symbol files",
                            interruptOnCancel=True)
        try:
            report = fold_appended_files(self.spark, self.table_name, self.table_def, self.keep)
        except Exception as error:
            log.warning("fold of %s failed, retried in %ss: %s", self.table_name, self.interval,
                        describe_error(error))
            return
        if report.folded_files:
            log.info("folded %s appended files (%s rows) into %s day-symbol files in %.1f s",
                     report.folded_files, report.rows, report.written_files, report.seconds)
