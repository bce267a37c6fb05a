"""The verdicts of ``lakehouse status``: pure functions from observed state to OK / STALE.

Nothing here touches Kafka, the catalog or the disk (``lakehouse.ops.status_probe`` gathers the
state); ``now`` is passed in, so every verdict is a function of its inputs and tested as such.

Rules:
* a table of ``status.fresh_tables`` is stale when its newest event time is older than
  ``max_event_age_seconds`` (age = now minus the newest event time the table holds), when it
  holds none, or when that time is more than ``MAX_CLOCK_SKEW_SECONDS`` ahead of now (a
  future-dated row hides the table's real age);
* a job reading a Kafka topic is behind when the messages between its committed position and the
  topic's end offsets exceed ``max_kafka_lag_messages``;
* maintenance and the sync are stale when their last recorded success is older than their
  threshold, or was never recorded;
* a part that could not be observed (broker or catalog unreachable, a job's record unreadable) is
  stale: status that cannot look must not say all is well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from lakehouse.kafka_loss import lost_ranges
from lakehouse.settings import StatusSettings

# How far ahead of now a newest event time may be (clock skew between a source and this host) before
# it is taken for a future-dated row: such a row would make its table's age negative, "fresh" forever.
MAX_CLOCK_SKEW_SECONDS = 300.0


class Verdict(StrEnum):
    OK = "ok"
    STALE = "STALE"
    INFO = "-"  # shown, not judged (threshold 0, or a table not in fresh_tables)


@dataclass(frozen=True)
class TableState:
    name: str
    newest_event_time: datetime | None  # UTC; None when the table holds no rows
    event_column: str
    snapshot_count: int
    data_file_count: int
    small_file_count: int


@dataclass(frozen=True)
class JobPosition:
    """Where a streaming job stands on one topic: the offsets of its newest committed micro-batch
    (from its checkpoint), partition -> next offset to read."""

    job: str
    topic: str
    batch_id: int
    committed_offsets: Mapping[int, int]


@dataclass(frozen=True)
class TopicState:
    topic: str
    end_offsets: Mapping[int, int]  # partition -> offset after the last message
    positions: tuple[JobPosition, ...] = ()
    earliest_offsets: Mapping[int, int] | None = None  # partition -> oldest offset Kafka holds; None: not known


@dataclass(frozen=True)
class Observation:
    """Everything status looked at, and what it could not look at (part -> error text)."""

    tables: tuple[TableState, ...]
    topics: tuple[TopicState, ...]
    last_runs: Mapping[str, datetime | None]  # batch job -> its last recorded success (UTC)
    unreachable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    part: str  # "table trades", "topic market.trades / raw_trades", "job maintenance", "kafka"
    verdict: Verdict
    detail: str


def lag_messages(end_offsets: Mapping[int, int], committed: Mapping[int, int]) -> int:
    """Messages on the topic the job has not committed yet. A partition absent from the job's
    checkpoint (added after it started) counts from offset 0."""
    return sum(max(end - committed.get(partition, 0), 0) for partition, end in end_offsets.items())


def format_age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7_200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172_800:
        return f"{seconds / 3_600:.1f}h"
    return f"{seconds / 86_400:.1f}d"


def _over(age_seconds: float, threshold_seconds: float) -> Verdict:
    if threshold_seconds <= 0:
        return Verdict.INFO
    return Verdict.STALE if age_seconds > threshold_seconds else Verdict.OK


def table_finding(table: TableState, now: datetime, thresholds: StatusSettings) -> Finding:
    judged = table.name in thresholds.fresh_tables and thresholds.max_event_age_seconds > 0
    files = f"{table.snapshot_count} snapshots, {table.data_file_count} files ({table.small_file_count} small)"
    if table.newest_event_time is None:
        return Finding(f"table {table.name}", Verdict.STALE if judged else Verdict.INFO, f"no rows; {files}")
    age = (now - table.newest_event_time).total_seconds()
    newest = table.newest_event_time.strftime("%Y-%m-%d %H:%M:%SZ")
    if -age > MAX_CLOCK_SKEW_SECONDS:
        return Finding(f"table {table.name}", Verdict.STALE if judged else Verdict.INFO,
                       f"newest {table.event_column} {newest} is in the future: its age cannot be judged "
                       f"(a future-dated row); {files}")
    verdict = _over(age, thresholds.max_event_age_seconds) if judged else Verdict.INFO
    detail = f"newest {table.event_column} {newest} (age {format_age(age)}); {files}"
    return Finding(f"table {table.name}", verdict, detail)


def topic_findings(topic: TopicState, thresholds: StatusSettings) -> list[Finding]:
    end_total = sum(topic.end_offsets.values())
    if not topic.end_offsets and not topic.positions:
        return [Finding(f"topic {topic.topic}", Verdict.INFO, "no such topic on the broker")]
    if not topic.positions:
        return [Finding(f"topic {topic.topic}", Verdict.INFO,
                        f"{end_total} messages in {len(topic.end_offsets)} partitions; no job's checkpoint reads it")]
    findings = []
    for position in topic.positions:
        if topic.earliest_offsets is not None and (lost := lost_ranges(
                topic.topic, dict(position.committed_offsets), dict(topic.earliest_offsets),
                dict(topic.end_offsets))):
            findings.append(Finding(
                f"topic {topic.topic} / {position.job}", Verdict.STALE,
                "Kafka deleted messages this job had not read: " + "; ".join(r.describe() for r in lost)
                + "; its next start stops and names them (docs/operations.md, messages Kafka deleted)"))
            continue
        lag = lag_messages(topic.end_offsets, position.committed_offsets)
        if thresholds.max_kafka_lag_messages <= 0:
            verdict = Verdict.INFO
        else:
            verdict = Verdict.STALE if lag > thresholds.max_kafka_lag_messages else Verdict.OK
        findings.append(Finding(
            f"topic {topic.topic} / {position.job}", verdict,
            f"end {end_total}, committed {sum(position.committed_offsets.values())} (batch {position.batch_id}), "
            f"lag {lag} msgs",
        ))
    return findings


def run_finding(job: str, finished: datetime | None, threshold_seconds: float, now: datetime) -> Finding:
    if finished is None:
        verdict = Verdict.STALE if threshold_seconds > 0 else Verdict.INFO
        return Finding(f"job {job}", verdict, "no successful run recorded")
    age = (now - finished).total_seconds()
    return Finding(f"job {job}", _over(age, threshold_seconds),
                   f"last success {finished.strftime('%Y-%m-%d %H:%M:%SZ')} ({format_age(age)} ago)")


def assess(observation: Observation, now: datetime, thresholds: StatusSettings,
           run_thresholds_seconds: Mapping[str, float]) -> list[Finding]:
    """Every finding, in screen order: unreachable parts, tables, topics, batch jobs."""
    findings = [Finding(part, Verdict.STALE, f"unreachable: {error}")
                for part, error in sorted(observation.unreachable.items())]
    findings += [table_finding(t, now, thresholds) for t in observation.tables]
    for topic in observation.topics:
        findings += topic_findings(topic, thresholds)
    findings += [run_finding(job, observation.last_runs.get(job), threshold, now)
                 for job, threshold in run_thresholds_seconds.items()
                 if f"job {job}" not in observation.unreachable]  # already shown, as unreadable
    return findings


def exit_code(findings: Sequence[Finding]) -> int:
    """0 when nothing is stale, 1 otherwise (what cron or a load balancer's health check reads)."""
    return 1 if any(f.verdict is Verdict.STALE for f in findings) else 0


def render(findings: Sequence[Finding], now: datetime) -> str:
    """One screen: a line per part, verdict first, then a summary line."""
    width = max((len(f.part) for f in findings), default=10)
    stale = sum(f.verdict is Verdict.STALE for f in findings)
    lines = [f"lakehouse status at {now.strftime('%Y-%m-%d %H:%M:%SZ')}"]
    lines += [f"  {f.verdict.value:<5}  {f.part:<{width}}  {f.detail}" for f in findings]
    lines.append(f"{stale} stale" if stale else "all fresh")
    return "\n".join(lines)
