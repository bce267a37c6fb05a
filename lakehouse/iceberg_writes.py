"""Exactly-once appends from Spark micro-batches into Iceberg.

``foreachBatch`` is at-least-once: after a crash Spark replays the last micro-batch. Each append
here carries a snapshot property naming the writer and the batch; a replayed batch whose commit
already landed is recognised from the table's snapshot summaries and skipped. The writer id is a
UUID kept next to the streaming checkpoint, so a new checkpoint (batch ids restart at 0) is a new
writer and never mistaken for an old one.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH_PROPERTY = "lakehouse.batch"
# SQLite (the embedded catalog) lets one connection write at a time. Iceberg's JDBC catalog reports
# a commit that lost that race as an SQL error rather than a retryable commit conflict.
CATALOG_BUSY_MARKERS = ("SQLITE_BUSY", "database is locked")
# Another writer committed first: Iceberg's validation failures (an input file is gone, or files were
# added where this write must see none) and commit failures past Iceberg's own retries.
COMMIT_CONFLICT_MARKERS = (
    "ValidationException",
    "CommitFailedException",
    "CommitStateUnknownException",
    "Cannot commit",
    # A copy-on-write MERGE whose table another writer changed between its scan and its file filtering.
    "the table has been concurrently modified",
    *CATALOG_BUSY_MARKERS,
)
COMMIT_ATTEMPTS = 8
# How many recent snapshots to search for a replayed batch: a replay is always of the last batch,
# so its commit, if any, is among the newest few.
RECENT_SNAPSHOTS = 50


def writer_id(checkpoint_dir: str) -> str:
    """The stable id of the writer that owns ``checkpoint_dir`` (created on first use)."""
    if "://" in checkpoint_dir and not checkpoint_dir.startswith("file:"):
        # Remote checkpoints (gs://, hdfs://): derive a stable id from the location itself.
        return uuid.uuid5(uuid.NAMESPACE_URL, checkpoint_dir).hex
    path = Path(checkpoint_dir.removeprefix("file:")) / "lakehouse-writer-id"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(uuid.uuid4().hex)
    return path.read_text().strip()


def batch_marker(writer: str, batch_id: int) -> str:
    return f"{writer}:{batch_id}"


def batch_committed(spark: SparkSession, table_name: str, marker: str) -> bool:
    rows = spark.sql(
        f"SELECT summary['{BATCH_PROPERTY}'] AS marker FROM {table_name}.snapshots "
        f"ORDER BY committed_at DESC LIMIT {RECENT_SNAPSHOTS}"
    ).collect()
    return any(row.marker == marker for row in rows)


def with_commit_retry(
    write: Callable[[], T], what: str, attempts: int = COMMIT_ATTEMPTS,
    retried: Sequence[str] = CATALOG_BUSY_MARKERS, patience_seconds: float = 0.0,
) -> T:
    """Run an idempotent write, retrying (with jittered backoff) the errors named in ``retried``.

    Only safe for idempotent writes (``append_once``, MERGE upserts): a write whose commit failed
    left no snapshot, and a retried one that had committed is recognised and skipped. ``retried``:
    the error texts that make a write worth another try (by default, a busy catalog). It gives up
    after ``attempts`` tries, or, with ``patience_seconds``, once that long has passed since the
    first try as well: a write that loses races to a writer committing every few seconds (a
    compaction on a short schedule) wins one when it gets enough tries, and a slow machine, where
    each try takes longer, gets as many seconds, not fewer chances.
    """
    started = time.monotonic()
    limit = f"{attempts}" if not patience_seconds else f"{attempts}, or {patience_seconds:g} s"
    attempt = 0
    while True:
        attempt += 1
        try:
            return write()
        except Exception as error:  # Py4JJavaError carries the Java exception text
            patient = time.monotonic() - started < patience_seconds
            if (attempt >= attempts and not patient) or not any(m in str(error) for m in retried):
                raise
            pause = min(8.0, 0.25 * 2 ** (min(attempt, attempts) - 1)) * (0.5 + random.random())
            log.warning("commit of %s refused (attempt %s/%s); retrying in %.1f s: %s",
                        what, attempt, limit, pause, str(error).splitlines()[0][:200])
            time.sleep(pause)


def append_once(
    frame: DataFrame,
    table_name: str,
    marker: str,
    options: Mapping[str, str] | None = None,
    known_uncommitted: bool = False,
) -> bool:
    """Append ``frame`` unless a commit with ``marker`` exists; True when it appended.

    ``known_uncommitted``: the caller knows no commit carries ``marker`` (a writer that has already
    checked for a replay in this process), so the first attempt skips the snapshot query, one
    Spark job per micro-batch. A retry after a busy catalog always checks.
    """
    attempts = 0

    def append() -> bool:
        nonlocal attempts
        attempts += 1
        if not (known_uncommitted and attempts == 1) and batch_committed(frame.sparkSession, table_name, marker):
            return False
        writer = frame.writeTo(table_name).option(f"snapshot-property.{BATCH_PROPERTY}", marker)
        for key, value in (options or {}).items():
            writer = writer.option(key, value)
        writer.append()
        return True

    return with_commit_retry(append, table_name)
