"""Every notebook in notebooks/ runs end to end on a populated lakehouse and saves its charts.

Each notebook runs in a fresh Jupyter kernel (nbclient), which inherits this process's environment:
the ``LAKEHOUSE__*`` variables set here point its ``load_settings()`` at the lakehouse the real
pipeline (Kafka -> raw-trades and bars jobs) filled for this module, in a namespace of its own,
exactly as an analyst's shell would. The "parameters" cell is replaced (papermill-style) so charts go to a
temporary folder. Any cell error fails the test; every chart a notebook saves must be a non-empty PNG.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lakehouse.messages import BarInterval, FeedEvent, FeedEventKind, Source, Trade, VendorBar, trade_id
from lakehouse.reading import Lakehouse, synthetic
from lakehouse.settings import PROJECT_ROOT, Settings
from tests.conftest import environ_of, isolated, unique_name
from tests.kafka_helpers import new_topic, publish

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAVED_CHART = re.compile(r'output / "([\w.-]+\.png)"')


PIPELINE_SYMBOLS = ("IBM", "ORCL", "META", "JPM")
LATE_TRADES = 8


def as_message(row) -> Trade:
    event_ms = int(row.event_time.timestamp() * 1000)
    return Trade(
        source=Source.FINNHUB, symbol=row.symbol, price=float(row.price), volume=float(row.volume),
        event_time_ms=event_ms, conditions=list(row.conditions), venue=None,
        received_time_ms=int(row.received_time.timestamp() * 1000),
        trade_id=trade_id(Source.FINNHUB, row.symbol, event_ms, float(row.price), float(row.volume),
                          list(row.conditions), ordinal=int(row.kafka_offset)),
    )


def populate_lakehouse(settings: Settings, bootstrap_servers: str, spark) -> dict[str, str]:
    """Fill the lakehouse through the real pipeline; return the environment that points a kernel at it.

    The one place the notebooks' test data is made: a session of trades for four symbols goes
    through Kafka and the raw-trades and bars jobs, with re-sent duplicates, malformed messages,
    trades that arrive after their bar closed, vnstock vendor bars and a producer gap.
    """
    from lakehouse import keyed_topic_job, raw_trades_stream
    from lakehouse.bars_stream import start_bars_query
    from lakehouse.keyed_topics import FEED_EVENTS_STREAM, VENDOR_BARS_STREAM
    from lakehouse.spark import ensure_tables

    trades = [as_message(row) for row in synthetic.synthetic_trades(PIPELINE_SYMBOLS, trades_per_minute=5).itertuples()]
    on_time, late = trades[LATE_TRADES:], trades[:LATE_TRADES]  # the session's first trades come last
    k = settings.kafka
    for topic in (k.trades_topic, k.vendor_bars_topic, k.feed_events_topic):
        new_topic(bootstrap_servers, topic, k.partitions)
    malformed = [(b"IBM", b'{"symbol": "IBM", "price": "n/a"}'), (b"ORCL", b"\x00\x01 not json")]
    publish(bootstrap_servers, k.trades_topic,
            [(t.key(), t.to_json_bytes()) for t in on_time + on_time[:300]] + malformed)
    opened = int(synthetic.session_open(synthetic.DEMO_DAY).timestamp() * 1000)
    vendor = [
        VendorBar(source=Source.VNSTOCK, symbol=symbol, interval=BarInterval.DAY_1,
                  bar_start_ms=opened - d * 86_400_000,
                  open=25.0 + d, high=26.5 + d, low=24.5 + d, close=26.0 + d, volume=1e6, received_time_ms=opened)
        for symbol in ("FPT", "HPG") for d in range(5)
    ]
    publish(bootstrap_servers, k.vendor_bars_topic, [(b.key(), b.to_json_bytes()) for b in vendor])
    gap = FeedEvent(source=Source.FINNHUB, kind=FeedEventKind.GAP, start_ms=opened + 47 * 60_000,
                    end_ms=opened + 47 * 60_000 + 95_000, reason="websocket closed by server (1006)")
    publish(bootstrap_servers, k.feed_events_topic, [(gap.key(), gap.to_json_bytes())])

    ensure_tables(spark, settings)  # every table first, as the pipeline job does, then the queries
    queries = [raw_trades_stream.start(spark, settings), start_bars_query(spark, settings),
               keyed_topic_job.start(VENDOR_BARS_STREAM, spark, settings),
               keyed_topic_job.start(FEED_EVENTS_STREAM, spark, settings)]
    try:
        for query in queries:
            query.processAllAvailable()
        publish(bootstrap_servers, k.trades_topic, [(t.key(), t.to_json_bytes()) for t in late])
        for query in queries[:2]:
            query.processAllAvailable()
    finally:
        for query in queries:
            query.stop()
    return environ_of(settings)


@pytest.fixture(scope="module")
def lakehouse_environ(settings: Settings, kafka_broker, spark) -> dict[str, str]:
    """The notebooks' lakehouse: a namespace, topics and checkpoints of this module's own."""
    own = isolated(settings, unique_name("notebooks"))
    environ = populate_lakehouse(own, kafka_broker.bootstrap_servers, spark)
    lake = Lakehouse(own)
    assert set(PIPELINE_SYMBOLS) == set(lake.symbols()), "the pipeline produced no bars for the notebook symbols"
    assert len(lake.late_trade_counts()) > 0, "the late trades did not reach late_trades"
    return environ


def with_parameters(notebook: nbformat.NotebookNode, **values: object) -> nbformat.NotebookNode:
    """Replace the cell tagged "parameters" by assignments of ``values`` (what papermill does)."""
    cells = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "each notebook needs exactly one cell tagged 'parameters'"
    cells[0].source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    return notebook


def charts_saved_by(notebook: nbformat.NotebookNode) -> list[str]:
    return [name for cell in notebook.cells if cell.cell_type == "code" for name in SAVED_CHART.findall(cell.source)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_end_to_end_and_saves_non_empty_charts(
    path: Path, lakehouse_environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in lakehouse_environ.items():
        monkeypatch.setenv(name, value)
    run_notebook(path, tmp_path)


def run_notebook(path: Path, tmp_path: Path, min_chart_bytes: int = 5_000) -> None:
    """Run ``path`` in a fresh kernel (this process's environment: its LAKEHOUSE__* settings) with
    charts going under ``tmp_path``; fail on any cell error or a chart it did not save."""
    notebook = nbformat.read(path, as_version=4)
    expected_charts = charts_saved_by(notebook)
    assert expected_charts, f"{path.name} saves no chart"
    output = tmp_path / "charts"
    with_parameters(notebook, OUTPUT_DIR=str(output), SYMBOL=None)

    client = NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    for name in expected_charts:
        chart = output / name
        assert chart.exists(), f"{path.name} did not save {name}"
        assert chart.stat().st_size > min_chart_bytes, f"{name} is suspiciously small"
        assert chart.read_bytes()[:8] == PNG_SIGNATURE
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_notebooks_are_committed_without_outputs() -> None:
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), path.name


def test_there_are_four_notebooks() -> None:
    assert [p.stem[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


PYICEBERG_NOTEBOOKS = [p for p in NOTEBOOKS if "spark" not in p.stem]  # 04 starts a Spark session


def synthetic_lakehouse(state_dir: Path, symbols: tuple[str, ...]) -> Settings:
    """A pyiceberg-written lakehouse of one session of ``symbols``; none: its tables, without bars."""
    from tests.test_reader import embedded_settings

    settings = embedded_settings(state_dir)
    if symbols:
        synthetic.write_demo_lakehouse(settings, symbols=symbols, commits=1)
    else:
        synthetic.create_tables(settings)
    return settings


@pytest.fixture(scope="module")
def kernel_on(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[tuple[str, ...]], NotebookClient]]:
    """A running kernel on a synthetic lakehouse of ``symbols``, one per lakehouse, shared by the checks
    that a notebook stops in its first cell: a kernel's start and the notebooks' imports cost about
    6 s of CPU, the first cell itself under a second. ``run_in`` clears the kernel's namespace before
    each notebook, so none sees another's variables (modules stay imported)."""
    with ExitStack() as kernels_running:
        kernels: dict[tuple[str, ...], NotebookClient] = {}

        def kernel(symbols: tuple[str, ...]) -> NotebookClient:
            if symbols not in kernels:
                settings = synthetic_lakehouse(tmp_path_factory.mktemp("lakehouse"), symbols)
                client = NotebookClient(nbformat.v4.new_notebook(), timeout=120, kernel_name="python3",
                                        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
                kernels_running.enter_context(client.setup_kernel(env={**os.environ, **environ_of(settings)}))
                kernels[symbols] = client
            return kernels[symbols]

        yield kernel


def run_in(client: NotebookClient, notebook: nbformat.NotebookNode) -> None:
    """Run ``notebook``'s cells in ``client``'s kernel, after ``%reset -f`` (a fresh namespace); a cell
    error raises CellExecutionError, with the cell and traceback, as ``NotebookClient.execute`` does."""
    reset = nbformat.v4.new_code_cell("%reset -f")
    client.nb = nbformat.v4.new_notebook(cells=[reset])
    client.execute_cell(reset, 0)
    client.nb = notebook
    for index, cell in enumerate(notebook.cells):
        client.execute_cell(cell, index)


@pytest.mark.parametrize("path", PYICEBERG_NOTEBOOKS, ids=[p.stem for p in PYICEBERG_NOTEBOOKS])
@pytest.mark.parametrize("symbol, symbols, expected", [
    ("aapl", ("AAPL", "MSFT"), r"unknown symbol 'aapl' \(did you mean AAPL\?\) in table bars_1m"),
    (None, (), r"table bars_1m holds no symbols yet: run `make demo`"),
], ids=["lower-case symbol", "no bars yet"])
def test_a_symbol_parameter_it_cannot_chart_stops_the_notebook_in_its_first_cell(
    path: Path, symbol: str | None, symbols: tuple[str, ...], expected: str, tmp_path: Path,
    kernel_on: Callable[[tuple[str, ...]], NotebookClient],
) -> None:
    """A symbol the lakehouse does not hold failed cells later ("Cannot cut empty array" in 02) or
    not at all (03); a lakehouse without bars with "list index out of range"."""
    from nbclient.exceptions import CellExecutionError

    notebook = with_parameters(nbformat.read(path, as_version=4), OUTPUT_DIR=str(tmp_path / "charts"), SYMBOL=symbol)

    with pytest.raises(CellExecutionError, match=expected) as stopped:
        run_in(kernel_on(symbols), notebook)
    assert "symbols = lake.symbols()" in str(stopped.value)  # the first cell after the parameters


@pytest.fixture(scope="module")
def stopped_trading_environ(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """AAPL's session, then four weeks later MSFT's and NVDA's (AAPL silent since): notebooks only read it."""
    settings = synthetic_lakehouse(tmp_path_factory.mktemp("stopped-trading"), ("AAPL",))
    synthetic.write_demo_lakehouse(settings, symbols=("MSFT", "NVDA"), day=synthetic.DEMO_DAY + timedelta(days=28),
                                   commits=1)
    return environ_of(settings)


@pytest.mark.parametrize("path", PYICEBERG_NOTEBOOKS, ids=[p.stem for p in PYICEBERG_NOTEBOOKS])
def test_a_notebook_charts_a_symbol_that_stopped_trading_before_the_others(
    path: Path, stopped_trading_environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """02 analysed the lakehouse's newest day, where the symbol it charts (the first, AAPL, silent
    for four weeks) had no bars: "Cannot cut empty array" in its volume-at-price cell."""
    for name, value in stopped_trading_environ.items():
        monkeypatch.setenv(name, value)
    run_notebook(path, tmp_path)
