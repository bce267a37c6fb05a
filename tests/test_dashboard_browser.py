"""The served dashboard in a real browser (headless Chromium over the DevTools protocol), as a person
would see it: candlesticks drawn, the newest bar's numbers equal to ``market.bars_1m``, a bar
committed after the page opened appearing without a reload; in the pipeline view, a producer's
messages and rate and a topic's lag equal to what the test produced and the job consumed, and a
quarantined message's bytes behind the quarantine table's link.

Screenshots are kept under ``test-artifacts/dashboard/`` (git-ignored) to be looked at.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from dashboard import views
from lakehouse.local.chromium import Chromium
from lakehouse.local.processes import free_port, port_open, wait_until
from lakehouse.ops.metrics_http import serve_metrics
from lakehouse.reading import Lakehouse, synthetic
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings
from lakehouse.tables import BARS_1M, QUARANTINE, TRADES
from producers.kafka_sink import KafkaSink, SinkConfig
from producers.metrics import ProducerCollector
from producers.progress import FeedCounters
from tests.kafka_helpers import new_topic
from tests.test_dashboard import trades_for

DAY = synthetic.DEMO_DAY
SYMBOLS = ("AAPL", "MSFT", "NVDA")
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "dashboard"
# Candle bodies as Plotly draws them (one path per candle in the candlestick trace).
CANDLES_JS = "document.querySelectorAll('#chart .boxlayer .trace.boxes path.box').length"
LATEST_JS = ("(() => { const b = document.getElementById('latest-bar'); if (!b) return null;"
             " const t = id => document.getElementById(id).textContent;"
             " return {start: b.dataset.windowStart, open: t('latest-o'), high: t('latest-h'), low: t('latest-l'),"
             " close: t('latest-c'), volume: t('latest-v')}; })()")


def lakehouse_environ(state_dir: Path) -> dict[str, str]:
    """A lakehouse of its own, and a Kafka address where nothing listens (the pipeline view's
    "Kafka down"; never a broker some other process on the machine runs)."""
    return {
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "LAKEHOUSE__LOCAL__STATE_DIR": str(state_dir),
        "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state_dir}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": str(state_dir / "warehouse"),
    }


@pytest.fixture(scope="module")
def lake_environ(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    environ = lakehouse_environ(tmp_path_factory.mktemp("dashboard-browser"))
    synthetic.write_demo_lakehouse(load_settings(environ=environ), symbols=SYMBOLS, day=DAY, commits=2)
    return environ


@contextlib.contextmanager
def dashboard_server(environ: dict[str, str], log: Path) -> Iterator[str]:
    """``python -m dashboard`` on a free loopback port over the lakehouse in ``environ``; its URL."""
    port = free_port()
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "dashboard", "--port", str(port), "--poll-seconds", "1"],
                                  cwd=PROJECT_ROOT, env={**os.environ, **environ}, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        if not wait_until(lambda: port_open("127.0.0.1", port), 60):
            raise RuntimeError(f"the dashboard did not listen on {port} within 60 s:\n{log.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="module")
def served(lake_environ: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dashboard_server(lake_environ, tmp_path_factory.mktemp("dashboard-log") / "dashboard.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium() as chromium:
        yield chromium


def newest_stored_bar(settings: Settings, symbol: str) -> pd.Series:
    bars = Lakehouse(settings).table(BARS_1M).scan(row_filter=f"symbol = '{symbol}'").to_pandas()
    return bars.sort_values("window_start").iloc[-1]


def shown_as(bar: pd.Series) -> dict[str, str]:
    return {"start": pd.Timestamp(bar["window_start"]).isoformat(), "open": views.format_price(bar["open"]),
            "high": views.format_price(bar["high"]), "low": views.format_price(bar["low"]),
            "close": views.format_price(bar["close"]), "volume": views.format_volume(bar["volume"])}


def commit_next_minute(settings: Settings, symbol: str, after: pd.Timestamp) -> pd.Series:
    """The trades of ``symbol``'s last stored minute again, one minute later (so the price goes on
    where it was), and their bar, committed as the jobs would (trades, then the bar); the stored bar."""
    trades = synthetic.synthetic_trades(SYMBOLS, DAY)
    minute = trades[(trades["symbol"] == symbol) & (trades["event_time"].dt.floor("1min") == after)].copy()
    minute["event_time"] += pd.Timedelta(minutes=1)
    minute["trade_id"] = "later-" + minute["trade_id"]
    lake = Lakehouse(settings)
    synthetic.append_rows(lake.table(TRADES), synthetic._arrow(minute, TRADES))
    synthetic.append_rows(lake.table(BARS_1M), synthetic._arrow(synthetic.bars_from_trades(minute), BARS_1M))
    return newest_stored_bar(settings, symbol)


def test_the_page_draws_candles_shows_the_stored_newest_bar_and_updates_without_a_reload(
    served: str, browser: Chromium, lake_environ: dict[str, str]
) -> None:
    settings = load_settings(environ=lake_environ)
    browser.open(served)
    candles = browser.wait_for(CANDLES_JS, timeout_seconds=60, accept=lambda n: n and n > 100)
    shown = browser.wait_for(LATEST_JS, timeout_seconds=30)
    browser.screenshot(ARTIFACTS / "market-view.png")

    newest = newest_stored_bar(settings, "AAPL")
    assert candles == 390  # one candle per minute of the session, in the 1-day range
    assert shown == shown_as(newest)

    browser.evaluate("window.__same_page = true")  # gone if the page reloaded
    later = commit_next_minute(settings, "AAPL", pd.Timestamp(newest["window_start"]))
    updated = browser.wait_for(LATEST_JS, timeout_seconds=20, accept=lambda v: v and v["start"] != shown["start"])
    browser.wait_for(CANDLES_JS, timeout_seconds=10, accept=lambda n: n == candles + 1)
    browser.screenshot(ARTIFACTS / "market-view-after-commit.png")

    assert updated == shown_as(later)
    assert browser.evaluate("window.__same_page === true")


def test_the_pipeline_tab_ages_tables_counts_quarantine_by_reason_and_says_kafka_is_down(
    served: str, browser: Chromium
) -> None:
    browser.open(served)
    browser.wait_for("document.getElementById('tabs') !== null", timeout_seconds=60)
    browser.evaluate("[...document.querySelectorAll('#tabs .tab')].find(t => t.textContent === 'Pipeline').click()")
    ages = browser.wait_for("(document.getElementById('table-ages') || {}).textContent", timeout_seconds=30)
    quarantine = browser.wait_for("(document.getElementById('quarantine-table') || {}).textContent")
    kafka = browser.wait_for("document.getElementById('kafka-lag-panel').textContent", timeout_seconds=30,
                             accept=lambda text: text and not text.startswith("asking"))
    browser.screenshot(ARTIFACTS / "pipeline-view.png")

    for table in ("trades", "bars_1m", "vendor_bars", "late_trades", "quarantine", "feed_events"):
        assert table in ages
    assert "price: Input should be greater than 0" in quarantine
    assert kafka.startswith("Kafka is not answering")


def test_with_no_lakehouse_yet_the_page_says_how_to_make_one(browser: Chromium, tmp_path: Path) -> None:
    with dashboard_server(lakehouse_environ(tmp_path / "nothing-yet"), tmp_path / "dashboard.log") as url:
        browser.open(url)
        said = browser.wait_for("(document.getElementById('catalog-message') || {}).textContent", 60)
        status = browser.evaluate("document.getElementById('status').textContent")
        browser.screenshot(ARTIFACTS / "no-lakehouse.png")

    assert "no lakehouse catalog" in said and "make demo" in said
    assert status.startswith("catalog unavailable")
    assert "Traceback" not in browser.evaluate("document.body.innerText")


PRODUCER_JS = ("(() => { const r = document.querySelector('#producer-table tr[data-source=\"finnhub\"]');"
               " if (!r) return null; return {messages: r.dataset.messages, windowMessages: r.dataset.windowMessages,"
               " windowSeconds: r.dataset.windowSeconds, rate: r.querySelector('.rate').textContent}; })()")


def lag_js(topic: str, job: str) -> str:
    return (f"(() => {{ const r = document.querySelector('#kafka-lag tr[data-topic=\"{topic}\"][data-job=\"{job}\"]');"
            " return r ? r.querySelector('.lag').textContent : null; })()")


def test_the_pipeline_tab_shows_the_producers_rate_the_topics_lag_and_a_quarantined_messages_bytes(
    browser: Chromium, spark, lake: Settings, kafka_broker, tmp_path: Path
) -> None:
    """A producer's collector and sink (as the Finnhub producer runs them) publish trades and one
    malformed message; the raw-trades job consumes them and quarantines that message; then more
    trades arrive, unread. The page must show the producer's messages and rate, the topic's lag
    for the job, and, behind the quarantine table's link, the malformed message's bytes."""
    from lakehouse import raw_trades_stream

    stream_settings = lake
    topic = new_topic(kafka_broker.bootstrap_servers, stream_settings.kafka.trades_topic, partitions=2)
    sink, registry, port = KafkaSink(SinkConfig(kafka_broker.bootstrap_servers)), CollectorRegistry(), free_port()
    registry.register(ProducerCollector("finnhub", sink, FeedCounters(reconnects=1)))
    stop_metrics = serve_metrics(port, "finnhub producer", registry)
    malformed = b'{"s":"BRWS","p":"not a price","t":1767640000000,"v":3}'
    try:
        for trade in trades_for(40):
            sink.publish(topic, trade)
        sink.publish_raw(topic, b"BRWS", malformed)
        sink.flush(30)
        query = raw_trades_stream.start(spark, stream_settings)
        try:
            query.processAllAvailable()
        finally:
            query.stop()

        environ = {
            "LAKEHOUSE__LOCAL__STATE_DIR": str(stream_settings.state_dir),
            "LAKEHOUSE__CATALOG__URI": stream_settings.catalog.uri,
            "LAKEHOUSE__CATALOG__WAREHOUSE": stream_settings.catalog.warehouse,
            "LAKEHOUSE__CATALOG__NAMESPACE": stream_settings.catalog.namespace,
            "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
            "LAKEHOUSE__KAFKA__TRADES_TOPIC": topic,
            "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": stream_settings.streaming.checkpoint_dir,
            "LAKEHOUSE__METRICS__FINNHUB_PORT": str(port),
        }
        with dashboard_server(environ, tmp_path / "dashboard.log") as url:
            browser.open(url)
            browser.wait_for("document.getElementById('tabs') !== null", timeout_seconds=60)
            browser.evaluate("[...document.querySelectorAll('#tabs .tab')]"
                             ".find(t => t.textContent === 'Pipeline').click()")
            browser.wait_for(PRODUCER_JS, timeout_seconds=60, accept=lambda r: r and r["messages"] == "41")
            consumed = browser.wait_for(lag_js(topic, "raw_trades"), timeout_seconds=30)

            for trade in trades_for(25, first=40):  # produced, not consumed
                sink.publish(topic, trade)
            sink.flush(30)
            lag = browser.wait_for(lag_js(topic, "raw_trades"), timeout_seconds=30, accept=lambda v: v != consumed)
            producer = browser.wait_for(PRODUCER_JS, timeout_seconds=30,
                                        accept=lambda r: r and r["windowMessages"] == "25")
            browser.evaluate("document.getElementById('producer-metrics').scrollIntoView()")
            browser.screenshot(ARTIFACTS / "pipeline-producers-and-lag.png")

            # The quarantine table comes from its own callback, which may answer after the feeds.
            quarantined_row = (f"[...document.querySelectorAll('#quarantine-table tr')]"
                               f".find(r => r.cells[0].textContent === '{topic}')")
            browser.wait_for(f"{quarantined_row} !== undefined", timeout_seconds=60)
            browser.evaluate(f"{quarantined_row}.querySelector('a').click()")
            shown = browser.wait_for("(document.getElementById('example-raw_value') || {}).textContent", 30)
            example_offset = browser.evaluate("document.getElementById('example-kafka_offset').textContent")
            same_page = browser.evaluate("document.getElementById('producer-table') !== null")
            browser.evaluate("document.getElementById('example-row').scrollIntoView()")
            browser.screenshot(ARTIFACTS / "pipeline-quarantine-example.png")
    finally:
        stop_metrics()
        sink.close()

    assert consumed == "0"
    assert lag == "25"
    assert producer["messages"] == "66"
    assert producer["rate"] == views.format_rate(25, float(producer["windowSeconds"]))
    assert shown == malformed.decode()
    stored = Lakehouse(stream_settings).table(QUARANTINE).scan(row_filter=f"topic = '{topic}'").to_pandas()
    assert list(stored["raw_value"]) == [malformed]
    assert example_offset == str(stored["kafka_offset"].iloc[0])
    assert same_page
