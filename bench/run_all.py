"""``make bench``: run every benchmark (each in its own process) and rewrite BENCHMARKS.md.

Each benchmark prints ``label: figures`` lines, one of them ``ratio: ...`` (the result against its
target) and one ``machine: ...``; this file turns them into a results-only report: the machine, the
method, one summary row per benchmark, one short table per benchmark. Log lines and anything else a
benchmark prints stay on the terminal. Why the code is as it is lives in docs/performance.md.

A full run's figures are kept per benchmark in ``bench/results/<name>.json`` and BENCHMARKS.md is
rendered from all of them, so ``--only`` re-runs one benchmark without losing the others' rows.
``--quick`` runs (small sizes, a smoke test) are neither kept nor written to BENCHMARKS.md.

    .venv/bin/python -m bench.run_all [--only raw_trades,freshness] [--quick] [--render-only]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import describe_machine
from lakehouse.settings import PROJECT_ROOT

METHOD = (
    "Each benchmark is a separate process that starts its own Kafka broker and throw-away catalog "
    "and warehouse, and compares two things in the same run (the code against a baseline or an "
    "engine's ceiling), so that the ratio holds even when the machine's speed does not. Spark runs "
    "`local[2]` with the project's settings; streaming figures are taken in steady state, after a "
    "warm-up that lets the JIT compile Spark. The machine is shared: the load average (1/5 min) "
    "beside a figure says how busy it was, and at a load above 2 on 2 cores every Spark figure is "
    "pessimistic. Re-run all with `make bench`, one with `.venv/bin/python -m bench.<module>`; "
    "why the code is as it is: [docs/performance.md](docs/performance.md)."
)
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"


@dataclass
class Benchmark:
    name: str
    module: str
    what: str
    target: str
    args: list[str] = field(default_factory=list)
    quick_args: list[str] = field(default_factory=list)
    # A benchmark that prints a Markdown table of its own (one row per point): its section is that
    # table, beside only the ``label: figures`` rows named here (the per-point lines stay on the terminal).
    table_with: tuple[str, ...] | None = None


BENCHMARKS = [
    Benchmark("producer", "bench.bench_producer",
              "Messages/s into a local broker: the shared KafkaSink vs a flush-per-message producer.",
              "KafkaSink >= 20x flush-per-message", quick_args=["--messages", "50000", "--naive-messages", "2000"]),
    Benchmark("raw_trades", "bench.bench_raw_trades",
              "Raw-trades job (Kafka -> parse -> dedupe -> Iceberg, local[2]) vs the engine ceiling "
              "(rate -> JSON -> from_json -> Parquet by 50 symbols) in the same run; offered rates.",
              ">= 100,000 trades/s sustained",
              quick_args=["--messages", "400000", "--batch-sizes", "100000,200000", "--ceiling-batch", "300000",
                          "--ceiling-batches", "3", "--offered-rates", "10000,40000", "--offered-batches", "3"]),
    Benchmark("freshness", "bench.bench_freshness",
              "Event time -> trade readable in `trades`; window end -> final bar readable in `bars_1m`, "
              "raw + bars queries in one session, 5,000 trades/s over 50 symbols, live event times; steady state "
              "after a 5-minute warm-up (the JIT compiling Spark).",
              "trade p50 <= 2 s, p99 <= 4 s; bar <= bars trigger + lateness + 2 s",
              quick_args=["--seconds", "80", "--warmup", "30"]),
    Benchmark("symbols", "bench.bench_symbols",
              "The cost curve in the number of symbols (Zipf activity, exponent 1.1, the same 1.5M trades per "
              "point): raw-trades throughput (appending, and with the fold into day-symbol files counted in), "
              "files and commit time per commit, metadata after an hour, maintenance, symbol-day read vs full "
              "scan, and freshness at 5,000 trades/s.",
              "at 2,000 symbols: throughput >= 0.8 of 50 symbols' and >= 0.4 of the ceiling; trade p50 <= 2 s, "
              "p99 <= 4 s; <= 2 files per partition after maintenance; symbol-day read >= 20x a full scan",
              args=["--freshness-seconds", "240", "--freshness-warmup", "120"], table_with=("data",),
              quick_args=["--symbols", "50,500,2000", "--messages", "200000", "--batch", "50000",
                          "--freshness-seconds", "0"]),
    Benchmark("kafka_connect", "bench.bench_kafka_connect",
              "Our raw-trades job vs Apache Iceberg's Kafka Connect sink (iceberg-kafka-connect 1.10.1 in a "
              "distributed Connect worker, 2 tasks, exactly-once control topic), same broker, catalog, schema, "
              "partition spec and trades, one after the other: freshness of a live feed (sink at the smallest "
              "commit interval it sustains and at its default 300 s), a backlog drained, files and snapshots "
              "per hour, duplicates after a kill -9 of each.",
              "ahead on throughput and freshness at once (ours/sink > 1 and < 1), zero duplicates for both",
              quick_args=["--backlog", "100000", "--max-offsets", "50000", "--seconds", "40", "--warmup", "10",
                          "--default-seconds", "0", "--kill-backlog", "40000"]),
    Benchmark("file_cost", "bench.bench_file_cost",
              "A data file's fixed cost in the trades append by Parquet codec: the same rows into 50 and into "
              "2,000 symbol partitions, codecs alternating in one session.",
              "none: decides the streaming appends' codec (per-file cost against zstd's)",
              quick_args=["--rows", "10000", "--rounds", "2"]),
    Benchmark("backfill", "bench.bench_backfill",
              "1-minute bars for a day of trades from the raw table: the bars of `lakehouse.bars_rebuild` (Spark "
              "batch, `lakehouse.bars`) vs DuckDB over the same Parquet files.",
              "Spark within 2x of DuckDB", quick_args=["--trades", "1000000", "--repeats", "2"]),
    Benchmark("dashboard", "bench.bench_dashboard",
              "Live dashboard: commit of a 1-minute bar -> shown in headless Chromium (served page, default "
              "2 s poll, bars_1m with 3,600 snapshots of history); a poll and a re-render at 3,600 snapshots "
              "vs a fresh table.",
              "commit to page p99 <= 5 s; refresh cost at 3,600 snapshots within 2x of a fresh table",
              quick_args=["--commits", "8", "--snapshots", "1000"]),
    Benchmark("cluster", "bench.bench_cluster",
              "Raw-trades job on the Spark standalone cluster (master + 2 workers x 1 core, 3 Kafka brokers) "
              "vs local[2], same pre-loaded topic, same spark-submit.sh, only --master differs.",
              "none: shows what shipping tasks to other JVMs costs on one machine",
              quick_args=["--messages", "100000", "--batch", "25000"]),
    Benchmark("reads", "bench.bench_reads",
              "Single-symbol day of 1-minute bars vs full scan (reading API, pyiceberg); after compaction.",
              "single-symbol day >= 20x faster than a full scan", args=["--compact"]),
    Benchmark("maintenance", "bench.bench_maintenance",
              "Maintenance every 20 s beside the live raw-trades and bars queries (1,500 trades/s over 20 symbols, "
              "every 20th trade 30 s late) vs the same streams with maintenance off, phases alternating in one run.",
              "streams and maintenance both stay up; stored = distinct = sent; closed days compacted",
              quick_args=["--phase", "60", "--phases", "2", "--warmup", "30", "--closed-day-trades", "50000"]),
    Benchmark("metrics_cost", "bench.bench_metrics_cost",
              "Finnhub producer CPU per message with its Prometheus endpoint on (scraped every second) vs off; "
              "two producers side by side, same rate, one broker.",
              "metrics on <= 1.1x the CPU per message", quick_args=["--seconds", "20"]),
]


@dataclass
class Result:
    benchmark: Benchmark
    output: str
    seconds: float | None  # None: a run merged in whose duration was not recorded
    exit_code: int
    started: datetime


def run(benchmark: Benchmark, quick: bool) -> Result:
    command = [sys.executable, "-m", benchmark.module, *benchmark.args, *(benchmark.quick_args if quick else [])]
    print(f"== {benchmark.name}: {' '.join(command[1:])}", flush=True)
    started_at, started = datetime.now(UTC), time.monotonic()
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    print(done.stdout, done.stderr[-4000:] if done.returncode else "", sep="\n", flush=True)
    return Result(benchmark, done.stdout, time.monotonic() - started, done.returncode, started_at)


LOG_LEVELS = {"TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "SLF4J", "Caused"}


def figures(output: str) -> dict[str, str]:
    """The ``label: figures`` lines of a benchmark's stdout, in order. A figure line starts with a
    word and has figures after its colon; log lines (a level first, a Java class name, a timestamp)
    and section headings (``steady state:``, nothing after the colon) do not match."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        label, sep, value = line.partition(": ")
        label, value = label.strip(), " ".join(value.split())
        first_word = label.split(" ")[0]
        if (sep and value and label[:1].isalpha() and len(label) <= 80
                and first_word not in LOG_LEVELS and "." not in first_word and ":" not in first_word):
            found[label] = value
    return found


