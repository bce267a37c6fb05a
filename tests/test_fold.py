"""Two partition specs: day-only appends from the streams, folded into day-symbol files.

Pure: which ``ALTER TABLE`` clauses give a table its specs. Real Spark, Iceberg and Kafka: a table of
the previous version evolves in place, folds run in the background while the stream appends, and
every trade is stored once, read the same by Spark and by pyiceberg, before and after.
"""

from __future__ import annotations

import random

from lakehouse.fold import MIN_READ_SPLIT_BYTES, read_split_bytes
from lakehouse.settings import Settings
from lakehouse.tables import BARS_1M, TRADES, VENDOR_BARS, partition_field_name, spec_evolution
from tests.kafka_helpers import new_topic, publish
from tests.test_raw_trades import deduplicated_batch, stored_rows, trade, zipf_symbols


def test_partition_field_names_are_icebergs() -> None:
    assert partition_field_name("symbol") == "symbol"
    assert partition_field_name("days(event_time)") == "event_time_day"
    assert partition_field_name("days( window_start )") == "window_start_day"


def test_a_folds_read_gives_every_core_a_share_of_the_appended_bytes_in_tasks_not_too_small() -> None:
    mib = 2**20
    assert read_split_bytes(300 * mib, 2) == 150 * mib  # two cores, two tasks
    assert read_split_bytes(300 * mib + 1, 2) == 150 * mib + 1  # rounded up: not a third, tiny task
    assert read_split_bytes(300 * mib, 8) == -(-300 * mib // 8)
    assert read_split_bytes(5 * mib, 2) == MIN_READ_SPLIT_BYTES  # a few small files: one task
    assert read_split_bytes(0, 0) == MIN_READ_SPLIT_BYTES


def test_a_new_table_created_with_its_append_spec_adds_the_symbol_after_it() -> None:
    assert spec_evolution(TRADES, ["event_time_day"], [["event_time_day"]]) == ["ADD PARTITION FIELD symbol"]


def test_a_table_of_the_previous_version_drops_its_symbol_field_and_adds_it_back_after_the_day() -> None:
    assert spec_evolution(TRADES, ["symbol", "event_time_day"], [["symbol", "event_time_day"]]) == [
        "DROP PARTITION FIELD symbol", "ADD PARTITION FIELD symbol"]


def test_a_table_with_both_specs_and_a_table_without_an_append_spec_change_nothing() -> None:
    both = [["symbol", "event_time_day"], ["event_time_day"], ["event_time_day", "symbol"]]
    assert spec_evolution(TRADES, ["event_time_day", "symbol"], both) == []
    assert spec_evolution(VENDOR_BARS, ["symbol"], [["symbol"]]) == []


def test_a_bars_table_of_the_previous_version_gets_the_day_first_as_trades_did() -> None:
    assert spec_evolution(BARS_1M, ["symbol", "window_start_day"], [["symbol", "window_start_day"]]) == [
        "DROP PARTITION FIELD symbol", "ADD PARTITION FIELD symbol"]


def test_a_table_of_the_previous_version_evolves_in_place_and_its_old_files_stay_readable(spark, lake: Settings):
    """``ensure_tables`` on a trades table created by the previous DDL (symbol, day): its rows and
    files stay, the append spec and the (day, symbol) default are added, and a fold leaves the old
    spec's files alone (they are day-symbol files already) while moving the new appends."""
    from lakehouse.catalog import spark_table_name
    from lakehouse.fold import fold_appended_files
    from lakehouse.spark import append_spec_id, ensure_tables, partition_specs
    from lakehouse.tables import create_table_ddl

    settings = lake
    name = spark_table_name(settings, TRADES)
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {settings.catalog.name}.{settings.catalog.namespace}")
    old_ddl = create_table_ddl(TRADES, name).replace(
        "PARTITIONED BY (days(event_time))", "PARTITIONED BY (symbol, days(event_time))")
    spark.sql(old_ddl)
    old = [trade("OLDA", n) for n in range(30)] + [trade("OLDB", n) for n in range(30, 50)]
    _append(spark, name, old, options={})
    assert partition_specs(spark, name)[1] == {0: ["symbol", "event_time_day"]}

    ensure_tables(spark, settings, (TRADES,))
    ensure_tables(spark, settings, (TRADES,))  # idempotent: no second evolution
    default_spec, specs = partition_specs(spark, name)
    assert specs[default_spec] == ["event_time_day", "symbol"]
    append_spec = append_spec_id(spark, TRADES, name)
    assert specs[append_spec] == ["event_time_day"] and len(specs) == 3

    new = [trade("OLDA", n) for n in range(50, 80)] + [trade("NEWC", n) for n in range(80, 100)]
    _append(spark, name, new, options={"output-spec-id": str(append_spec)})
    report = fold_appended_files(spark, name)
    assert report.folded_files >= 1 and report.rows == len(new)
    files = spark.sql(f"SELECT spec_id, count(*) AS n FROM {name}.files GROUP BY 1").collect()
    by_spec = {r.spec_id: r.n for r in files}
    assert by_spec == {0: 2, default_spec: 2}  # OLDA and OLDB as they were; OLDA and NEWC folded
    expected = sorted(t.trade_id for t in old + new)
    assert sorted(r.trade_id for r in spark.table(name).select("trade_id").collect()) == expected
    assert sorted(r["trade_id"] for r in stored_rows(settings, ("OLDA", "OLDB", "NEWC"))) == expected


def test_folds_in_the_background_of_a_live_stream_store_every_trade_once(spark, lake: Settings, kafka_broker):
    """The real stream in many small batches with a fold every half second: folds commit between
    the stream's appends (Iceberg retries the metadata swap; an append never conflicts with a
    rewrite), every trade is stored once, and the reader finds the symbols of unfolded files too."""
    from lakehouse import raw_trades_stream
    from lakehouse.catalog import spark_table_name
    from lakehouse.fold import fold_appended_files
    from lakehouse.reading.api import Lakehouse

    settings = lake
    topic = new_topic(kafka_broker.bootstrap_servers, settings.kafka.trades_topic, settings.kafka.partitions)
    symbols = zipf_symbols(3_000, 300, seed=11)
    trades = [trade(symbol, n) for n, symbol in enumerate(symbols)]
    resent = random.Random(11).sample(trades, 150)
    publish(kafka_broker.bootstrap_servers, topic, [(t.key(), t.to_json_bytes()) for t in trades + resent])
    streaming = settings.with_streaming(max_offsets_per_trigger=300, trigger_seconds=0, fold_interval_seconds=0.5)
    name = spark_table_name(settings, TRADES)
    query = raw_trades_stream.start(spark, streaming)
    query.processAllAvailable()
    query.stop()

    operations = [r.operation for r in spark.sql(
        f"SELECT operation FROM {name}.snapshots ORDER BY committed_at").collect()]
    folds = [i for i, op in enumerate(operations) if op == "replace"]
    assert folds and any(op == "append" for op in operations[folds[0]:]), operations  # folded mid-stream

    def stored_ids() -> list[str]:
        return sorted(r.trade_id for r in spark.table(name).select("trade_id").collect())

    expected = sorted(t.trade_id for t in trades)
    assert stored_ids() == expected
    # Some appends are still unfolded here: the reader knows their symbols and newest trades.
    reader = Lakehouse(settings)
    assert set(reader.symbols(TRADES)) == set(symbols)
    newest = reader.freshness().set_index("symbol")["latest_trade_time"]
    last_of = {}
    for t in trades:
        last_of[t.symbol] = max(last_of.get(t.symbol, 0), t.event_time_ms)
    assert {s: int(ts.timestamp() * 1000) for s, ts in newest.items()} == last_of

    fold_appended_files(spark, name)
    assert spark.sql(f"SELECT count(*) AS n FROM {name}.files WHERE partition.symbol IS NULL").first().n == 0
    assert stored_ids() == expected


def _append(spark, name: str, trades, options: dict[str, str]) -> None:
    from lakehouse.trades import CLUSTERED_WRITE_OPTIONS

    writer = deduplicated_batch(spark, trades).writeTo(name)
    for key, value in {**CLUSTERED_WRITE_OPTIONS, **options}.items():
        writer = writer.option(key, value)
    writer.append()
