"""The raw-trades job through real Kafka, Spark and Iceberg: every trade once, bad input quarantined."""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyiceberg.exceptions import NoSuchTableError

from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.conditions import is_bar_eligible
from lakehouse.local.demo import count_rows
from lakehouse.local.processes import kill_process_tree, submit_job, terminate_group
from lakehouse.messages import Source, Trade, trade_id
from lakehouse.settings import Settings
from lakehouse.tables import QUARANTINE, TRADES
from tests.conftest import environ_of
from tests.kafka_helpers import new_topic, publish

BASE_MS = 1_767_261_600_000  # 2026-01-01T10:00:00Z


def trade(symbol: str, n: int) -> Trade:
    price, volume, at = round(50 + (n % 97) / 10, 2), float(n % 5 + 1), BASE_MS + n * 37
    conditions = ["1", "12"] if n % 10 == 0 else []  # every tenth an odd lot: stored, but no bar
    return Trade(
        source=Source.FINNHUB, symbol=symbol, price=price, volume=volume, event_time_ms=at,
        conditions=conditions, venue=None, received_time_ms=at + 3,
        trade_id=trade_id(Source.FINNHUB, symbol, at, price, volume, conditions),
    )


def zipf_symbols(count: int, symbols: int, exponent: float = 1.1, seed: int = 26) -> list[str]:
    """``count`` symbols drawn with Zipf-distributed activity (rank r weighs r**-exponent), as a whole
    market trades: a few symbols carry most trades. Every symbol appears at least once."""
    names = [f"Z{rank:05d}" for rank in range(1, symbols + 1)]
    weights = [rank ** -exponent for rank in range(1, symbols + 1)]
    drawn = names + random.Random(seed).choices(names, weights, k=count - symbols)
    random.Random(seed + 1).shuffle(drawn)
    return drawn


def deduplicated_batch(spark, trades: list[Trade], spread_days: int = 1):
    """``trades`` as the raw writer's deduplicated batch (``TradeRows``), the n-th moved n % spread_days
    days on, so that a batch spans several day partitions."""
    from lakehouse.trades import TradeRows

    day_ms = 86_400_000
    rows = [(t.trade_id, "finnhub", t.symbol, t.price, t.volume,
             datetime.fromtimestamp((t.event_time_ms + (n % spread_days) * day_ms) / 1000, tz=UTC), [], None,
             datetime.fromtimestamp(t.received_time_ms / 1000, tz=UTC), 0, n, True)
            for n, t in enumerate(trades)]
    schema = ("trade_id string, source string, symbol string, price double, volume double, event_time timestamp, "
              "conditions array<string>, venue string, received_time timestamp, kafka_partition int, "
              "kafka_offset long, bar_eligible boolean")
    trade_rows = TradeRows()
    return trade_rows.stamped(trade_rows.first_of_each_trade(spark.createDataFrame(rows, schema), 2),
                              datetime.now(UTC))


def stored_rows(settings: Settings, symbols: tuple[str, ...]) -> list[dict]:
    """The stored trades of ``symbols`` (none while the job has not created its table yet)."""
    try:
        table = load_catalog(settings).load_table(table_identifier(settings, TRADES))
    except NoSuchTableError:
        return []
    quoted = ", ".join(f"'{s}'" for s in symbols)
    return table.scan(row_filter=f"symbol in ({quoted})").to_arrow().to_pylist()


