"""``make bench``: run every benchmark (each in its own process) and rewrite BENCHMARKS.md.

Each benchmark prints ``label: figures`` lines (one of them ``ratio: ...``); this file turns them
into one table per benchmark, keeps the full output below it, and records the machine.

    .venv/bin/python -m bench.run_all [--only raw_trades,freshness] [--quick]
"""

from __future__ import annotations

import argparse
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

NOISE = re.compile(r"^(\s+at |\d\d/\d\d/\d\d \d\d:\d\d:\d\d |Setting default log level|To adjust logging level|"
                   r"WARNING: |SLF4J|Caused by|\s*$|\.\.\. \d+ more|Traceback|  |py4j\.|: java\.)")


@dataclass
class Benchmark:
    name: str
    module: str
    what: str
    target: str
    args: list[str] = field(default_factory=list)
    quick_args: list[str] = field(default_factory=list)


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
    Benchmark("backfill", "bench.bench_backfill",
              "1-minute bars for a day of trades from the raw table: the bars of `jobs.rebuild_bars` (Spark "
              "batch, `lakehouse.bars`) vs DuckDB over the same Parquet files.",
              "Spark within 2x of DuckDB", quick_args=["--trades", "1000000", "--repeats", "2"]),
    Benchmark("reads", "bench.bench_reads",
              "Single-symbol day of 1-minute bars vs full scan (reading API, pyiceberg); after compaction.",
              "single-symbol day >= 20x faster than a full scan", args=["--compact"]),
]


def run(benchmark: Benchmark, quick: bool) -> tuple[str, float, int]:
    command = [sys.executable, "-m", benchmark.module, *benchmark.args, *(benchmark.quick_args if quick else [])]
    print(f"== {benchmark.name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    output = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if not NOISE.match(line))
    if done.returncode:  # keep the error itself
        output += "\n" + "\n".join(done.stderr.splitlines()[-25:]) + f"\n(exit status {done.returncode})"
    print(output, flush=True)
    return output, time.monotonic() - started, done.returncode


def table(output: str) -> str:
    rows = []
    for line in output.splitlines():
        label, sep, figures = line.partition(": ")
        if sep and len(label) <= 70 and not label.startswith(("Traceback", "  File")) and not label[:1].isdigit():
            rows.append(f"| {label.strip()} | {figures.strip().replace('|', '/')} |")
    return "\n".join(["| measured | figures |", "|---|---|", *rows]) if rows else "(no figures: see output)"


def write_report(results: list[tuple[Benchmark, str, float, int]], quick: bool, path: Path) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Every figure below is re-run by `make bench` (or `.venv/bin/python -m bench.run_all`; one benchmark: "
        "`.venv/bin/python -m bench.<module>`); this file is rewritten by that run. Each benchmark starts "
        "its own broker / throw-away catalog and compares two things in the same run. Load averages are "
        "printed next to the figures: the machine is shared, and at load > 2 on 2 cores every Spark "
        "figure is pessimistic.",
        "",
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{' (quick sizes)' if quick else ''}; {describe_machine()}",
        "",
        "| benchmark | target | result (the run's `ratio:` line) | re-run | status |",
        "|---|---|---|---|---|",
    ]
    for benchmark, output, seconds, code in results:
        status = f"ran in {seconds:.0f} s" if code == 0 else f"FAILED (exit {code})"
        ratio = next((line.removeprefix("ratio: ") for line in output.splitlines() if line.startswith("ratio: ")),
                     "see below")
        lines.append(f"| {benchmark.name} | {benchmark.target} | {ratio} | `python -m {benchmark.module}` | {status} |")
    notes = PROJECT_ROOT / "bench" / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    for benchmark, output, _, _ in results:
        lines += ["", f"## {benchmark.name}", "", benchmark.what, "", f"Target: {benchmark.target}.", "",
                  table(output), "", "<details><summary>full output</summary>", "", "```", output, "```", "",
                  "</details>"]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only.split(",")]
    results = [(b, *run(b, args.quick)) for b in chosen]
    write_report(results, args.quick, args.output)
    print(f"wrote {args.output}")
    return max((code for *_, code in results), default=0)


if __name__ == "__main__":
    raise SystemExit(main())
