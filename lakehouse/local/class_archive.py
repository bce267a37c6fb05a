"""A class-data-sharing (AppCDS) archive of the local Spark driver JVM, for drivers that live briefly.

A Spark driver JVM spends most of its start-up loading, parsing and verifying classes: Spark's,
Iceberg's, Hadoop's. Given ``-XX:SharedArchiveFile``, the JVM maps the archived ones, already parsed
and verified, instead (a local ``maintenance`` job, two alternating rounds: 17.4 and 17.9 s -> 13.4
and 15.0 s wall). The test suite starts dozens of such drivers, so it uses one (``tests/conftest.py``).

The archive is written by a driver started with ``-XX:ArchiveClassesAtExit`` that runs a small
workload through the project's own code (a session on a throwaway catalog, the raw-trades writer
on a batch of trades and bad messages, the Kafka source resolved) and exits: 40-90 s here, by the
machine's speed. It fits one JDK build and one launch classpath, the local driver's (Spark's jars
plus the java.nio file system jar: the in-process session and ``spark-submit.sh`` on a local
master); a JVM whose classpath or JDK does not match starts without it, as it would with no
archive. ``make jars`` clears it with ``jars/spark``.

CLI: ``python -m lakehouse.local.class_archive PATH`` writes the archive at PATH (about 150 MiB).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lakehouse.settings import Settings

ARCHIVE_NAME = "driver-classes.jsa"


def archive_path(settings: Settings) -> Path:
    """Beside the jars it archives, so resolving them again (``make jars``) removes it."""
    return settings.path(settings.local.spark_jars_dir) / ARCHIVE_NAME


def driver_options(archive: Path) -> str:
    """JVM options that start a driver on ``archive``; silent when it does not fit (another JDK,
    another classpath, as a cluster's driver has): the JVM then runs without it."""
    return f"-XX:SharedArchiveFile={archive} -Xlog:cds=off -Xlog:cds+dynamic=off"


def build(archive: Path, timeout_seconds: float = 600) -> None:
    """Run the workload in a fresh interpreter whose driver JVM dumps its classes at exit; move the
    result to ``archive`` only once it is complete."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="class-archive-") as scratch:
        dumped = Path(scratch) / "driver.jsa"
        # C1 only: the workload runs once, where compiling for peak speed costs more than it returns.
        options = f"{os.environ.get('SPARK_SUBMIT_OPTS', '')} -XX:TieredStopAtLevel=1 -XX:ArchiveClassesAtExit={dumped}"
        env = {
            **os.environ,
            "SPARK_SUBMIT_OPTS": options,
            "LAKEHOUSE__LOCAL__STATE_DIR": scratch,
            "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{scratch}/catalog.db",
            "LAKEHOUSE__CATALOG__WAREHOUSE": f"{scratch}/warehouse",
            "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": f"{scratch}/checkpoints",
            "LAKEHOUSE__SPARK__UI_ENABLED": "false",
        }
        command = [sys.executable, "-m", "lakehouse.local.class_archive", "--workload"]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_seconds)
        if run.returncode != 0 or not dumped.is_file():
            output = f"{run.stdout[-2000:]}{run.stderr[-3000:]}"
            raise RuntimeError(f"no class archive written (exit {run.returncode}):\n{output}")
        os.replace(dumped, archive)


def workload() -> None:
    """What most of the tests' drivers do: a session on the catalog, the raw-trades writer on one
    batch (the contract's parse, the Iceberg append, the quarantine), reads, the Kafka source.
    Maintenance's own classes are left out: they cost the build about 18 s of its 70-90."""
    from datetime import UTC, datetime

    from pyspark.sql import Row

    from lakehouse.catalog import spark_table_name
    from lakehouse.messages import Source, Trade, trade_id
    from lakehouse.raw_trades_stream import RawTradesWriter
    from lakehouse.settings import load_settings
    from lakehouse.spark import build_spark_session, ensure_tables
    from lakehouse.streaming import read_kafka
    from lakehouse.tables import ALL_TABLES, TRADES

    settings = load_settings()
    spark = build_spark_session(settings, "class-archive")
    ensure_tables(spark, settings, ALL_TABLES)
    at = int(datetime(2026, 1, 5, 15, tzinfo=UTC).timestamp() * 1000)
    trades = [
        Trade(source=Source.FINNHUB, symbol=symbol, price=10.0 + n, volume=1.0, event_time_ms=at + n,
              received_time_ms=at + n, trade_id=trade_id(Source.FINNHUB, symbol, at + n, 10.0 + n, 1.0, []))
        for n, symbol in enumerate(["AAA", "BBB", "CCC"] * 20)
    ]
    values = [t.to_json_bytes() for t in trades] + [b"{not json", b""]
    batch = spark.createDataFrame([
        Row(key=b"K", value=value, topic="trades", partition=0, offset=offset, timestamp=datetime.now(UTC),
            timestampType=0)
        for offset, value in enumerate(values)
    ])
    RawTradesWriter(settings, "class-archive")(batch, 0)
    table = spark_table_name(settings, TRADES)
    spark.sql(f"SELECT symbol, count(*), max(price) FROM {table} GROUP BY symbol").collect()
    spark.sql(f"SELECT * FROM {table}.files").collect()
    read_kafka(spark, settings, settings.kafka.trades_topic).schema  # noqa: B018 - resolves the source
    spark.stop()


if __name__ == "__main__":
    if sys.argv[1:] == ["--workload"]:
        workload()
    elif len(sys.argv) == 2:
        build(Path(sys.argv[1]))
    else:
        raise SystemExit("usage: python -m lakehouse.local.class_archive PATH")