def test_resent_trades_are_stored_once_and_bad_messages_are_quarantined(spark, lake: Settings, kafka_broker):
    from lakehouse import raw_trades_stream

    settings = lake
    topic = new_topic(kafka_broker.bootstrap_servers, settings.kafka.trades_topic, settings.kafka.partitions)
    trades = [trade("DUPE", n) for n in range(300)]
    good = [(t.key(), t.to_json_bytes()) for t in trades]
    bad = [
        (b"DUPE", b"{not json"),
        (b"DUPE", b'{"schema_version": 1, "source": "finnhub", "symbol": "DUPE"}'),
        (b"DUPE", trades[0].to_json_bytes().replace(b'"price":', b'"price":-')),
        (b"DUPE", None),
        (b"DUPE", trades[1].to_json_bytes().replace(b'"schema_version":1', b'"schema_version":9')),
    ]
    publish(kafka_broker.bootstrap_servers, topic, good[:200] + bad)

    query = raw_trades_stream.start(spark, settings)
    query.processAllAvailable()
    # The producer re-sends the first 200 (a reconnect replay) and sends the rest, in a later batch.
    publish(kafka_broker.bootstrap_servers, topic, good[:200] + good[200:])
    query.processAllAvailable()
    query.stop()

    rows = stored_rows(settings, ("DUPE",))
    assert sorted(r["trade_id"] for r in rows) == sorted(t.trade_id for t in trades)
    eligible = {r["trade_id"]: r["bar_eligible"] for r in rows}
    assert eligible == {t.trade_id: is_bar_eligible(t.source.value, t.conditions) for t in trades}
    assert list(eligible.values()).count(False) == 30
    quarantine = load_catalog(settings).load_table(table_identifier(settings, QUARANTINE)).scan().to_arrow()
    mine = [r for r in quarantine.to_pylist() if r["raw_key"] == b"DUPE"]
    reasons = sorted(r["reason"] for r in mine)
    assert len(mine) == len(bad)
    assert reasons == sorted([
        "Invalid JSON: key must be a string at line 1 column 2", "price: Field required (and 4 more)",
        "price: Input should be greater than 0", "empty message", "schema_version: Input should be 1",
    ])
    assert {r["raw_value"] for r in mine} == {value for _, value in bad}
    assert all(r["topic"] == topic and r["kafka_offset"] >= 0 for r in mine)


def job_environment(settings: Settings, **streaming: str) -> dict[str, str]:
    """The environment of a raw-trades job under ``spark-submit.sh`` on the test's own namespace, topic
    and checkpoints."""
    return {
        **os.environ,
        **environ_of(settings),
        **{f"LAKEHOUSE__STREAMING__{key.upper()}": value for key, value in streaming.items()},
    }


def test_kill_dash_nine_mid_stream_then_restart_loses_and_duplicates_nothing(
    lake: Settings, kafka_broker, tmp_path: Path
):
    settings = lake
    topic = new_topic(kafka_broker.bootstrap_servers, settings.kafka.trades_topic, partitions=2)
    symbols = ("KILLA", "KILLB", "KILLC")
    trades = [trade(symbol, n) for n in range(2000) for symbol in symbols]
    env = job_environment(settings, trigger_seconds="0", max_offsets_per_trigger="750")
    log_file = tmp_path / "kill9.log"

    def start_job() -> subprocess.Popen:
        return submit_job("raw_trades", env, log_file)

    publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in trades[:3000]])
    job = start_job()
    try:
        deadline = time.monotonic() + 180
        while count_rows(settings, TRADES) == 0:  # kill it once it has committed something, mid-stream
            assert job.poll() is None, f"job died: {log_file.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no commit within 180 s: {log_file.read_text()[-3000:]}"
            time.sleep(0.5)
        publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in trades[3000:]])
        kill_process_tree(job)
        assert count_rows(settings, TRADES) < len(trades), (
            "the kill must land mid-stream for this test to mean anything")

        job = start_job()
        deadline = time.monotonic() + 240
        while count_rows(settings, TRADES) < len(trades) and time.monotonic() < deadline:
            assert job.poll() is None, f"restarted job died: {log_file.read_text()[-3000:]}"
            time.sleep(1)
    finally:
        terminate_group(job)

    rows = stored_rows(settings, symbols)
    ids = [r["trade_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a trade was stored twice"
    assert set(ids) == {t.trade_id for t in trades}, "a trade was lost"


def test_a_batch_over_a_thousand_symbols_fits_a_512m_driver_and_resent_trades_are_stored_once(
    lake: Settings, kafka_broker, tmp_path: Path
):
    """One micro-batch touching 1,000 symbol partitions through the real job on the smallest heap
    Spark accepts. A writer that keeps a Parquet file open per partition (fanout) died here with
    OutOfMemoryError: the job's memory must not grow with the partitions a batch touches. The
    second batch re-sends trades of hundreds of symbols, each checked against what is stored."""
    settings = lake
    topic = new_topic(kafka_broker.bootstrap_servers, settings.kafka.trades_topic, partitions=4)
    symbols = zipf_symbols(8_000, 1_000)
    trades = [trade(symbol, n) for n, symbol in enumerate(symbols)]
    later = [trade(symbol, len(trades) + n) for n, symbol in enumerate(symbols[:2_000])]
    resent = random.Random(7).sample(trades, 1_500)
    env = job_environment(settings, trigger_seconds="0", max_offsets_per_trigger="20000")
    log_file = tmp_path / "many-symbols.log"

    def wait_for(count: int, job: subprocess.Popen) -> None:
        deadline = time.monotonic() + 240
        while count_rows(settings, TRADES) < count:
            assert job.poll() is None, f"job died: {log_file.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not {count} stored within 240 s: {log_file.read_text()[-3000:]}"
            time.sleep(1)

    publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in trades])
    job = submit_job("raw_trades", env, log_file, "--conf", "spark.driver.memory=512m")
    try:
        wait_for(len(trades), job)
        publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in resent + later])
        wait_for(len(trades) + len(later), job)
    finally:
        terminate_group(job)

    ids = [r["trade_id"] for r in stored_rows(settings, tuple(sorted(set(symbols))))]
    assert len(ids) == len(set(ids)), "a trade was stored twice"
    assert set(ids) == {t.trade_id for t in trades + later}, "a trade was lost"
    assert "OutOfMemoryError" not in log_file.read_text()


