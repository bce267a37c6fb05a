"""Every server the demo starts listens on loopback only (the Spark jobs and producers are checked
while they run in tests/test_stops.py; here the broker and the two market simulators)."""

from __future__ import annotations

import subprocess
import sys
import time

from lakehouse.local.processes import free_port, port_open
from lakehouse.settings import PROJECT_ROOT
from tests.listening import beyond_loopback, listening_addresses


def test_the_broker_and_the_simulators_the_demo_starts_listen_on_loopback_only(kafka_broker) -> None:
    finnhub_port, vnstock_port = free_port(), free_port()
    # The demo's own command lines (lakehouse/local/demo.py).
    commands = [
        [sys.executable, "-m", "producers.simulators.finnhub_server", "--port", str(finnhub_port), "--rate", "10",
         "--live"],
        [sys.executable, "-m", "producers.simulators.vnstock_server", "--port", str(vnstock_port)],
    ]
    servers = [subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
               for command in commands]
    try:
        deadline = time.monotonic() + 60
        while not (port_open("127.0.0.1", finnhub_port) and port_open("127.0.0.1", vnstock_port)):
            assert time.monotonic() < deadline, "the simulators did not start"
            time.sleep(0.2)
        broker_pid = int(kafka_broker.pid_file.read_text().split()[0])
        listening = listening_addresses([broker_pid, *(server.pid for server in servers)])
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)

    ports = {port for _, _, port in listening}
    assert {finnhub_port, vnstock_port, kafka_broker.port, kafka_broker.controller_port} <= ports
    assert not beyond_loopback(listening), listening
