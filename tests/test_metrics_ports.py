"""A metrics port another process already serves: the process started second stops at start, before
it connects to anything, with one line naming the port and the setting to change, and exit 2; the
first process's endpoint goes on answering."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from lakehouse.local.processes import free_port
from lakehouse.ops.metrics_http import MetricsPortError, serve_metrics
from lakehouse.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration  # the producers and the sync run as child processes


def in_use(what: str, port: int, setting: str) -> str:
    return (f"{what} metrics: 127.0.0.1:{port} is already in use by another process; give this process a free "
            f"port in metrics.{setting} (LAKEHOUSE__METRICS__{setting.upper()}), or 0 for none")


@pytest.fixture
def served_port() -> Iterator[int]:
    """The port of another process's metrics endpoint (this test process stands in for it)."""
    registry = CollectorRegistry()
    Gauge("first_process_serving", "The endpoint that had the port first.", registry=registry).set(1)
    port = free_port()
    stop = serve_metrics(port, "first process", registry)
    assert stop is not None
    yield port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert "first_process_serving 1.0" in response.read().decode()  # the first one was left alone
    stop()


def test_serving_metrics_on_a_port_in_use_raises_one_line_naming_the_port_and_its_setting(served_port: int) -> None:
    with pytest.raises(MetricsPortError) as error:
        serve_metrics(served_port, "finnhub producer", setting="finnhub_port")

    assert str(error.value) == in_use("finnhub producer", served_port, "finnhub_port")


@pytest.mark.parametrize(("job", "argv", "what", "setting"), [
    ("raw_trades", [], "streaming", "streaming_port"),
    ("bars", [], "streaming", "streaming_port"),
    ("pipeline", [], "streaming", "streaming_port"),
    ("maintenance", ["--interval", "3600"], "maintenance", "maintenance_port"),
])
def test_a_spark_job_given_a_port_in_use_ends_in_one_line_and_exit_2_before_its_spark_session(
    job: str, argv: list[str], what: str, setting: str, served_port: int, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    module = importlib.import_module(f"jobs.{job}")

    def no_session(*_: object, **__: object) -> None:
        raise AssertionError("a Spark session started")

    monkeypatch.setattr(module, "build_spark_session", no_session)
    monkeypatch.setenv("LAKEHOUSE__LOCAL__STATE_DIR", str(tmp_path))
    monkeypatch.setenv(f"LAKEHOUSE__METRICS__{setting.upper()}", str(served_port))

    # Was: the session started, then OSError "[Errno 98] Address already in use" in a traceback.
    with pytest.raises(SystemExit) as done:
        module.main(argv)

    assert done.value.code == 2
    assert capsys.readouterr().err == f"python -m jobs.{job}: {in_use(what, served_port, setting)}\n"


def run(module: str, environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LAKEHOUSE")}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env={**clean, **environ},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("module", "args", "source"), [
    ("producers.finnhub", ("--url", "ws://127.0.0.1:9", "--broker-wait", "0"), "finnhub"),
    ("producers.vnstock_feed", ("--broker-wait", "0"), "vnstock"),
])
def test_a_producer_given_a_port_in_use_logs_one_error_and_exits_2_before_it_connects(
    module: str, args: tuple[str, ...], source: str, served_port: int, tmp_path: Path,
) -> None:
    done = run(module, {
        f"LAKEHOUSE__METRICS__{source.upper()}_PORT": str(served_port),
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # never reached: no broker there
        "LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path),
    }, *args)

    # Was: a 27-line traceback ending in "OSError: [Errno 98] Address already in use", exit 1, once the
    # producer had connected to Kafka.
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        f" ERROR {module}: {in_use(f'{source} producer', served_port, f'{source}_port')}"), done.stderr


def test_the_bigquery_sync_on_a_schedule_given_a_port_in_use_ends_in_one_line_and_exit_2(
    served_port: int, tmp_path: Path,
) -> None:
    done = run("jobs.bigquery_sync", {
        "LAKEHOUSE__METRICS__SYNC_PORT": str(served_port),
        "LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path),
    }, "--dry-run", "--interval", "600")

    # Was: a 31-line traceback ending in "OSError: [Errno 98] Address already in use", exit 1.
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"python -m jobs.bigquery_sync: {in_use('bigquery_sync', served_port, 'sync_port')}\n"