def test_a_new_checkpoint_rereading_a_stored_topic_in_small_batches_stores_nothing_twice(
    spark, lake: Settings, kafka_broker,
):
    """A writer started on a new checkpoint reads the topic from its start again. Whatever the table
    already holds is checked in every batch that reaches into it, not only in the first."""
    from lakehouse import raw_trades_stream

    settings = lake
    topic = new_topic(kafka_broker.bootstrap_servers, settings.kafka.trades_topic, settings.kafka.partitions)
    trades = [trade(symbol, n) for n in range(150) for symbol in ("REA", "REB")]
    publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in trades])
    first = settings.with_streaming(checkpoint_dir=f"{settings.streaming.checkpoint_dir}/first")
    query = raw_trades_stream.start(spark, first)
    query.processAllAvailable()
    query.stop()
    assert len(stored_rows(settings, ("REA", "REB"))) == len(trades)

    rereading = first.with_streaming(checkpoint_dir=f"{settings.streaming.checkpoint_dir}/again",
                                     max_offsets_per_trigger=60)
    query = raw_trades_stream.start(spark, rereading)
    query.processAllAvailable()
    batches = [p for p in query.recentProgress if p["numInputRows"]]
    query.stop()

    assert len(batches) >= 5  # the re-read came in several batches
    rows = stored_rows(settings, ("REA", "REB"))
    assert sorted(r["trade_id"] for r in rows) == sorted(t.trade_id for t in trades)


def test_steady_micro_batches_reuse_their_generated_code_and_stamp_one_ingest_time_each(
    spark, lake: Settings, kafka_broker,
):
    """A batch shaped like the one before compiles no new code. A per-batch literal in the plan
    (such as the ingest time) is inlined into the code Spark generates: new classes to compile and
    JIT-compile every batch (docs/performance.md#code-generation-and-jit-warm-up)."""
    from lakehouse import raw_trades_stream
    from lakehouse.spark import generated_classes_compiled

    steady = lake
    topic = new_topic(kafka_broker.bootstrap_servers, steady.kafka.trades_topic, steady.kafka.partitions)
    symbols = ("CGA", "CGB")
    started = datetime.now(UTC)
    query = raw_trades_stream.start(spark, steady)
    compiled = []
    try:
        for batch in range(4):  # each batch later in event time than the one before, as a live feed
            trades = [trade(symbol, batch * 100 + n) for n in range(100) for symbol in symbols]
            publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in trades])
            query.processAllAvailable()
            compiled.append(generated_classes_compiled(spark))
        # A trigger can fire while a publish is under way, so a publish may span two micro-batches.
        batches_with_input = len([p for p in query.recentProgress if p["numInputRows"]])
    finally:
        query.stop()
    finished = datetime.now(UTC)

    assert compiled[3] == compiled[2], f"classes compiled so far after each batch: {compiled}"
    rows = stored_rows(steady, symbols)
    assert len(rows) == len({r["trade_id"] for r in rows}) == 4 * 100 * len(symbols)
    stamps = {r["ingested_time"] for r in rows}
    assert len(stamps) == batches_with_input >= 4  # one ingest time per micro-batch
    assert started <= min(stamps) and max(stamps) <= finished


