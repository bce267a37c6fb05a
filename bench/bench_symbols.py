"""The cost curve in the number of symbols: the raw-trades job (and bars) at 50 ... 8,000 symbols.

One run, one Spark session, one fresh KRaft broker, one table of results. Trade activity across
symbols is Zipf-distributed with exponent ``--zipf`` (1.1 by default: rank r trades in proportion
to r**-1.1, so over 2,000 symbols the busiest carries ~17% of all trades and half the symbols fewer
than one in 4,000), at the same total number of trades for every point. Per point:

1. throughput: ``--messages`` Trade messages pre-loaded (each symbol's trades spread evenly over
   one hour of one closed day, in event-time order per symbol, as a live feed keyed by symbol
   delivers them), then the raw-trades job (``lakehouse.raw_trades_stream.start``, unchanged) from the earliest
   offset in ``--batch``-row micro-batches on a fresh table, its background folds off; appending
   trades/s = rows / summed batch time, first batch left out; data files and seconds per commit.
   Then one fold of everything appended, timed: the throughput *with the fold* counts its time
   in (rows / (batch time + fold time x the counted rows' share)). The default 1.5M trades per
   point is what a 5,000 trades/s feed appends between two folds at the default 300 s interval,
   so one fold per drain is the live job's ratio of folds to trades;
2. commit time: the newest commit's data files appended again, by Iceberg's Java API, to a copy of
   the table registered from its metadata file (same metadata, same number of files): the catalog
   commit alone, without the Spark job that wrote the files;
3. metadata after an hour: the metadata file grows by a fixed amount per snapshot and the manifests
   by one entry per data file. Measured after this run's commits and extrapolated linearly to an
   hour of 1-second commits (3,600, also what maintenance keeps at most) at the files per commit of
   a live 5,000 trades/s feed (``--live-batch`` trades per 1 s commit: the symbols such a batch
   touches, counted from the same Zipf draw);
4. maintenance: ``lakehouse.maintenance.maintain`` on the table (closed day), its time, and the
   data files per partition after it (``--maintain-up-to``: only up to that many symbols);
5. reads (pyiceberg, after maintenance): a middle-rank symbol's day, and the busiest symbol's, vs a
   full scan, best of three;
6. freshness (``--freshness-seconds`` > 0): ``bench.bench_freshness`` at 5,000 trades/s with the
   same Zipf activity over the point's symbols, raw + bars queries, its steady-state figures.

The comparisons in the same run: throughput at each point / at the first (target at 2,000: >= 0.8)
and / the engine ceiling (``bench_raw_trades.ceiling``, target >= 0.4). The machine's speed drifts
within a run, so the ceiling is measured just before each point's throughput run and once after
the last, and a point is compared with the mean of the two measured around it.

    .venv/bin/python -m bench.bench_symbols [--symbols 50,500,2000,8000] [--messages 400000]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_raw_trades import batch_figures, ceiling, run_raw_job
from bench.common import (
    canonical_trade_json,
    describe_machine,
    lakehouse_settings,
    load,
    local_broker,
    median,
    publish_with_spark,
)
from lakehouse.catalog import load_table, spark_table_name
from lakehouse.fold import fold_appended_files
from lakehouse.local.kafka_broker import ensure_topics
from lakehouse.maintenance import MaintenancePolicy, maintain
from lakehouse.settings import Settings
from lakehouse.spark import build_spark_session
from lakehouse.tables import TRADES

START_MS = 1_772_000_000_000  # 2026-02-25 06:13 UTC: a closed day, as maintenance sees it
HOUR_MS = 3_600_000
COMMITS_PER_HOUR = 3_600  # a 1 s trigger; also MaintenancePolicy.max_snapshots


def zipf_counts(total: int, symbols: int, exponent: float) -> list[int]:
    """Trades per symbol rank: ``total`` split in proportion to rank**-exponent (largest remainders),
    so the point's total is exact and the curve's points differ only in how it is spread."""
    weights = [rank ** -exponent for rank in range(1, symbols + 1)]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    by_remainder = sorted(range(symbols), key=lambda i: weights[i] * scale - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def symbols_touched(batch: int, symbols: int, exponent: float) -> float:
    """Expected distinct symbols among ``batch`` Zipf draws: sum over ranks of 1 - (1 - p)**batch."""
    weights = [rank ** -exponent for rank in range(1, symbols + 1)]
    total = sum(weights)
    return sum(1 - (1 - w / total) ** batch for w in weights)


def symbol_name(rank: int) -> str:
    return f"Z{rank:05d}"


def zipf_trade_messages(spark, counts: list[int], start_ms: int, span_ms: int, id_prefix: str):
    """Kafka rows (key = symbol, value = Trade JSON): symbol rank r gets ``counts[r-1]`` trades spread
    evenly over ``span_ms``, each symbol's in event-time order within one Spark partition."""
    from pyspark.sql import functions as F

    ranks = spark.createDataFrame([(rank, n) for rank, n in enumerate(counts, start=1) if n], "rank int, n int")
    rows = ranks.select("rank", "n", F.explode(F.sequence(F.lit(0), F.col("n") - 1)).alias("k"))
    symbol = F.concat(F.lit("Z"), F.lpad(F.col("rank").cast("string"), 5, "0"))
    event_ms = F.lit(start_ms) + ((F.col("k") + 0.5) / F.col("n") * span_ms).cast("long")
    trade_id = F.md5(F.concat_ws("-", F.lit(id_prefix), F.col("rank").cast("string"), F.col("k").cast("string")))
    value = canonical_trade_json(symbol, F.col("k"), event_ms, trade_id, F.array(F.lit("1")))
    return (rows.select(symbol.alias("key"), event_ms.alias("at"), value.alias("value"))
            .repartition(2, "key").sortWithinPartitions("at").select("key", "value"))


