"""The I/O of ``lakehouse status``: look at the catalog, Kafka, the streaming checkpoints and the
batch jobs' records, and return an ``Observation`` for the pure verdicts in ``lakehouse.ops.status``.

Where each fact comes from, and why:
* newest event time per table: the upper bound of the table's event column in the current
  snapshot's data-file statistics (manifests only, no data file is read, so status stays cheap on a
  big table). The event column is the one the table's time partition is on, else its first
  timestamp column;
* snapshot count: the table metadata; small files: current data files below ``small_file_bytes``;
* Kafka end offsets: the broker (``ListOffsets``, latest);
* a streaming job's position: Structured Streaming keeps its Kafka positions in its checkpoint, not
  in a consumer group. ``offsets/<n>`` holds the end offsets of micro-batch n and ``commits/<n>``
  appears when that batch's output is committed, so the newest batch with both is what the job has
  really written;
* maintenance and sync: the records of ``lakehouse.ops.job_runs``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from lakehouse.catalog import live_files, load_catalog, missing_embedded_catalog, table_identifier
from lakehouse.kafka_loss import kafka_offsets_of, offset_bounds
from lakehouse.logs import error_line
from lakehouse.ops import job_runs
from lakehouse.ops.status import JobPosition, Observation, TableState, TopicState
from lakehouse.settings import Settings
from lakehouse.tables import ALL_TABLES, EVENT_TIME_COLUMN, TableDef

BATCH_JOBS = ("maintenance", "bigquery_sync")
_TIME_PARTITION = re.compile(r"^(?:years|months|days|hours|hour|day|month|year)\((\w+)\)$")


def event_column(table: TableDef) -> str:
    """The column whose newest value is the table's event time: ``EVENT_TIME_COLUMN`` (the reader's
    definition of age), else the time partition's column, else the first timestamp column."""
    if table.name in EVENT_TIME_COLUMN:
        return EVENT_TIME_COLUMN[table.name]
    for transform in table.partition_by:
        if match := _TIME_PARTITION.match(transform.replace(" ", "")):
            return match.group(1)
    from pyiceberg.types import TimestamptzType

    for column in table.schema.fields:
        if isinstance(column.field_type, TimestamptzType):
            return column.name
    raise ValueError(f"table {table.name} has no timestamp column")


def table_state(settings: Settings, catalog, table: TableDef) -> TableState:
    iceberg_table = catalog.load_table(table_identifier(settings, table))
    column = event_column(table)
    snapshots = len(iceberg_table.metadata.snapshots)
    if iceberg_table.current_snapshot() is None:
        return TableState(table.name, None, column, snapshots, 0, 0)
    files = live_files(iceberg_table).select(["content", "file_size_in_bytes", "readable_metrics"]).to_pylist()
    data_files = [f for f in files if f["content"] == 0]
    bounds = [f["readable_metrics"][column]["upper_bound"] for f in data_files
              if f["readable_metrics"] and f["readable_metrics"].get(column)]
    newest = max((b for b in bounds if b is not None), default=None)
    small = sum(f["file_size_in_bytes"] < settings.status.small_file_bytes for f in data_files)
    return TableState(table.name, newest, column, snapshots, len(data_files), small)


def _batch_ids(directory: Path) -> set[int]:
    if not directory.is_dir():
        return set()
    return {int(p.name) for p in directory.iterdir() if p.name.isdigit()}


def job_positions(checkpoint_root: Path) -> list[JobPosition]:
    """Each job's committed Kafka position, from every checkpoint directory under ``checkpoint_root``."""
    positions = []
    if not checkpoint_root.is_dir():
        return positions
    for job_dir in sorted(p for p in checkpoint_root.iterdir() if p.is_dir()):
        committed = _batch_ids(job_dir / "offsets") & _batch_ids(job_dir / "commits")
        if not committed:
            continue
        batch = max(committed)
        offsets = kafka_offsets_of((job_dir / "offsets" / str(batch)).read_text())
        positions += [JobPosition(job_dir.name, topic, batch, parts) for topic, parts in offsets.items()]
    return positions


def end_offsets(settings: Settings, topics: Iterable[str],
                timeout_seconds: float | None = None) -> dict[str, dict[int, int]]:
    """topic -> partition -> end offset, from the broker (a topic it does not have: no partitions).
    ``timeout_seconds`` defaults to ``status.kafka_timeout_seconds``."""
    bounds = offset_bounds(settings, topics, timeout_seconds or settings.status.kafka_timeout_seconds)
    return {topic: latest for topic, (_, latest) in bounds.items()}


def project_topics(settings: Settings) -> list[str]:
    k = settings.kafka
    return [k.trades_topic, k.vendor_bars_topic, k.feed_events_topic, k.quarantine_topic]


def observe(settings: Settings, tables: tuple[TableDef, ...] = ALL_TABLES) -> Observation:
    """Look at every part; a part that cannot be reached is recorded as such, never raised."""
    unreachable: dict[str, str] = {}
    table_states = []
    missing = missing_embedded_catalog(settings)
    if missing:
        unreachable["catalog"] = missing
    else:
        try:
            catalog = load_catalog(settings)
            for table in tables:
                try:
                    table_states.append(table_state(settings, catalog, table))
                except Exception as error:  # a missing or unreadable table is a finding, not a crash
                    unreachable[f"table {table.name}"] = error_line(error)
        except Exception as error:
            unreachable["catalog"] = error_line(error)
    positions = job_positions(settings.path(settings.streaming.checkpoint_dir))
    topic_names = list(dict.fromkeys([*project_topics(settings), *(p.topic for p in positions)]))
    topic_states = []
    try:
        bounds = offset_bounds(settings, topic_names, settings.status.kafka_timeout_seconds)
        topic_states = [
            TopicState(topic, bounds.get(topic, ({}, {}))[1], tuple(p for p in positions if p.topic == topic),
                       bounds.get(topic, ({}, {}))[0])
            for topic in topic_names
        ]
    except Exception as error:
        unreachable["kafka"] = error_line(error)
    runs = {}
    for job in BATCH_JOBS:
        try:
            run = job_runs.last_success(settings.state_dir, job)
        except job_runs.UnreadableRecord as error:
            unreachable[f"job {job}"] = f"record unreadable: {error}"
            continue
        runs[job] = run.finished_time if run else None
    return Observation(tuple(table_states), tuple(topic_states), runs, unreachable)
