"""Vendor bars and feed events through real Kafka, Spark and Iceberg: upserted on key, rejects quarantined."""

from __future__ import annotations

from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.messages import BarInterval, FeedEvent, FeedEventKind, Source, VendorBar
from lakehouse.settings import Settings
from lakehouse.tables import FEED_EVENTS, QUARANTINE, VENDOR_BARS
from tests.kafka_helpers import new_topic, publish

DAY_MS = 86_400_000
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def bar(symbol: str, day: int, close: float, received_ms: int, interval: BarInterval = BarInterval.DAY_1) -> VendorBar:
    return VendorBar(
        source=Source.VNSTOCK, symbol=symbol, interval=interval, bar_start_ms=BASE_MS + day * DAY_MS,
        open=100.0, high=max(110.0, close), low=min(90.0, close), close=close, volume=1000.0 + day,
        received_time_ms=received_ms,
    )


def test_vendor_bars_upsert_on_their_key_and_bad_bars_are_quarantined(spark, lake: Settings, kafka_broker):
    from lakehouse import keyed_topic_job
    from lakehouse.keyed_topics import VENDOR_BARS_STREAM
    settings = lake

    topic = new_topic(kafka_broker.bootstrap_servers, settings.kafka.vendor_bars_topic, settings.kafka.partitions)
    first = [bar("VCB", day, 100.0 + day, received_ms=BASE_MS + 10 * DAY_MS) for day in range(5)]
    broken = first[0].to_json_bytes().replace(b'"high":110.0', b'"high":50.0')
    publish(kafka_broker.bootstrap_servers, topic, [(b.key(), b.to_json_bytes()) for b in first] + [(b"VCB", broken)])

    query = keyed_topic_job.start(VENDOR_BARS_STREAM, spark, settings)
    query.processAllAvailable()
    # The vendor revises day 4's close (an intraday bar finalised later) and re-sends day 0 unchanged.
    revised = bar("VCB", 4, 120.0, received_ms=BASE_MS + 11 * DAY_MS)
    publish(kafka_broker.bootstrap_servers, topic, [(revised.key(), revised.to_json_bytes()),
                                                    (first[0].key(), first[0].to_json_bytes())])
    query.processAllAvailable()
    query.stop()

    catalog = load_catalog(settings)
    rows = catalog.load_table(table_identifier(settings, VENDOR_BARS)).scan(row_filter="symbol == 'VCB'").to_arrow()
    closes = sorted((r["bar_start"].timestamp(), r["close"]) for r in rows.to_pylist())
    assert [c for _, c in closes] == [100.0, 101.0, 102.0, 103.0, 120.0]
    quarantine = catalog.load_table(table_identifier(settings, QUARANTINE)).scan().to_arrow().to_pylist()
    assert [r["reason"] for r in quarantine if r["raw_value"] == broken] == [
        "Value error, low <= open, close <= high does not hold"
    ]


def test_feed_gaps_land_once_even_when_resent(spark, lake: Settings, kafka_broker):
    from lakehouse import keyed_topic_job
    from lakehouse.keyed_topics import FEED_EVENTS_STREAM
    settings = lake

    topic = new_topic(kafka_broker.bootstrap_servers, settings.kafka.feed_events_topic, settings.kafka.partitions)
    gap = FeedEvent(source=Source.FINNHUB, kind=FeedEventKind.GAP, start_ms=BASE_MS, end_ms=BASE_MS + 4200,
                    reason="connection closed (1006)")
    publish(kafka_broker.bootstrap_servers, topic, [(gap.key(), gap.to_json_bytes())] * 2)

    query = keyed_topic_job.start(FEED_EVENTS_STREAM, spark, settings)
    query.processAllAvailable()
    query.stop()

    events = load_catalog(settings).load_table(table_identifier(settings, FEED_EVENTS)).scan().to_arrow()
    rows = [r for r in events.to_pylist() if r["start_time"].timestamp() * 1000 == BASE_MS]
    assert len(rows) == 1
    assert rows[0]["reason"] == "connection closed (1006)"
    assert (rows[0]["end_time"] - rows[0]["start_time"]).total_seconds() == 4.2


def test_frames_a_producer_rejected_land_in_the_quarantine_table(spark, lake: Settings, kafka_broker):
    from lakehouse import keyed_topic_job
    from lakehouse.keyed_topics import SOURCE_REJECTS_STREAM
    from lakehouse.messages import QuarantinedInput
    settings = lake

    topic = new_topic(kafka_broker.bootstrap_servers, settings.kafka.quarantine_topic, settings.kafka.partitions)
    frame = '{"type":"trade","data":[{"s":"AAPL","p":"NaN"}]}'
    reject = QuarantinedInput(source=Source.FINNHUB, reason="item 0: price is not a number", raw=frame,
                              received_time_ms=BASE_MS)
    publish(kafka_broker.bootstrap_servers, topic, [(reject.key(), reject.to_json_bytes())])

    query = keyed_topic_job.start(SOURCE_REJECTS_STREAM, spark, settings)
    query.processAllAvailable()
    query.processAllAvailable()
    query.stop()

    rows = load_catalog(settings).load_table(table_identifier(settings, QUARANTINE)).scan().to_arrow().to_pylist()
    mine = [r for r in rows if r["topic"] == topic]
    assert len(mine) == 1
    assert mine[0]["raw_value"] == frame.encode()
    assert mine[0]["reason"] == "finnhub producer: item 0: price is not a number"