def test_only_symbols_whose_trades_reach_back_into_what_is_stored_are_checked() -> None:
    from datetime import UTC, datetime, timedelta

    from lakehouse.trades import SymbolRange, SymbolSpan, advance_stored_until, ranges_to_check

    def at(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    stored = advance_stored_until({}, [SymbolSpan("AAPL", 1_000, 5_000), SymbolSpan("MSFT", 1_000, 9_000)])
    assert stored == {"AAPL": 5_000, "MSFT": 9_000}
    batch = [
        SymbolSpan("AAPL", 5_001, 8_000),  # in event-time order: nothing to check
        SymbolSpan("MSFT", 8_500, 12_000),  # reaches back 500 ms into what is stored
        SymbolSpan("TSLA", 2_000, 3_000),  # nothing of it stored: nothing to check
    ]
    one_ms = timedelta(milliseconds=1)
    assert ranges_to_check(batch, stored) == [
        SymbolRange("MSFT", at(8_500), at(9_000) + one_ms),
    ]
    assert advance_stored_until(stored, [SymbolSpan("MSFT", 100, 200)])["MSFT"] == 9_000  # never moves back


def test_marks_from_data_file_metrics_take_each_symbols_newest_bound_and_a_missing_bound_checks_all() -> None:
    from lakehouse.trades import UNBOUNDED_MS, SymbolSpan, ranges_to_check, stored_until_from_files

    marks = stored_until_from_files([("AAPL", 5_000), ("AAPL", 9_000), ("MSFT", 4_000), ("MSFT", None)])
    assert marks == {"AAPL": 9_000, "MSFT": UNBOUNDED_MS}
    assert [r.symbol for r in ranges_to_check([SymbolSpan("MSFT", 10_000, 11_000)], marks)] == ["MSFT"]


def test_a_filter_selects_its_ranges_exactly_and_over_thousands_of_symbols_their_symbols_in_the_whole_span(
    spark,
) -> None:
    from datetime import UTC, datetime, timedelta

    from lakehouse.trades import SymbolRange, trades_in_ranges

    t0 = datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
    ranges = [SymbolRange(f"S{i:04d}", t0, t0 + timedelta(seconds=1)) for i in range(5000)]
    rows = spark.createDataFrame(
        [("S0000", t0), ("S4999", t0 + timedelta(milliseconds=999)), ("S4999", t0 + timedelta(seconds=1)),
         ("OTHER", t0)],
        "symbol string, event_time timestamp",
    )
    from pyspark.sql import functions as F

    picked = rows.where(trades_in_ranges(ranges)).select("symbol", F.unix_millis("event_time").alias("ms")).collect()
    t0_ms = int(t0.timestamp() * 1000)
    assert sorted((r.symbol, r.ms - t0_ms) for r in picked) == [("S0000", 0), ("S4999", 999)]

    few = [SymbolRange("A", t0, t0 + timedelta(seconds=1)), SymbolRange("B", t0 + timedelta(seconds=1),
                                                                        t0 + timedelta(seconds=2))]
    rows = spark.createDataFrame([("A", t0), ("A", t0 + timedelta(milliseconds=1500)), ("B", t0)],
                                 "symbol string, event_time timestamp")
    assert [r.symbol for r in rows.where(trades_in_ranges(few)).collect()] == ["A"]  # exact
    many = [*few, *(SymbolRange(f"S{i:04d}", t0, t0 + timedelta(seconds=1)) for i in range(100))]
    assert sorted(r.symbol for r in rows.where(trades_in_ranges(many)).collect()) == ["A", "A", "B"]  # coarse


def test_copies_of_a_trade_in_one_batch_keep_the_copy_read_first_after_one_shuffle(spark) -> None:
    from lakehouse.trades import TradeRows

    columns = "trade_id string, symbol string, event_time timestamp, kafka_partition int, kafka_offset long"
    at = datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
    copies = [("a", "AAA", 1, 7), ("a", "AAA", 0, 9), ("a", "AAA", 0, 3), ("b", "AAA", 2, 1),
              ("b", "BBB", 0, 5), ("c", "BBB", 3, 2), ("c", "BBB", 3, 1)]  # "b" is two trades: two symbols
    rows = [(trade_id, symbol, at, partition, offset) for trade_id, symbol, partition, offset in copies]
    first = TradeRows().first_of_each_trade(spark.createDataFrame(rows, columns), partitions=2)

    kept = sorted((r.trade_id, r.symbol, r.kafka_partition, r.kafka_offset) for r in first.collect())
    assert kept == [("a", "AAA", 0, 3), ("b", "AAA", 2, 1), ("b", "BBB", 0, 5), ("c", "BBB", 3, 1)]
    plan = first._jdf.queryExecution().executedPlan().toString()  # adaptive: the final plan, then the initial
    final_plan = plan.split("== Initial Plan ==")[0]
    assert final_plan.count("Exchange hashpartitioning(symbol") == 1 and final_plan.count("Exchange") == 1, plan


def kafka_rows(spark, messages: list[tuple[Trade, int, int]]):
    """``messages`` ((trade, Kafka partition, offset) each) as the Kafka source hands a micro-batch
    to ``foreachBatch``, each in the producers' canonical form."""
    at = datetime(2026, 1, 1, 10, tzinfo=UTC)
    rows = [(t.symbol.encode(), t.model_dump_json().encode(), "trades", partition, offset, at, 0)
            for t, partition, offset in messages]
    return spark.createDataFrame(rows, "key binary, value binary, topic string, partition int, offset long, "
                                       "timestamp timestamp, timestampType int")


def test_a_batch_without_copies_is_written_in_place_and_one_with_copies_goes_through_the_dedupe(
    spark, lake: Settings
) -> None:
    """The dedupe's shuffle is paid only by a batch that holds copies of a trade; either path stores
    every trade once, and a copy of a stored trade is dropped on the in-place path too."""
    from lakehouse.catalog import spark_table_name
    from lakehouse.raw_trades_stream import RawTradesWriter
    from lakehouse.spark import ensure_tables
    from lakehouse.trades import TradeRows

    ensure_tables(spark, lake, (TRADES,))
    writer = RawTradesWriter(lake.with_streaming(fold_interval_seconds=0), "paths")
    paths: list[str] = []
    in_place, first_of_each_trade = writer.trade_rows.in_place, writer.trade_rows.first_of_each_trade
    writer.trade_rows.in_place = lambda *a: paths.append("in place") or in_place(*a)
    writer.trade_rows.first_of_each_trade = lambda *a: paths.append("dedupe") or first_of_each_trade(*a)
    symbols = ("PTH1", "PTH2", "PTH3")
    trades = [trade(symbols[n % 3], n) for n in range(120)]

    writer(kafka_rows(spark, [(t, n % 4, n) for n, t in enumerate(trades[:60])]), 0)
    # Batch 1: the second half, and a copy of each of its first ten trades read earlier in Kafka
    # (a lower partition), so those copies are what is kept.
    resent = [(t, 0, 1_000 + n) for n, t in enumerate(trades[60:70])]
    writer(kafka_rows(spark, [(t, 3, 2_000 + n) for n, t in enumerate(trades[60:])] + resent), 1)
    # Batch 2: a re-sent trade of batch 0 and one new trade, no copies within the batch.
    writer(kafka_rows(spark, [(trades[5], 2, 3_000), (trade("PTH1", 500), 2, 3_001)]), 2)

    assert paths == ["in place", "dedupe", "in place"]
    stored = stored_rows(lake, symbols)
    assert sorted(r["trade_id"] for r in stored) == sorted(t.trade_id for t in [*trades, trade("PTH1", 500)])
    kept = {r["trade_id"]: (r["kafka_partition"], r["kafka_offset"]) for r in stored}
    assert [kept[t.trade_id] for t in trades[60:70]] == [(0, 1_000 + n) for n in range(10)]
    assert spark.table(spark_table_name(lake, TRADES)).count() == 121

    plan = TradeRows.in_place(spark.table(spark_table_name(lake, TRADES)), 2)._jdf.queryExecution()
    assert "Exchange" not in plan.executedPlan().toString(), plan.executedPlan().toString()


def test_a_clock_stepped_back_between_batches_never_stamps_an_append_before_the_previous_one(
    spark, lake: Settings
) -> None:
    """The bars job reads a window's stored trades up to its batch's newest ingest time: an append
    stamped before the previous one had its trades counted twice in such a bar."""
    from lakehouse.raw_trades_stream import RawTradesWriter
    from lakehouse.spark import ensure_tables

    ensure_tables(spark, lake, (TRADES,))
    stepped_back = iter([datetime(2026, 1, 2, 15, 0, 5, tzinfo=UTC), datetime(2026, 1, 2, 15, 0, 3, tzinfo=UTC)])
    writer = RawTradesWriter(lake.with_streaming(fold_interval_seconds=0), "clock", clock=lambda: next(stepped_back))
    writer(kafka_rows(spark, [(trade("CLK1", 0), 0, 0)]), 0)
    writer(kafka_rows(spark, [(trade("CLK1", 1), 0, 1)]), 1)
    stamps = {r["kafka_offset"]: r["ingested_time"] for r in stored_rows(lake, ("CLK1",))}
    assert stamps[1] > stamps[0] == datetime(2026, 1, 2, 15, 0, 5, tzinfo=UTC)


def test_an_ingest_stamp_is_now_unless_that_is_not_after_the_previous_one() -> None:
    from lakehouse.trades import ingest_stamp

    earlier, later = datetime(2026, 1, 2, 15, 0, 3, tzinfo=UTC), datetime(2026, 1, 2, 15, 0, 5, tzinfo=UTC)
    assert ingest_stamp(later, None) == later
    assert ingest_stamp(later, earlier) == later
    assert ingest_stamp(earlier, later) == ingest_stamp(later, later) == later + timedelta(microseconds=1)


def test_the_deduplicated_batch_reaches_the_trades_table_in_partition_order_with_one_shuffle(
    spark, lake: Settings
) -> None:
    """The raw writer keeps one data file open per task (no fanout), so Iceberg has Spark sort each
    task's rows by (day of event_time, symbol). The batch is shuffled once, by the dedupe, and the
    append succeeds (Iceberg's clustered writer refuses rows that come back to a partition it has
    closed)."""
    from lakehouse.catalog import spark_table_name
    from lakehouse.spark import ensure_tables
    from lakehouse.trades import CLUSTERED_WRITE_OPTIONS

    settings = lake
    ensure_tables(spark, settings, (TRADES,))
    name = spark_table_name(settings, TRADES)
    trades = [trade(f"ORD{n % 7}", n) for n in range(210)]
    batch = deduplicated_batch(spark, trades, spread_days=3)
    batch.createOrReplaceTempView("ordered_batch")
    spark.conf.set("spark.sql.iceberg.distribution-mode", CLUSTERED_WRITE_OPTIONS["distribution-mode"])
    try:
        plan = "\n".join(r[0] for r in spark.sql(f"EXPLAIN INSERT INTO {name} SELECT * FROM ordered_batch").collect())
    finally:
        spark.conf.unset("spark.sql.iceberg.distribution-mode")
    # One shuffle (the dedupe's, by symbol). The window sorts by (day, symbol, trade_id); the write's
    # own local sort by (day, symbol) is asked for again, since the day is a projected column Spark
    # does not trace through the dedupe: a sort of sorted rows, no second shuffle.
    assert plan.count("Exchange hashpartitioning") == 1, plan
    assert re.search(r"Sort \[_w0#\d+ ASC NULLS FIRST, symbol#", plan), plan
    assert re.search(r"Sort \[staticinvoke\(class org.apache.iceberg.spark.functions.DaysFunction\S+, DateType, "
                     r"invoke, event_time#\d+, TimestampType, false, true, true\) ASC NULLS FIRST, symbol#", plan), plan

    writer = batch.writeTo(name)
    for key, value in CLUSTERED_WRITE_OPTIONS.items():
        writer = writer.option(key, value)
    writer.append()
    stored = stored_rows(settings, tuple(f"ORD{n}" for n in range(7)))
    assert sorted(r["trade_id"] for r in stored) == sorted(t.trade_id for t in trades)


def test_two_thousand_symbols_are_appended_in_a_few_day_files_then_folded_into_one_zstd_file_per_symbol_day(
    spark, lake: Settings, kafka_broker,
):
    """A whole market's batches (2,000 Zipf-active symbols) through the real stream: re-sent trades
    stored once, and each batch appended as a file per task and day (the append spec), not a file per
    symbol, uncompressed. A fold then moves every row into one zstd file per symbol-day (the default
    spec) in one commit: the same trades, each once, and a symbol's read prunes to its own file."""
    import pyarrow.parquet as pq

    from lakehouse import raw_trades_stream
    from lakehouse.catalog import spark_table_name
    from lakehouse.fold import fold_appended_files
    from lakehouse.spark import append_spec_id, partition_specs

    settings = lake
    topic = new_topic(kafka_broker.bootstrap_servers, settings.kafka.trades_topic, settings.kafka.partitions)
    symbols = ["M" + symbol[1:] for symbol in zipf_symbols(3_000, 2_000, seed=2000)]
    trades = [trade(symbol, 100_000 + n) for n, symbol in enumerate(symbols)]
    resent = random.Random(2000).sample(trades, 400)
    publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in trades + resent])
    streaming = settings.with_streaming(max_offsets_per_trigger=3_000, fold_interval_seconds=0)
    name = spark_table_name(settings, TRADES)
    query = raw_trades_stream.start(spark, streaming)
    query.processAllAvailable()
    batches = [p for p in query.recentProgress if p["numInputRows"]]
    query.stop()

    def stored_ids() -> list[str]:
        return [r.trade_id for r in spark.table(name).select("trade_id").collect()]

    assert len(batches) >= 2  # the re-sent trades came in a batch of their own
    assert sorted(stored_ids()) == sorted(t.trade_id for t in trades)
    append_spec = append_spec_id(spark, TRADES, name)
    default_spec, specs = partition_specs(spark, name)
    assert specs[default_spec] == ["event_time_day", "symbol"] and specs[append_spec] == ["event_time_day"]
    appended = spark.sql(f"SELECT file_path, spec_id FROM {name}.files").collect()
    days = len({t.event_time_ms // 86_400_000 for t in trades})
    assert {r.spec_id for r in appended} == {append_spec}
    assert len(appended) <= len(batches) * settings.streaming.shuffle_partitions * days

    def codecs(file_paths) -> set[str]:
        return {pq.ParquetFile(path.removeprefix("file:")).metadata.row_group(0).column(0).compression
                for path in file_paths}

    assert codecs(r.file_path for r in appended) == {"UNCOMPRESSED"}

    report = fold_appended_files(spark, name)
    folded = spark.sql(f"SELECT file_path, spec_id, partition.symbol AS symbol FROM {name}.files").collect()
    symbol_days = {(t.symbol, t.event_time_ms // 86_400_000) for t in trades}
    assert report.folded_files == len(appended) and report.rows == len(trades)
    assert {r.spec_id for r in folded} == {default_spec}
    assert len(folded) == len(symbol_days) == report.written_files
    assert codecs(r.file_path for r in folded[:20]) == {"ZSTD"}
    assert sorted(stored_ids()) == sorted(t.trade_id for t in trades)
    assert spark.sql(f"SELECT summary['lakehouse.fold'] AS fold FROM {name}.snapshots "
                     "ORDER BY committed_at DESC LIMIT 1").first().fold
    assert fold_appended_files(spark, name).folded_files == 0  # nothing left: no commit