def markdown_table(output: str) -> list[str]:
    """The last Markdown table a benchmark printed (consecutive lines starting with ``|``)."""
    tables, current = [], []
    for line in [*output.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line.rstrip())
        elif current:
            tables.append(current)
            current = []
    return tables[-1] if tables else []


def section(result: Result, heading: str) -> list[str]:
    rows = {label: value for label, value in figures(result.output).items() if label not in ("machine", "ratio")}
    table = markdown_table(result.output) if result.benchmark.table_with is not None else []
    if table:
        rows = {label: value for label, value in rows.items() if label in result.benchmark.table_with}
    lines = [f"## {heading}", "", result.benchmark.what, ""]
    if result.exit_code:
        lines += [f"FAILED (exit status {result.exit_code}); run `python -m {result.benchmark.module}` to see why.", ""]
    if rows:
        lines += ["| measured | result |", "|---|---|",
                  *(f"| {label} | {value.replace('|', '/')} |" for label, value in rows.items()), ""]
    if table:
        lines += [*table, ""]
    machine = figures(result.output).get("machine")
    if machine:
        lines += [f"Machine during this benchmark: {machine}.", ""]
    return lines


def save(result: Result) -> None:
    """Keep a full run's figures (not its logs) for rendering BENCHMARKS.md later."""
    RESULTS_DIR.mkdir(exist_ok=True)
    kept = "\n".join([*(f"{label}: {value}" for label, value in figures(result.output).items()),
                      *markdown_table(result.output)])
    record = {"started": result.started.isoformat(), "seconds": result.seconds,
              "exit_code": result.exit_code, "figures": kept}
    (RESULTS_DIR / f"{result.benchmark.name}.json").write_text(json.dumps(record, indent=1) + "\n")


