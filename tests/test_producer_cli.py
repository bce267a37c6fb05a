"""The producers as a new user first runs them: what is missing is said first, in
one line, and the producer exits non-zero instead of retrying. Each run is a real process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lakehouse.local.processes import free_port
from lakehouse.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration  # each test runs a producer as a child process


def run_producer(overrides: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("LAKEHOUSE")}
    environ.update(overrides)
    return subprocess.run([sys.executable, "-m", "producers.finnhub", *args], cwd=PROJECT_ROOT, env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


def test_without_a_token_for_the_real_finnhub_the_first_line_names_the_token_setting_and_it_exits_2() -> None:
    done = run_producer({"LAKEHOUSE__FINNHUB__URL": "wss://ws.finnhub.io"})

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "LAKEHOUSE__FINNHUB__TOKEN" in lines[0], done.stderr


@pytest.mark.parametrize(("overrides", "args", "named"), [
    ({}, ("--symbols", ","), "--symbols: no symbols given"),
    ({}, ("--symbols", "AAPL,BAD SYM,MSFT"), "'BAD SYM'"),
    ({"LAKEHOUSE__FINNHUB__SYMBOLS": ""}, (), "LAKEHOUSE__FINNHUB__SYMBOLS"),
    ({"LAKEHOUSE__FINNHUB__SYMBOLS": " , "}, (), "LAKEHOUSE__FINNHUB__SYMBOLS"),
    ({"LAKEHOUSE__FINNHUB__SYMBOLS": "AAPL,bad!"}, (), "'bad!'"),
])
def test_no_symbols_or_a_symbol_the_trade_model_refuses_ends_the_start_with_exit_2(
        overrides: dict[str, str], args: tuple[str, ...], named: str) -> None:
    done = run_producer({"LAKEHOUSE__FINNHUB__TOKEN": "any-token", **overrides}, *args)

    assert done.returncode == 2 and named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 2, done.stderr


@pytest.mark.parametrize(("option", "given"), [
    ("--max-backoff", "0"), ("--stall-timeout", "0"), ("--stall-timeout", "-5"), ("--progress-interval", "-1"),
    ("--progress-interval", "0"), ("--broker-wait", "-1"), ("--max-backoff", "nan"),
])
def test_a_zero_or_negative_interval_is_refused_naming_the_option(option: str, given: str) -> None:
    done = run_producer({"LAKEHOUSE__FINNHUB__TOKEN": "any-token"}, "--symbols", "AAPL", option, given)

    assert done.returncode == 2
    assert f"argument {option}: must be" in done.stderr.splitlines()[-1], done.stderr


@pytest.mark.parametrize(("overrides", "args", "named"), [
    ({}, ("--url", "http://127.0.0.1:1/x"), "--url: the scheme must be ws:// or wss://"),
    ({}, ("--url", "ws://127.0.0.1:99999"), "--url: not a valid URL"),
    ({}, ("--url", "ws://127.0.0.1:abc/?token=SECRETTOKEN123"), "--url: not a valid URL"),
    ({"LAKEHOUSE__FINNHUB__URL": "http://127.0.0.1:1/x"}, (), "LAKEHOUSE__FINNHUB__URL"),
    ({"LAKEHOUSE__FINNHUB__URL": "ws://h:abc"}, (), "LAKEHOUSE__FINNHUB__URL"),
    ({"LAKEHOUSE__FINNHUB__URL": "ws:///path"}, (), "LAKEHOUSE__FINNHUB__URL"),
])
def test_a_url_that_is_no_websocket_address_ends_the_start_naming_it_and_never_the_token(
        overrides: dict[str, str], args: tuple[str, ...], named: str) -> None:
    done = run_producer({"LAKEHOUSE__FINNHUB__TOKEN": "SECRETTOKEN123", **overrides}, "--symbols", "AAPL", *args)

    assert done.returncode == 2 and named in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 2, done.stderr
    assert "SECRETTOKEN123" not in done.stderr + done.stdout


def test_without_a_broker_the_first_line_names_the_bootstrap_servers_and_it_exits_2() -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there

    done = run_producer({"LAKEHOUSE__FINNHUB__TOKEN": "any-token", "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": closed},
                        "--broker-wait", "1")

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert closed in lines[0] and "make kafka-start" in lines[0]


def test_the_vnstock_producer_without_a_broker_says_so_in_one_line_and_exits_2() -> None:
    closed = f"127.0.0.1:{free_port()}"
    environ = {key: value for key, value in os.environ.items() if not key.startswith("LAKEHOUSE")}
    environ["LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS"] = closed

    done = subprocess.run([sys.executable, "-m", "producers.vnstock_feed", "--broker-wait", "1"], cwd=PROJECT_ROOT,
                          env=environ, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and closed in lines[0] and "make kafka-start" in lines[0], done.stderr


def test_a_single_vnstock_poll_against_an_unavailable_source_ends_in_one_line_and_exit_1(kafka_broker) -> None:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("LAKEHOUSE")}
    environ.update({
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "LAKEHOUSE__VNSTOCK__BASE_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
    })

    done = subprocess.run([sys.executable, "-m", "producers.vnstock_feed", "--once", "--symbols", "VCB",
                           "--intervals", "1D"], cwd=PROJECT_ROOT, env=environ, capture_output=True, text=True,
                          timeout=120, check=False)

    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    # The producer's verdict is the one ERROR line, and last: vnstock's client, which logs a failed
    # request before raising it, prints nothing of its own (it printed it twice, in two formats).
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    ours = [line for line in errors if " ERROR producers." in line]
    assert errors == ours and len(ours) == 1, done.stderr[-3000:]
    assert "vnstock source http://127.0.0.1:" in ours[0] and "unavailable" in ours[0], done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == ours[0]


def test_a_single_vnstock_poll_publishes_the_symbols_that_answer_and_exits_1_naming_the_one_that_did_not(
        kafka_broker, tmp_path) -> None:
    from lakehouse.local.kafka_broker import ensure_topics
    from producers.simulators.kafka_reader import read_topic
    from producers.simulators.vnstock_server import VnstockSimulator

    topic = f"cli.vendor_bars.{free_port()}"
    ensure_topics(kafka_broker.bootstrap_servers, [topic, f"{topic}.trades", f"{topic}.quarantine"], 1)
    server = VnstockSimulator().start_in_thread()
    server.fail_symbol("VCB", 500)
    environ = {key: value for key, value in os.environ.items() if not key.startswith("LAKEHOUSE")}
    environ.update({
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "LAKEHOUSE__KAFKA__VENDOR_BARS_TOPIC": topic,
        "LAKEHOUSE__KAFKA__TRADES_TOPIC": f"{topic}.trades",
        "LAKEHOUSE__KAFKA__QUARANTINE_TOPIC": f"{topic}.quarantine",
        "LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path),
        "LAKEHOUSE__VNSTOCK__BASE_URL": server.base_url,
    })
    try:
        done = subprocess.run([sys.executable, "-m", "producers.vnstock_feed", "--once", "--symbols", "VCB,FPT",
                               "--intervals", "1D"], cwd=PROJECT_ROOT, env=environ, capture_output=True, text=True,
                              timeout=120, check=False)
    finally:
        server.stop()

    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "1 of 2 symbols failed" in errors[0] and "VCB" in errors[0], done.stderr[-3000:]
    assert {bar["symbol"] for bar in read_topic(kafka_broker.bootstrap_servers, topic)} == {"FPT"}