def commit_seconds(spark, settings: Settings, snapshot_id: int) -> float:
    """Seconds Iceberg's Java API takes to commit one snapshot's data files (an append) to a copy of the
    table registered from its current metadata file: the commit without the write."""
    jvm = spark._jvm
    catalog = spark._jsparkSession.sessionState().catalogManager().catalog(settings.catalog.name).icebergCatalog()
    identifier = jvm.org.apache.iceberg.catalog.TableIdentifier.parse
    table = catalog.loadTable(identifier(f"{settings.catalog.namespace}.{TRADES.name}"))
    probe_name = identifier(f"{settings.catalog.namespace}.commit_probe")
    if catalog.tableExists(probe_name):
        catalog.dropTable(probe_name, False)  # the catalog entry only: the files are the trades table's
    probe = catalog.registerTable(probe_name, table.operations().current().metadataFileLocation())
    append = probe.newAppend()
    for data_file in table.snapshot(snapshot_id).addedDataFiles(table.io()):
        append.appendFile(data_file)
    started = time.perf_counter()
    append.commit()
    took = time.perf_counter() - started
    catalog.dropTable(probe_name, False)
    return took


@dataclass(frozen=True)
class MetadataSize:
    snapshots: int
    metadata_file_bytes: int
    manifest_bytes: int  # the current snapshot's manifests
    live_files: int


def metadata_size(settings: Settings) -> MetadataSize:
    table = load_table(settings, TRADES)
    metadata_file = Path(table.metadata_location.removeprefix("file:"))
    snapshot = table.current_snapshot()
    manifests = snapshot.manifests(table.io) if snapshot else []
    return MetadataSize(
        snapshots=len(table.metadata.snapshots),
        metadata_file_bytes=metadata_file.stat().st_size,
        manifest_bytes=sum(m.manifest_length for m in manifests),
        live_files=sum((m.added_files_count or 0) + (m.existing_files_count or 0) for m in manifests),
    )


