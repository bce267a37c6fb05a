"""Fixtures that start the real local components (no mocks) and stop them afterwards, the markers
that say what a test needs, and the isolation every integration test gets by fixture.

Markers (registered in pyproject.toml), exactly one per test, set at collection:

* ``topology``: the cluster tests under ``tests/topology/``;
* ``integration``: the test uses a fixture that starts a real component (``INTEGRATION_FIXTURES``,
  directly or through another fixture), or its module says ``pytestmark = pytest.mark.integration``
  because its tests start a process or server in their own body;
* ``unit``: everything else: in-process, no JVM, no server, no child process (``make test-unit``).

Isolation: the session shares one broker, one Spark session and one SQLite catalog (starting each
costs seconds to tens of seconds), so what a test writes must not be seen by another. The ``lake``
fixture (or ``isolated`` for a module-scoped fixture) gives a test its own catalog namespace (its
own tables), its own topic names and its own checkpoint directory; no test writes the session's
default namespace or topics.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse.local import class_archive
from lakehouse.local._daemon import EmulatorProcess
from lakehouse.local.kafka_broker import LocalKafkaBroker
from lakehouse.local.processes import free_port
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings

KAFKA_JARS = PROJECT_ROOT / "jars" / "kafka"

# Fixtures that start a JVM, a broker, an emulator, a server, a browser or a child process; a test
# whose fixture closure holds one of them is an integration test.
INTEGRATION_FIXTURES = frozenset({
    "kafka_broker", "spark", "bars_spark", "airflow_env", "emulator", "client", "postgres", "rest_catalog",
    "bigquery", "gcs", "served", "browser", "fake_bigquery", "token_endpoint", "simulator", "server",
    "vnstock_as_a_fresh_process", "cluster", "bigquery_server",
})
KINDS = ("unit", "integration", "topology")


# The JVMs the tests start through spark-submit (the in-process session's, every ``spark-submit.sh``
# job's) live seconds to a minute on small data, where compiling Spark for peak speed costs more
# than it returns (docs/testing.md).
# The jobs' own runs keep tiered compilation (docs/performance.md, code generation and JIT).
# C1 alone makes the JVM size its code cache for it (48 MiB instead of tiered's 240): the session's
# JVM, which compiles Spark's generated classes for the whole run, filled it ("Out of space in
# CodeCache"), and Spark stopped its context mid-suite. So the cache keeps tiered's size.
# The serial collector: on these small heaps and short lives, G1's concurrent threads cost more CPU
# than its short pauses save (docs/testing.md: tests/test_bars.py 159-160 s against 172-180 s).
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:+UseSerialGC"
# The test brokers likewise, through Kafka's own variable for GC and JIT options, which
# ``lakehouse.local.kafka_broker`` reads (docs/testing.md: a broker in about two thirds of its CPU).
TEST_BROKER_JVM_OPTIONS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"


def driver_jvm_options() -> str:
    """``TEST_JVM_OPTIONS``, and the driver's class-data archive where ``make test`` has written it
    (``lakehouse.local.class_archive``: a local maintenance job in about four fifths of its CPU)."""
    archive = class_archive.archive_path(load_settings(environ={}))
    return f"{TEST_JVM_OPTIONS} {class_archive.driver_options(archive)}" if archive.is_file() else TEST_JVM_OPTIONS


# The Python bytecode the session's child interpreters (CLIs, spark-submit drivers, Airflow) compile,
# shared between them for the session. With PYTHONDONTWRITEBYTECODE set (as in the shell the suite's
# timings come from) and no bytecode in the virtualenvs, each of them compiled every module it
# imported again: `import airflow` 7.0 CPU-s, 3.1 with the cache; `jobs.bigquery_sync --dry-run`
# 7.3, 2.2. Nothing is written beside the sources: the cache is a temporary folder, removed after.
_bytecode_cache: Path | None = None


def share_child_bytecode() -> None:
    """Have every child interpreter write and read its bytecode in one temporary folder (set once, by
    the controller; xdist's workers, started after, inherit it)."""
    global _bytecode_cache
    if "PYTHONPYCACHEPREFIX" in os.environ:
        return
    _bytecode_cache = Path(tempfile.mkdtemp(prefix="lakehouse-tests-bytecode-"))
    os.environ["PYTHONPYCACHEPREFIX"] = str(_bytecode_cache)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _bytecode_cache is not None:
        shutil.rmtree(_bytecode_cache, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    """Set the driver JVM options for every Spark driver JVM this session and its children start,
    and a bytecode cache the child interpreters share; with ``--store-durations``, have the
    controller (not xdist's workers) add up the scopes' seconds."""
    share_child_bytecode()
    os.environ["SPARK_SUBMIT_OPTS"] = f"{os.environ.get('SPARK_SUBMIT_OPTS', '')} {driver_jvm_options()}".strip()
    # Set outright: the suite's brokers are its own, and a shell's options for another Kafka must not
    # reach them.
    os.environ["KAFKA_JVM_PERFORMANCE_OPTS"] = TEST_BROKER_JVM_OPTIONS
    global _recording_durations
    _recording_durations = config.getoption("store_durations") and not hasattr(config, "workerinput")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each test exactly one of ``KINDS``: topology by folder, integration by fixture or by its
    module's explicit mark, unit otherwise; a test marked ``unit`` by hand that needs a component is
    a collection error rather than a JVM start in ``make test-unit``."""
    topology_dir = Path(__file__).parent / "topology"
    for item in items:
        declared = {mark.name for mark in item.iter_markers() if mark.name in KINDS}
        needs = sorted(INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())))
        if topology_dir in Path(item.path).parents:
            kind = "topology"
        elif "integration" in declared or needs:
            kind = "integration"
        else:
            kind = "unit"
        if "unit" in declared and needs:
            raise pytest.UsageError(f"{item.nodeid} is marked unit but needs {needs}")
        if kind not in declared:
            item.add_marker(getattr(pytest.mark, kind))


# ---------------------------------------------------------------- scheduling on pytest-xdist workers

# Each test scope's (module's) seconds in a recent full run: the scheduler hands out the longest
# first, so a parallel run does not end with one worker busy on a long module while the other idles.
# Refreshed by `make test-durations`; a scope it does not list counts a second per test.
SCOPE_SECONDS_FILE = Path(__file__).parent / "scope_seconds.json"
_scope_seconds: dict[str, float] = {}
_recording_durations = False


def scope_of(nodeid: str) -> str:
    """The unit a worker gets: a module, or the whole topology folder (one cluster for its tests)."""
    module = nodeid.split("::", 1)[0]
    return "tests/topology" if module.startswith("tests/topology/") else module


def longest_first(scopes: dict[str, dict[str, bool]], seconds: dict[str, float]) -> list[str]:
    """``scopes`` ordered by their expected seconds, longest first (the longest-processing-time rule:
    with two workers, the run ends within the shortest scopes' time of the best split); a scope not
    in ``seconds`` counts a second per test."""
    return sorted(scopes, key=lambda scope: -seconds.get(scope, float(len(scopes[scope]))))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store-durations", action="store_true",
                     help=f"write each test scope's seconds in this run to tests/{SCOPE_SECONDS_FILE.name}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each scope's setup, call and teardown seconds (on the controller, from every worker)."""
    if not _recording_durations:
        return
    scope = scope_of(report.nodeid)
    _scope_seconds[scope] = _scope_seconds.get(scope, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _recording_durations and _scope_seconds:
        ordered = sorted(((scope, round(seconds)) for scope, seconds in _scope_seconds.items()),
                         key=lambda item: (-item[1], item[0]))
        SCOPE_SECONDS_FILE.write_text(json.dumps(dict(ordered), indent=1) + "\n")


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """With ``-n`` (pytest-xdist): a module's tests run on one worker, in order, so its module-scoped
    fixtures start once; the topology tests (two modules) share one worker and its one cluster; the
    scopes go out longest first (``SCOPE_SECONDS_FILE``). xdist's own order, by test count, put the
    4-test topology scope, the longest, in the middle of the run."""
    from xdist.scheduler import LoadScopeScheduling

    seconds = json.loads(SCOPE_SECONDS_FILE.read_text()) if SCOPE_SECONDS_FILE.exists() else {}

    class LongestScopesFirst(LoadScopeScheduling):
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

        def _assign_work_unit(self, node) -> None:
            if not self.ordered:  # the queue is complete before the first unit goes out
                self.workqueue = OrderedDict((scope, self.workqueue[scope])
                                             for scope in longest_first(self.workqueue, seconds))
                self.ordered = True
            super()._assign_work_unit(node)

    return LongestScopesFirst(config, log)


# ---------------------------------------------------------------- real components, one per session


def start_broker(state_dir: Path) -> LocalKafkaBroker:
    """A real KRaft broker on free ports; fails (never skips) with the reason if it cannot start."""
    broker = LocalKafkaBroker(KAFKA_JARS, state_dir, port=free_port(), controller_port=free_port())
    broker.start(timeout_seconds=90)
    return broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def lakehouse_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh state directory for one test session's catalog, warehouse and checkpoints."""
    return tmp_path_factory.mktemp("lakehouse")


@pytest.fixture(scope="session")
def settings(kafka_broker: LocalKafkaBroker, lakehouse_dir: Path) -> Settings:
    """Embedded-default settings pointed at the test broker and a throw-away warehouse. Tests write
    through ``lake`` (their own namespace, topics and checkpoints), never through these directly."""
    return load_settings(
        environ={
            "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
            "LAKEHOUSE__LOCAL__STATE_DIR": str(lakehouse_dir),
            "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{lakehouse_dir}/catalog.db",
            "LAKEHOUSE__CATALOG__WAREHOUSE": str(lakehouse_dir / "warehouse"),
            "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": str(lakehouse_dir / "checkpoints"),
            "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "1",
            "LAKEHOUSE__SPARK__UI_ENABLED": "false",
        }
    )


@pytest.fixture(scope="session")
def spark(settings: Settings):
    """One real local[2] Spark session with the Iceberg catalog and the Kafka connector, shared by
    every in-process Spark test (its start-up is the most expensive thing a test can ask for)."""
    from lakehouse.spark import build_spark_session

    session = build_spark_session(settings, "lakehouse-tests")
    yield session
    for query in session.streams.active:
        query.stop()
    session.stop()


@pytest.fixture(scope="session")
def bigquery_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One real bqemulator for the session (in memory). Its ``project`` is only the default for
    requests that name none: each module works in a project of its own, so its datasets are its own."""
    from lakehouse.local import bigquery_emulator

    with bigquery_emulator.running(tmp_path_factory.mktemp("bigquery")) as started:
        yield started


# ---------------------------------------------------------------- isolation


_runs = itertools.count(1)


def unique_name(label: str) -> str:
    """A catalog-namespace- and topic-safe name, unique in this test session, that still says which
    test made it (``t7_test_resent_trades_are_stored``)."""
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:40].rstrip("_")
    return f"t{next(_runs)}_{slug}"


def isolated(base: Settings, name: str) -> Settings:
    """``base`` (the session's broker and catalog) with a namespace, topics and checkpoint directory
    of ``name``'s own: nothing written through it is seen by another test."""
    return base.model_copy(update={
        "catalog": base.catalog.model_copy(update={"namespace": name}),
        "kafka": base.kafka.model_copy(update={
            "trades_topic": f"{name}.trades",
            "vendor_bars_topic": f"{name}.vendor_bars",
            "feed_events_topic": f"{name}.feed_events",
            "quarantine_topic": f"{name}.quarantine",
        }),
        "streaming": base.streaming.model_copy(update={"checkpoint_dir": f"{base.streaming.checkpoint_dir}/{name}"}),
    })


def environ_of(settings: Settings) -> dict[str, str]:
    """The ``LAKEHOUSE__*`` variables that make a child process (a job under ``spark-submit.sh``, a
    notebook's kernel, a CLI) load ``settings``' broker, catalog, namespace, topics and checkpoints."""
    k, c, s = settings.kafka, settings.catalog, settings.streaming
    return {
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "LAKEHOUSE__KAFKA__TRADES_TOPIC": k.trades_topic,
        "LAKEHOUSE__KAFKA__VENDOR_BARS_TOPIC": k.vendor_bars_topic,
        "LAKEHOUSE__KAFKA__FEED_EVENTS_TOPIC": k.feed_events_topic,
        "LAKEHOUSE__KAFKA__QUARANTINE_TOPIC": k.quarantine_topic,
        "LAKEHOUSE__LOCAL__STATE_DIR": str(settings.state_dir),
        "LAKEHOUSE__CATALOG__URI": c.uri,
        "LAKEHOUSE__CATALOG__WAREHOUSE": c.warehouse,
        "LAKEHOUSE__CATALOG__NAMESPACE": c.namespace,
        "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": s.checkpoint_dir,
        "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": str(s.trigger_seconds),
        "LAKEHOUSE__SPARK__UI_ENABLED": str(settings.spark.ui_enabled).lower(),
    }


@pytest.fixture
def lake(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The session's broker and catalog, with this test's own namespace, topics and checkpoints."""
    return isolated(settings, unique_name(request.node.name))


def created_in(spark, settings: Settings) -> Settings:
    """``settings`` once its namespace exists in ``spark``'s catalog (for tests that create tables
    of their own with Spark SQL)."""
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {settings.catalog.name}.{settings.catalog.namespace}")
    return settings
