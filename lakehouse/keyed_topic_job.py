"""One streaming shape for the small topics (vendor bars, feed events, producers' rejects).

Kafka topic -> parse with the message model -> MERGE valid rows into their table on its key (or,
for append-only tables, append once per micro-batch), and append rejects to quarantine. Every
write is idempotent, so a micro-batch replayed after a crash is harmless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from lakehouse.catalog import spark_table_name
from lakehouse.iceberg_writes import append_once, batch_marker, writer_id
from lakehouse.kafka_loss import KafkaDataLost
from lakehouse.parsing import PARSED, REJECT_REASON, MessageParser, quarantine_rows
from lakehouse.settings import Settings
from lakehouse.spark import ensure_tables
from lakehouse.streaming import checkpoint_location, read_kafka
from lakehouse.tables import QUARANTINE, TableDef
from lakehouse.upserts import upsert

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery


@dataclass(frozen=True)
class KeyedTopicJob:
    name: str
    model: type[BaseModel]
    table: TableDef
    to_rows: Callable[[DataFrame], DataFrame]
    topic: Callable[[Settings], str]
    order_by: str
    append_only: bool = False  # rows are unique by Kafka offset: append once instead of MERGE


def write_batch(
    job: KeyedTopicJob, settings: Settings, writer: str, parse: MessageParser, batch: DataFrame, batch_id: int
) -> None:
    from pyspark.sql import functions as F

    log = logging.getLogger(job.name)
    started = time.monotonic()
    with parse.persisted(batch, [*batch.columns, PARSED, REJECT_REASON]) as parsed:
        marker = batch_marker(writer, batch_id)
        valid = job.to_rows(parsed.where(F.col(REJECT_REASON).isNull()))
        if job.append_only:
            append_once(valid, spark_table_name(settings, job.table), marker + ":valid")
        else:
            upsert(valid, job.table, spark_table_name(settings, job.table), job.order_by)
        rejected = parsed.where(F.col(REJECT_REASON).isNotNull())
        quarantined = rejected.count()
        if quarantined:
            append_once(quarantine_rows(rejected), spark_table_name(settings, QUARANTINE), marker)
    log.info("batch %s: %s %s, %s quarantined, %.1f s", batch_id, "appended to" if job.append_only else "merged into",
             job.table.name, quarantined, time.monotonic() - started)


def start(job: KeyedTopicJob, spark: SparkSession, settings: Settings) -> StreamingQuery:
    ensure_tables(spark, settings, (job.table, QUARANTINE))
    checkpoint = checkpoint_location(settings, job.name)
    source = read_kafka(spark, settings, job.topic(settings), resume=(job.name, checkpoint))
    writer = writer_id(checkpoint)  # after read_kafka, which may start a new checkpoint
    parse = MessageParser(job.model)
    logging.getLogger(job.name).info(
        "reading Kafka topic %s at %s; merging into %s (key %s); rejects to %s; checkpoint %s",
        job.topic(settings), settings.kafka.bootstrap_servers, spark_table_name(settings, job.table),
        ", ".join(job.table.key), spark_table_name(settings, QUARANTINE), checkpoint,
    )
    return (
        source.writeStream.queryName(job.name)
        .foreachBatch(lambda batch, batch_id: write_batch(job, settings, writer, parse, batch, batch_id))
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=f"{settings.streaming.trigger_seconds} seconds")
        .start()
    )


def main(job: KeyedTopicJob, description: str, argv: Sequence[str] | None = None) -> int:
    """The command line every keyed-topic job shares: ``--help``, ``--config``, then run until SIGTERM."""
    from lakehouse.job_args import job_parser, job_settings
    from lakehouse.logs import configure_logging
    from lakehouse.spark import build_spark_session
    from lakehouse.streaming import run_until_stopped

    parser = job_parser(job.name, description)
    args = parser.parse_args(argv)
    configure_logging()
    settings = job_settings(parser, args.config)
    spark = build_spark_session(settings, job.name)
    try:
        run_until_stopped([start(job, spark, settings)], job.name)
    except KafkaDataLost as lost:  # one line that says what was lost and how to go on, no trace
        logging.getLogger(job.name).error("%s", lost)
        return 1
    finally:
        spark.stop()
    return 0
