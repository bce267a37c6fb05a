"""What a batch job records when a run succeeds, read back by ``lakehouse status``.

Maintenance and the BigQuery sync do not leave a mark of their own that is cheap to find (expiring
snapshots commits nothing; an unchanged sync touches nothing), so each successful run writes one
small file, ``<state_dir>/ops/<job>.prom``, in Prometheus' text format: the same file is the
record ``lakehouse status`` reads and what node_exporter's textfile collector exports, so a job run
from cron or Airflow (which no scraper can catch while it runs) is still seen by Prometheus.

The file is replaced atomically (write, then rename), so a reader never sees half a record.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# Per-job names rather than a ``job`` label: Prometheus sets ``job`` itself from its scrape config.
LAST_SUCCESS = "last_success_timestamp_seconds"
LAST_DURATION = "last_success_duration_seconds"
_COUNT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class JobRun:
    """One successful run: when it finished (UTC), how long it took, and what it did (counts
    named in the job's words, e.g. ``files_rewritten``, ``snapshots_expired``, ``tables_updated``)."""

    job: str
    finished_time: datetime
    duration_seconds: float
    counts: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.finished_time.tzinfo is None:
            raise ValueError("finished_time must be timezone-aware (UTC)")
        for name in (self.job, *self.counts):
            if not _COUNT_NAME.match(name):
                raise ValueError(f"{name!r} is not a metric-name word (lower case, digits, underscores)")


def runs_dir(state_dir: Path) -> Path:
    return state_dir / "ops"


def count_metric(job: str, count: str) -> str:
    """``lakehouse_maintenance_files_rewritten``: a gauge, the count of the last successful run."""
    return f"lakehouse_{job}_{count}"


def sample_value(value: float) -> str:
    """A sample's text that reads back as the same number: whole counts as integers, others as the
    shortest exact ``repr`` (``{:g}`` kept six digits: 98765432 files became 9.87654e+07)."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def render(run: JobRun) -> str:
    """The Prometheus text exposition of ``run`` (gauges: each value is the last run's)."""
    success, duration = count_metric(run.job, LAST_SUCCESS), count_metric(run.job, LAST_DURATION)
    lines = [
        f"# HELP {success} When the job last finished a run successfully (Unix time).",
        f"# TYPE {success} gauge",
        f"{success} {run.finished_time.timestamp():.3f}",
        f"# HELP {duration} How long the job's last successful run took.",
        f"# TYPE {duration} gauge",
        f"{duration} {run.duration_seconds:.3f}",
    ]
    for count, value in sorted(run.counts.items()):
        name = count_metric(run.job, count)
        lines += [
            f"# HELP {name} {count.replace('_', ' ')} by the last successful run.",
            f"# TYPE {name} gauge",
            f"{name} {sample_value(value)}",
        ]
    return "\n".join(lines) + "\n"


def parse(job: str, text: str) -> JobRun | None:
    """Read back what ``render`` wrote (None when the file holds no success time)."""
    from prometheus_client.parser import text_string_to_metric_families

    finished: float | None = None
    duration = 0.0
    counts: dict[str, float] = {}
    prefix = f"lakehouse_{job}_"
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == count_metric(job, LAST_SUCCESS):
                finished = sample.value
            elif sample.name == count_metric(job, LAST_DURATION):
                duration = sample.value
            elif sample.name.startswith(prefix):
                counts[sample.name[len(prefix):]] = sample.value
    if finished is None:
        return None
    return JobRun(job, datetime.fromtimestamp(finished, UTC), duration, counts)


def record_success(state_dir: Path, run: JobRun) -> Path:
    """Write ``run`` as the job's record, atomically; returns the file."""
    directory = runs_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{run.job}.prom"
    partial = directory / f".{run.job}.prom.{os.getpid()}"
    partial.write_text(render(run))
    partial.replace(target)
    return target


class UnreadableRecord(ValueError):
    """A job's record exists but cannot be read back (not UTF-8, not Prometheus text, a bad value)."""


def last_success(state_dir: Path, job: str) -> JobRun | None:
    """The job's last recorded successful run, or None if it never recorded one here; a record that
    is there but unreadable raises ``UnreadableRecord`` naming the file (status shows it STALE)."""
    path = runs_dir(state_dir) / f"{job}.prom"
    try:
        return parse(job, path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, ValueError, OverflowError, OSError) as error:
        raise UnreadableRecord(f"{path}: {type(error).__name__}: {error}") from None


Sample = tuple[str, Mapping[str, str], float]  # metric name, labels, value


def sample_families(samples: Iterable[Sample]) -> list:  # -> list[prometheus_client.Metric]
    """Prometheus families of ``samples``: counters for ``*_total`` names, gauges otherwise."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
    for name, labels, value in samples:
        if name not in families:
            kind = CounterMetricFamily if name.endswith("_total") else GaugeMetricFamily
            families[name] = kind(name, name.replace("_", " "), labels=sorted(labels))
        families[name].add_metric([labels[key] for key in sorted(labels)], value)
    return list(families.values())


def serve_job_metrics(
    port: int, state_dir: Path, job: str, live_samples: Callable[[], Iterable[Sample]] | None = None,
    *, setting: str | None = None,
) -> Callable[[], None] | None:
    """For a job run with ``--interval``: serve its record on 127.0.0.1:``port`` (0: not at all),
    read from the file at every scrape, so the endpoint and the file never disagree, and what
    ``live_samples`` returns at that scrape (the process's own counters). ``setting``: as for
    ``serve_metrics``."""
    if not port:
        return None
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from lakehouse.ops.metrics_http import serve_metrics

    class RecordCollector:
        def collect(self):
            path = runs_dir(state_dir) / f"{job}.prom"
            if path.exists():
                yield from text_string_to_metric_families(path.read_text())
            if live_samples is not None:
                yield from sample_families(live_samples())

    registry = CollectorRegistry()
    registry.register(RecordCollector())
    return serve_metrics(port, job, registry, setting=setting)
