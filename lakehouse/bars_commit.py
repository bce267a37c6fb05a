"""The bars stream's commit: each micro-batch replaces the open-bars file and appends the bars that closed.

``bars_1m`` is partitioned by (day, symbol) for its readers. A bars micro-batch that MERGEd its
changed bars into those partitions (copy-on-write) rewrote a file per active symbol, so at 2,000
symbols a batch took longer than a bar lasts. Instead, every bar a later trade may still change (the
job's open bars, ``lakehouse.open_bars``) lives in day-only files (the table's append spec) that each
batch replaces whole with the open bars as they now stand; the bars that closed in the batch go,
final, into a day-only file of their own, which the fold later moves into day-symbol files
(``lakehouse.fold``). One commit per batch of 1-3 files, whatever the number of symbols; readers see
every bar once, at every snapshot (docs/performance.md#the-bars-job).

Each commit names its open-bars files, its batch and its checkpoint's run in the snapshot summary, so a
restarted job finds the files it must replace, a replayed batch that committed already commits
nothing, and the fold leaves the open-bars files alone. Where a bar about to be written may also be
stored elsewhere (windows built from the trades table, the first batch after an upgrade from the
MERGE, open-bars files that maintenance rewrote), those bars' rows are deleted first, wherever they
are: a second commit, taken only then.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from lakehouse import bars
from lakehouse.fold import appended_file_tasks, staged_write, written_files
from lakehouse.iceberg_writes import COMMIT_CONFLICT_MARKERS, with_commit_retry
from lakehouse.open_bars import BarKey
from lakehouse.spark import append_spec_of, iceberg_table
from lakehouse.tables import BARS_1M

log = logging.getLogger("bars.commit")

BATCH_PROPERTY = "lakehouse.bars-batch"
RUN_PROPERTY = "lakehouse.bars-run"
OPEN_FILES_PROPERTY = "lakehouse.open-bars-files"
# A restarted job looks this many snapshots back for the newest bars commit (folds, maintenance and
# deletes commit in between); past it, the open-bars files count as unknown.
HISTORY_SEARCHED = 500
MAX_PRUNING_SYMBOLS = 64
MISSING_FILES = "Missing required files to delete"
# How long a batch's commit keeps retrying races lost to other writers before the stream fails: a
# compaction that ignores the open bars (an operator's, every few seconds) can win several in a row.
COMMIT_PATIENCE_SECONDS = 120.0


@dataclass(frozen=True)
class BarsCommitRecord:
    """What a bars commit wrote in its snapshot summary."""

    batch_id: int
    run_id: str  # the checkpoint's (BarsProgressLog.run_id)
    open_files: frozenset[str]


def commit_summary(batch_id: int, run_id: str, open_files: Iterable[str]) -> dict[str, str]:
    return {
        BATCH_PROPERTY: str(batch_id),
        RUN_PROPERTY: run_id,
        OPEN_FILES_PROPERTY: ",".join(sorted(open_files)),
    }


def record_from_summary(summary: dict[str, str]) -> BarsCommitRecord | None:
    """The ``BarsCommitRecord`` of a snapshot summary, None for a snapshot the bars stream did not write."""
    if BATCH_PROPERTY not in summary:
        return None
    files = summary.get(OPEN_FILES_PROPERTY, "")
    return BarsCommitRecord(int(summary[BATCH_PROPERTY]), summary.get(RUN_PROPERTY, ""),
                            frozenset(f for f in files.split(",") if f))


def last_bars_commit(java_table, snapshot) -> BarsCommitRecord | None:
    """The newest bars commit at or before ``snapshot`` (a Java snapshot), walking its parents."""
    for _ in range(HISTORY_SEARCHED):
        if snapshot is None:
            return None
        record = record_from_summary(dict(snapshot.summary()))
        if record is not None:
            return record
        parent = snapshot.parentId()
        snapshot = None if parent is None else java_table.snapshot(parent)
    return None


def open_bars_files(java_table, snapshot) -> set[str]:
    """The open-bars files at ``snapshot``: what the fold of ``bars_1m`` must leave alone."""
    record = last_bars_commit(java_table, snapshot)
    return set(record.open_files) if record else set()


class BarsCommitter:
    """Writes a batch's bars to ``bars_1m`` in one commit (see the module docstring). Keeps, between
    batches, the open-bars files it committed last (Java ``DataFile`` objects), so a steady batch
    reads no table metadata but the current snapshot."""

    def __init__(self, spark: SparkSession, table_name: str, run_id: str) -> None:
        self.spark = spark
        self.table_name = table_name
        self.run_id = run_id
        self.open_files: list | None = None  # None: not known in this process yet
        self.append_spec: int | None = None  # the table's day-only spec, read once

    def commit(
        self,
        batch_id: int,
        open_rows: DataFrame,
        closed_rows: DataFrame | None,
        stored_elsewhere: Sequence[BarKey],
        replaced: Sequence[BarKey],
    ) -> bool:
        """Replace the open-bars files with ``open_rows``, append ``closed_rows``; False when this
        batch had committed already (a replay). ``stored_elsewhere``: bars about to be written that
        may have rows outside the open-bars files; ``replaced``: every bar the open-bars files are
        expected to hold (deleted by key instead when those files are gone)."""
        table = iceberg_table(self.spark, self.table_name)
        table.refresh()
        snapshot = table.currentSnapshot()
        if self.open_files is None:
            record = last_bars_commit(table, snapshot)
            if record and record.run_id == self.run_id:
                self.open_files = self._live_files(table, snapshot, record.open_files)
                if record.batch_id >= batch_id:
                    log.info("batch %d: committed before the restart, not again", batch_id)
                    return False
        to_delete = list(stored_elsewhere)
        if self.open_files is None:  # where the open bars are is not known: delete them by key
            to_delete += replaced
        if to_delete and _holds_rows(snapshot):
            _retry_races(lambda: self._delete_bars(to_delete), f"{self.table_name} batch {batch_id} delete")
            table.refresh()
            snapshot = table.currentSnapshot()
        new_open = self._write(table, open_rows)
        new_closed = self._write(table, closed_rows) if closed_rows is not None else []
        self._commit_retrying(table, snapshot, batch_id, new_open, new_closed, replaced)
        self.open_files = new_open
        return True

    def _commit_retrying(self, table, snapshot, batch_id: int, new_open: list, new_closed: list,
                         replaced: Sequence[BarKey]) -> None:
        """Commit the written files, replacing the open-bars files; again after a backoff while
        another writer's commit (maintenance, a fold, a rebuild) wins the race. Where the open-bars
        files themselves were rewritten (compaction or a rebuild of a day the job still held open
        bars of, as a replay of history does), their bars are deleted by key instead: a MERGE that
        may meet a conflict in turn, and is safe to repeat."""
        added = new_open + new_closed
        by_key, base = False, snapshot  # the first attempt validates from the batch's own snapshot

        def attempt() -> None:
            nonlocal by_key, base
            if not by_key:
                try:
                    self._commit(table, base, self.open_files or [], added, batch_id, new_open)
                    return
                except Exception as error:
                    if MISSING_FILES not in str(error):
                        table.refresh()
                        base = table.currentSnapshot()
                        raise
                    log.warning("batch %d: the open-bars files were rewritten by another commit; replacing "
                                "their bars by key", batch_id)
                    by_key = True
            self._delete_bars(list(replaced))
            table.refresh()
            self._commit(table, table.currentSnapshot(), [], added, batch_id, new_open)

        _retry_races(attempt, f"{self.table_name} batch {batch_id}")

    def _commit(self, table, snapshot, delete: list, add: list, batch_id: int, open_files: list) -> None:
        overwrite = table.newOverwrite()
        for data_file in delete:
            overwrite.deleteFile(data_file)
        for data_file in add:
            overwrite.addFile(data_file)
        if snapshot is not None:
            overwrite.validateFromSnapshot(snapshot.snapshotId())
        overwrite.validateNoConflictingDeletes()  # and fail if a file to delete is gone
        paths = [str(f.location()) for f in open_files]
        for key, value in commit_summary(batch_id, self.run_id, paths).items():
            overwrite.set(key, value)
        overwrite.commit()

    def _write(self, table, rows: DataFrame) -> list:
        """Write ``rows`` as data files of the append spec without committing them; their Java
        ``DataFile`` objects."""
        with staged_write(self.spark, table, "bars") as group:
            (
                rows.coalesce(1).sortWithinPartitions("window_start", "symbol").write.format("iceberg")
                .option("rewritten-file-scan-task-set-id", group)
                .option("distribution-mode", "none")
                .option("fanout-enabled", "true")  # a batch's few days, one open file each
                .option("output-spec-id", str(self._append_spec(table)))
                .mode("append")
                .save(group)
            )
            return written_files(self.spark, table, group)

    def _append_spec(self, table) -> int:
        if self.append_spec is None:
            self.append_spec = append_spec_of(table, BARS_1M)
        return self.append_spec

    def _live_files(self, table, snapshot, paths: Iterable[str]) -> list | None:
        """The ``DataFile`` objects of ``paths`` (open-bars files) at ``snapshot``; None unless all
        are there."""
        wanted = set(paths)
        if not wanted:
            return []
        if snapshot is None:
            return None
        found = [task.file() for task in appended_file_tasks(
            self.spark, self.table_name, BARS_1M, table, snapshot.snapshotId(), self._append_spec(table))
            if str(task.file().location()) in wanted]
        return found if len(found) == len(wanted) else None

    def _delete_bars(self, keys: Sequence[BarKey]) -> None:
        """Delete the rows of ``keys`` wherever they are: a MERGE ... DELETE bounded, as the table's
        partitions allow, to their symbols and days."""
        if not keys:
            return
        unique = sorted(set(keys))
        view = f"bars_deleted_{uuid.uuid4().hex}"
        self.spark.createDataFrame(unique, "symbol string, window_start_us bigint").selectExpr(
            "symbol", "timestamp_micros(window_start_us) AS window_start"
        ).createOrReplaceTempView(view)
        symbols = sorted({symbol for symbol, _ in unique})
        # A list of symbols prunes the target's files; thousands of them (a first batch over a whole
        # market) cost the planner more than the few days' files they would prune.
        in_symbols = "" if len(symbols) > MAX_PRUNING_SYMBOLS else (
            "AND t.symbol IN (" + ", ".join(f"'{symbol}'" for symbol in symbols) + ") ")
        day_us = bars.INTERVAL_SECONDS["1d"] * 1_000_000
        earliest = min(start for _, start in unique) // day_us * day_us
        try:
            self.spark.sql(
                f"MERGE INTO {self.table_name} t USING {view} s "
                "ON t.symbol = s.symbol AND t.window_start = s.window_start "
                f"{in_symbols}AND t.window_start >= timestamp_micros({earliest}) "
                "WHEN MATCHED THEN DELETE"
            )
        finally:
            self.spark.catalog.dropTempView(view)


def _retry_races(write: Callable[[], None], what: str) -> None:
    """Run ``write`` (idempotent), again while it loses races to other writers' commits, for at least
    ``COMMIT_PATIENCE_SECONDS``."""
    with_commit_retry(write, what, retried=COMMIT_CONFLICT_MARKERS, patience_seconds=COMMIT_PATIENCE_SECONDS)


def _holds_rows(snapshot) -> bool:
    """Whether the table at ``snapshot`` (Java) holds any row: a new table's first batch has nothing
    to delete, and skips the MERGE that would find nothing."""
    if snapshot is None:
        return False
    return int(dict(snapshot.summary()).get("total-records", "1")) > 0
