"""The price of the fast path's canonical-form check, against the checks that could replace it.

One Spark session on ``local[2]``, ``--messages`` canonical Trade messages (as the producers write
them) cached as Kafka-like rows, each variant forced with a ``noop`` write and timed ``--repeats``
times (median), all in one run:

1. ``from_json`` + the model's Spark rules alone (no check: NOT exact, the floor);
2. the canonical-form regex (``rlike``) + ``from_json`` + rules: the job's fast path;
3. ``from_json`` + rules + raw bytes equal to ``to_json`` of the parsed struct (ignoreNullFields
   false): an alternative check, exact only where proven;
4. the whole ``MessageParser.stage`` (what a job caches per micro-batch).

    .venv/bin/python -m bench.bench_fast_path_check [--messages 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import reduce
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import describe_machine, lakehouse_settings, load, median, trade_messages
from lakehouse.spark import build_spark_session

START_MS = 1_772_000_000_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-check-", ignore_cleanup_errors=True) as state:
        spark = build_spark_session(lakehouse_settings(state), "bench-fast-path-check")
        from pyspark.sql import functions as F

        from lakehouse.messages import Trade
        from lakehouse.parsing import PARSED, MessageParser, _field_rules, canonical_form, spark_json_schema

        print(describe_machine())
        rows = (trade_messages(spark, args.messages, 50, START_MS, 3_600_000)
                .select(F.col("key").cast("binary").alias("key"), F.col("value").cast("binary").alias("value"))
                .persist())
        rows.count()
        schema = spark_json_schema(Trade)
        text = F.col("value").cast("string")
        broken = reduce(lambda a, b: a | b, [r for n, f in Trade.model_fields.items() for r in _field_rules(n, f)])
        ok = ~F.coalesce(broken, F.lit(True))
        variants = {
            "from_json + rules (no check, not exact)": lambda: rows.select(F.from_json(text, schema).alias(PARSED))
            .select(ok.alias("ok")),
            "regex + from_json + rules (the fast path)": lambda: rows.select(
                text.rlike(canonical_form(Trade)).alias("c"), F.from_json(text, schema).alias(PARSED)
            ).select((F.col("c") & ok).alias("ok")),
            "from_json + rules + bytes == to_json": lambda: rows.select(
                "value", F.from_json(text, schema).alias(PARSED)
            ).select((ok & (F.to_json(F.col(PARSED), {"ignoreNullFields": "false"}).cast("binary")
                            == F.col("value"))).alias("ok")),
            "MessageParser.stage (as a job caches it)": lambda: MessageParser(Trade).stage(
                rows, ("key", "value")).select("_fast_path"),
        }
        for build in variants.values():  # warm-up: JIT and codegen outside the timing
            build().write.format("noop").mode("overwrite").save()
        seconds: dict[str, float] = {}
        for name, build in variants.items():
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                build().write.format("noop").mode("overwrite").save()
                times.append(time.perf_counter() - started)
            seconds[name] = median(times)
            print(f"{name:<44} {args.messages / seconds[name]:>12,.0f} msgs/s ({load()})", flush=True)
        floor = seconds["from_json + rules (no check, not exact)"]
        for name, took in seconds.items():
            print(f"ratio: {name} / no check = {floor / took:.2f} of its throughput")
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