def read_seconds(settings: Settings, symbol: str, day_start_ms: int) -> tuple[float, float, int, int]:
    """(``symbol``'s day, full scan) seconds with pyiceberg, best of three; and their row counts."""
    from datetime import UTC, datetime, timedelta

    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

    day = datetime.fromtimestamp(day_start_ms / 1000, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    one_day = And(EqualTo("symbol", symbol), And(GreaterThanOrEqual("event_time", day.isoformat()),
                                                  LessThan("event_time", (day + timedelta(days=1)).isoformat())))
    table = load_table(settings, TRADES)
    best: dict[str, tuple[float, int]] = {}
    for _ in range(3):
        for label, scan in (("day", table.scan(row_filter=one_day)), ("full", table.scan())):
            started = time.perf_counter()
            rows = scan.to_arrow().num_rows
            took = time.perf_counter() - started
            best[label] = min(best.get(label, (took, rows)), (took, rows))
    return best["day"][0], best["full"][0], best["day"][1], best["full"][1]


def freshness(symbols: int, exponent: float, seconds: float, warmup: float) -> dict[str, str]:
    """``bench.bench_freshness`` at 5,000 trades/s over ``symbols`` Zipf symbols (its own process and
    session, as it measures a live pipeline): its steady-state trade and bar lines."""
    command = [sys.executable, "-m", "bench.bench_freshness", "--symbols", str(symbols), "--zipf", str(exponent),
               "--seconds", str(seconds), "--warmup", str(warmup)]
    done = subprocess.run(command, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    figures = {}
    for line in done.stdout.splitlines():
        for key in ("trade readable after event time", "final bar readable after window end",
                    "raw_trades micro-batch time"):
            if line.startswith(key):
                figures[key] = line.split(": ", 1)[1]
    if done.returncode:
        figures["error"] = (done.stderr.strip().splitlines() or ["?"])[-1]
    return figures


def p50_p99(line: str | None) -> str:
    if not line:
        return "n/a"
    found = re.findall(r"p(50|99) (-?[\d.]+|nan) s", line)
    return " / ".join(f"{value}" for _, value in found) or line


def measure_ceiling(spark, state: str, args: argparse.Namespace) -> float:
    """The engine ceiling now (rows/s), printed."""
    top = ceiling(spark, state, args.ceiling_batch, args.ceiling_batches, 50)
    print(f"ceiling: rate -> JSON -> from_json -> Parquet by 50 symbols: {top:,.0f} rows/s ({load()})", flush=True)
    return top


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="50,500,2000,8000")
    parser.add_argument("--zipf", type=float, default=1.1, help="exponent of the activity across symbols")
    parser.add_argument("--messages", type=int, default=1_500_000,
                        help="trades per point (1.5M: what a 5,000 trades/s feed folds per 300 s interval)")
    parser.add_argument("--batch", type=int, default=300_000,
                        help="maxOffsetsPerTrigger of the throughput run (the ceiling's batch: the same rows per pass)")
    parser.add_argument("--live-batch", type=int, default=5_000,
                        help="trades per 1 s commit of a live feed (5,000 trades/s), for the hour extrapolation")
    parser.add_argument("--warmup-messages", type=int, default=300_000,
                        help="trades drained once before the first point, not counted (0: none)")
    parser.add_argument("--ceiling-batch", type=int, default=300_000)
    parser.add_argument("--ceiling-batches", type=int, default=3)
    parser.add_argument("--maintain-up-to", type=int, default=10**6,
                        help="run maintenance only at points with at most this many symbols (it rewrites every file)")
    parser.add_argument("--freshness-seconds", type=float, default=0.0,
                        help="feed seconds of the freshness run per point (0: no freshness run)")
    parser.add_argument("--freshness-warmup", type=float, default=60.0)
    args = parser.parse_args(argv)
    points = [int(s) for s in args.symbols.split(",") if s]

    results: list[dict] = []
    ceilings: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-symbols-", ignore_cleanup_errors=True) as state,
        local_broker() as broker,
    ):
        base = lakehouse_settings(state, broker.bootstrap_servers)
        spark = build_spark_session(base, "bench-symbols")
        print(describe_machine())
        print(f"data: {args.messages:,} trades per point, activity Zipf over symbols with exponent {args.zipf:g}, "
              f"one hour of one closed day; raw job in {args.batch:,}-trade micro-batches, local[2]")
        if args.warmup_messages:  # the raw job's plans compiled once, so the first point is not the cold one
            warm_topic = "trades-warmup"
            ensure_topics(broker.bootstrap_servers, [warm_topic], base.kafka.partitions)
            warm = base.model_copy(update={"kafka": base.kafka.model_copy(update={"trades_topic": warm_topic})})
            warm_trades = zipf_trade_messages(spark, zipf_counts(args.warmup_messages, 50, args.zipf), START_MS,
                                              HOUR_MS, "warm")
            publish_with_spark(spark, warm_trades, broker.bootstrap_servers, warm_topic)
            run_raw_job(spark, warm.with_streaming(trigger_seconds=0.0, max_offsets_per_trigger=args.batch,
                                                   fold_interval_seconds=0), "symbols-warmup")
            fold_appended_files(spark, spark_table_name(warm, TRADES))
            spark.sql(f"DROP TABLE IF EXISTS {spark_table_name(warm, TRADES)} PURGE")
            print(f"warm-up: {args.warmup_messages:,} trades over 50 symbols drained and folded, "
                  f"not counted ({load()})")
        for symbols in points:
            topic = f"trades-{symbols}"
            ensure_topics(broker.bootstrap_servers, [topic], base.kafka.partitions)
            settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={"trades_topic": topic})})
            counts = zipf_counts(args.messages, symbols, args.zipf)
            publish_with_spark(spark, zipf_trade_messages(spark, counts, START_MS, HOUR_MS, f"p{symbols}"),
                               broker.bootstrap_servers, topic)
            ceilings.append(measure_ceiling(spark, f"{state}/ceiling-{symbols}", args))
            # Folds off while the job drains: the fold is timed on its own below, then counted in.
            streaming = settings.with_streaming(trigger_seconds=0.0, max_offsets_per_trigger=args.batch,
                                                fold_interval_seconds=0)
            progress = run_raw_job(spark, streaming, f"symbols-{symbols}")
            rows, seconds, _ = batch_figures(progress)
            name = spark_table_name(settings, TRADES)
            stored = spark.table(name).count()
            assert stored == args.messages, f"stored {stored} of {args.messages} trades"
            snapshots = spark.sql(f"SELECT snapshot_id AS id, int(summary['added-data-files']) AS n "
                                  f"FROM {name}.snapshots ORDER BY committed_at").collect()
            added = [int(r.n) for r in snapshots]
            largest = max(snapshots, key=lambda r: r.n)  # a commit of a full batch, not the tail's
            batch_seconds = [p["durationMs"]["triggerExecution"] / 1000 for p in progress if p["numInputRows"]][1:]
            commit = commit_seconds(spark, settings, largest.id)
            meta = metadata_size(settings)
            # A live hour: each 1 s commit appends a file per task, each fold a file per symbol-day
            # its interval touched.
            fold_interval = base.streaming.fold_interval_seconds
            folds_per_hour = 3_600 / fold_interval
            live_files = (base.streaming.shuffle_partitions
                          + symbols_touched(int(args.live_batch * fold_interval), symbols, args.zipf) / fold_interval)
            per_snapshot = meta.metadata_file_bytes / max(meta.snapshots, 1)
            hour_metadata = per_snapshot * (COMMITS_PER_HOUR + folds_per_hour)
            per_entry = meta.manifest_bytes / max(meta.live_files, 1)
            hour_manifests = per_entry * live_files * COMMITS_PER_HOUR
            started = time.perf_counter()
            fold = fold_appended_files(spark, name)
            fold_s = time.perf_counter() - started
            with_fold = rows / (seconds + fold_s * rows / args.messages) if seconds else float("nan")
            started = time.perf_counter()
            if symbols <= args.maintain_up_to:
                report = maintain(spark, base.catalog.name, f"{base.catalog.namespace}.{TRADES.name}",
                                  MaintenancePolicy())
                maintenance = time.perf_counter() - started
                files_after = report.after.max_files_per_partition
            else:
                maintenance, files_after = float("nan"), -1
            # The busiest symbol holds 1/H(symbols) of all trades (26% at 50 symbols, 17% at 2,000), which
            # caps its day's read against a full scan; a symbol of middle rank is what most reads touch.
            busiest_s, full_s, _, _ = read_seconds(settings, symbol_name(1), START_MS)
            day_s, _, _, _ = read_seconds(settings, symbol_name(max(1, symbols // 2)), START_MS)
            result = {
                "symbols": symbols, "append_per_s": rows / seconds if seconds else float("nan"),
                "trades_per_s": with_fold, "fold_s": fold_s, "fold_files": fold.written_files,
                "files_per_commit": median([float(n) for n in added]), "batch_s": median(batch_seconds),
                "commit_s": commit, "live_files_per_commit": live_files,
                "metadata_mib_hour": hour_metadata / 2**20, "manifests_mib_hour": hour_manifests / 2**20,
                "maintenance_s": maintenance, "files_per_partition_after": files_after,
                "day_read_s": day_s, "full_scan_s": full_s, "read_ratio": full_s / day_s if day_s else float("nan"),
                "load": load(),
            }
            print(f"point {symbols:,} symbols: {with_fold:,.0f} trades/s with the fold, {result['append_per_s']:,.0f} "
                  f"appending (median batch {result['batch_s']:.2f} s, {result['files_per_commit']:.0f} files per "
                  f"commit, commit alone {commit:.2f} s); fold {fold_s:.1f} s, {fold.folded_files} files into "
                  f"{fold.written_files:,}; metadata after an hour {result['metadata_mib_hour']:.1f} MiB, manifests "
                  f"{result['manifests_mib_hour']:.0f} MiB ({live_files:.1f} files/s); "
                  f"maintenance {maintenance:.1f} s, "
                  f"{files_after} file(s) per partition after; symbol-day read {day_s * 1000:.0f} ms vs full scan "
                  f"{full_s * 1000:.0f} ms = {result['read_ratio']:.0f}x (busiest symbol {full_s / busiest_s:.0f}x) "
                  f"({load()})", flush=True)
            if args.freshness_seconds:
                fresh = freshness(symbols, args.zipf, args.freshness_seconds, args.freshness_warmup)
                result["trade_fresh"] = p50_p99(fresh.get("trade readable after event time"))
                result["bar_fresh"] = p50_p99(fresh.get("final bar readable after window end"))
                batches = fresh.get("raw_trades micro-batch time", "n/a").split(";")[0]
                error = f"; failed: {fresh['error'][:200]}" if "error" in fresh else ""
                print(f"freshness {symbols:,} symbols: trade p50 / p99 {result['trade_fresh']} s, final bar p50 / p99 "
                      f"{result['bar_fresh']} s, raw batch {batches}{error} ({load()})", flush=True)
            results.append(result)
            spark.sql(f"DROP TABLE IF EXISTS {name} PURGE")
        ceilings.append(measure_ceiling(spark, f"{state}/ceiling-after", args))
        spark.stop()
    for result, before, after in zip(results, ceilings, ceilings[1:], strict=False):
        result["ceiling"] = (before + after) / 2

    first = results[0]
    print("")
    print("| symbols | trades/s with fold | vs first | vs ceiling (rows/s) | appending trades/s | fold s (files) | "
          "files/commit | batch s | commit s | files/s live "
          "| metadata file, 1 h (MiB) | manifests, 1 h (MiB) | maintenance s | files/partition after | "
          "symbol-day vs full scan | trade p50/p99 s | bar p50/p99 s | load |")
    print("|" + "---|" * 18)
    for r in results:
        print(f"| {r['symbols']:,} | {r['trades_per_s']:,.0f} | {r['trades_per_s'] / first['trades_per_s']:.2f} | "
              f"{r['trades_per_s'] / r['ceiling']:.2f} ({r['ceiling']:,.0f}) | {r['append_per_s']:,.0f} | "
              f"{r['fold_s']:.1f} ({r['fold_files']:,}) | "
              f"{r['files_per_commit']:.0f} | {r['batch_s']:.2f} | {r['commit_s']:.2f} | "
              f"{r['live_files_per_commit']:.1f} | {r['metadata_mib_hour']:.1f} | {r['manifests_mib_hour']:.0f} | "
              f"{r['maintenance_s']:.1f} | {r['files_per_partition_after']} | {r['read_ratio']:.0f}x | "
              f"{r.get('trade_fresh', 'not run')} | {r.get('bar_fresh', 'not run')} | {r['load']} |")
    at = next((r for r in results if r["symbols"] == 2000), results[-1])
    print(f"ratio: raw-trades throughput at {at['symbols']:,} symbols / at {first['symbols']} = "
          f"{at['trades_per_s'] / first['trades_per_s']:.2f} (target >= 0.8), / engine ceiling = "
          f"{at['trades_per_s'] / at['ceiling']:.2f} (target >= 0.4; ceiling {at['ceiling']:,.0f} rows/s); "
          f"symbol-day read {at['read_ratio']:.0f}x faster than "
          f"a full scan (target >= 20x); files per partition after maintenance {at['files_per_partition_after']} "
          f"(target <= 2) ({load()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