def stored() -> list[Result]:
    """The kept result of every benchmark that has one, in the order of BENCHMARKS."""
    results = []
    for benchmark in BENCHMARKS:
        path = RESULTS_DIR / f"{benchmark.name}.json"
        if path.exists():
            record = json.loads(path.read_text())
            results.append(Result(benchmark, record["figures"], record["seconds"], record["exit_code"],
                                  datetime.fromisoformat(record["started"])))
    return results


def render(results: list[Result], quick: bool, machine: str) -> str:
    """BENCHMARKS.md: results only, one summary row and one table per benchmark."""
    first, last = min(r.started for r in results), max(r.started for r in results)
    when = f"{first:%Y-%m-%d %H:%M}" + (f" to {last:%Y-%m-%d %H:%M}" if last.date() != first.date()
                                         or (last - first).total_seconds() > 6 * 3600 else "")
    runs = {result.benchmark.name: 0 for result in results}
    lines = [
        "# Benchmarks",
        "",
        f"Results of `make bench`, runs of {when} UTC{' at quick sizes' if quick else ''} (each row says when its "
        "benchmark started). This file is written by `bench/run_all.py` from `bench/results/`; do not edit it by hand.",
        "",
        # The load is per benchmark (in its table); here only what does not change between runs.
        f"Machine: {re.sub(r', load [^;,]*', '', machine.removeprefix('machine: '))}.",
        "",
        METHOD,
        "",
        "| benchmark | target | result | started (UTC) | took |",
        "|---|---|---|---|---|",
    ]
    headings = []
    for result in results:
        runs[result.benchmark.name] += 1
        name = result.benchmark.name
        heading = name if runs[name] == 1 else f"{name}, run of {result.started:%H:%M} UTC"
        headings.append(heading)
        ratio = figures(result.output).get("ratio", "no result")
        took = ("not recorded" if result.seconds is None else f"{result.seconds:.0f} s") if result.exit_code == 0 \
            else f"FAILED (exit {result.exit_code})"
        lines.append(f"| [{heading}](#{heading.lower().replace(' ', '-').replace(',', '').replace(':', '')}) | "
                     f"{result.benchmark.target} | {ratio.replace('|', '/')} | "
                     f"{result.started:%Y-%m-%d %H:%M} | {took} |")
    lines.append("")
    for result, heading in zip(results, headings, strict=True):
        lines += section(result, heading)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--render-only", action="store_true", help="run nothing; rewrite the report from bench/results")
    parser.add_argument("--output", type=Path, default=None,
                        help="report path (default BENCHMARKS.md; a --quick run prints it unless given)")
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.only.split(","))) - {b.name for b in BENCHMARKS}
    if unknown:
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
    chosen = [] if args.render_only else [b for b in BENCHMARKS if not args.only or b.name in args.only.split(",")]
    machine = describe_machine()
    results = [run(b, args.quick) for b in chosen]
    if args.quick:
        report = render(results, True, machine) if results else ""
        if args.output:
            args.output.write_text(report)
        else:
            print(report)
    else:
        for result in results:
            save(result)
        kept = stored()
        if not kept:
            parser.error("no results in bench/results yet: run a benchmark first")
        output = args.output or PROJECT_ROOT / "BENCHMARKS.md"
        output.write_text(render(kept, False, machine))
        print(f"wrote {output}")
    return max((result.exit_code for result in results), default=0)


if __name__ == "__main__":
    raise SystemExit(main())
