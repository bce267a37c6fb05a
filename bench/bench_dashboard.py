"""The live dashboard: how soon a committed bar is on the page, and what a refresh costs at a long
snapshot history versus a fresh table, in one run.

1. Commit to page: the dashboard is served (``python -m dashboard``, its default poll) over a
   throw-away lakehouse whose ``bars_1m`` has ``--snapshots`` of history; headless Chromium keeps
   the page open; every commit of a new 1-minute bar is timed until the page shows it (the newest
   bar's start changes in the DOM, polled every 20 ms), at a random phase of the page's poll.
2. Refresh cost, in this process, for the same table with and without the history: one poll (the
   catalog's metadata pointers of the six tables: what the page does every poll), loading the
   table instead (what a poll would cost without the pointer), and the re-render after a commit
   (the newest bars and a day of 1-minute bars for one symbol).

    .venv/bin/python -m bench.bench_dashboard [--commits 30] [--snapshots 3600]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from bench.common import describe_machine, lakehouse_settings, median, percentile, write_history_metadata
from dashboard.app import Dashboard, read_pointers
from lakehouse.catalog import table_identifier
from lakehouse.local.chromium import Chromium
from lakehouse.local.processes import free_port, port_open, wait_until
from lakehouse.reading import Lakehouse, synthetic
from lakehouse.settings import PROJECT_ROOT, Settings
from lakehouse.tables import BARS_1M, TRADES

SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN")
SYMBOL = "AAPL"
NEWEST_START_JS = "(document.getElementById('latest-bar') || {dataset: {}}).dataset.windowStart || null"


def build_lakehouse(state: str, snapshots: int) -> Settings:
    """A demo session of bars and trades; with ``snapshots`` > 0, ``bars_1m`` re-registered with that
    much history in its metadata (``bench.common.write_history_metadata``)."""
    settings = lakehouse_settings(state)
    synthetic.write_demo_lakehouse(settings, symbols=SYMBOLS, commits=3)
    if snapshots:
        lake = Lakehouse(settings)
        history = write_history_metadata(settings, BARS_1M, snapshots)
        identifier = table_identifier(settings, BARS_1M)
        lake.catalog.drop_table(identifier)  # the catalog entry only; the files stay
        lake.catalog.register_table(identifier, history)
    return settings


class NextBars:
    """New 1-minute bars of ``SYMBOL``, each the minute after the newest stored, committed as the jobs
    would (its trades, then its bar); prices go on from the session's last minute."""

    def __init__(self, settings: Settings) -> None:
        self.lake = Lakehouse(settings)
        trades = synthetic.synthetic_trades(SYMBOLS)
        last = trades[trades["symbol"] == SYMBOL]
        session_last = last["event_time"].max().floor("1min")
        self.template = last[last["event_time"].dt.floor("1min") == session_last].copy()
        newest = self.lake.latest_bar_per_symbol(SYMBOL)["window_start"].iloc[0]
        self.minutes = int((pd.Timestamp(newest) - session_last) / pd.Timedelta(minutes=1))

    def commit(self) -> pd.Timestamp:
        """Commit the next bar; its window start."""
        self.minutes += 1
        minute = self.template.copy()
        minute["event_time"] += pd.Timedelta(minutes=self.minutes)
        minute["trade_id"] = f"bench{self.minutes}-" + minute["trade_id"]
        synthetic.append_rows(self.lake.table(TRADES), synthetic._arrow(minute, TRADES))
        bar = synthetic.bars_from_trades(minute)
        synthetic.append_rows(self.lake.table(BARS_1M), synthetic._arrow(bar, BARS_1M))
        return pd.Timestamp(bar["window_start"].iloc[0])


def commit_to_page(settings: Settings, commits: int, state: str) -> list[float]:
    """Seconds from each commit's return to the page showing its bar."""
    port = free_port()
    environ = {**os.environ, "LAKEHOUSE__CATALOG__URI": settings.catalog.uri,
               "LAKEHOUSE__CATALOG__WAREHOUSE": settings.catalog.warehouse,
               "LAKEHOUSE__LOCAL__STATE_DIR": state}
    with open(Path(state) / "dashboard.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "dashboard", "--port", str(port)], cwd=PROJECT_ROOT,
                                  env=environ, stdout=log, stderr=subprocess.STDOUT)
    latencies = []
    try:
        if not wait_until(lambda: port_open("127.0.0.1", port), 60):
            raise RuntimeError("the dashboard did not start; see " + str(Path(state) / "dashboard.log"))
        with Chromium() as browser:
            browser.open(f"http://127.0.0.1:{port}/")
            browser.wait_for(NEWEST_START_JS, timeout_seconds=60)
            bars = NextBars(settings)
            rng = random.Random(5)
            for _ in range(commits):
                time.sleep(rng.uniform(0.2, 2.2))  # a random phase of the page's 2 s poll
                start = bars.commit().isoformat()
                committed = time.perf_counter()
                browser.wait_for(NEWEST_START_JS, timeout_seconds=30, interval_seconds=0.02,
                                 accept=lambda shown, start=start: shown == start)
                latencies.append(time.perf_counter() - committed)
    finally:
        server.terminate()
        server.wait(timeout=20)
    return latencies


def seconds_each(action: Callable[[], object], repeats: int) -> float:
    """Median seconds of one ``action``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return median(times)


def refresh_costs(settings: Settings, rerenders: int) -> dict[str, float]:
    lake = Lakehouse(settings)
    board = Dashboard(lake)
    costs = {
        "poll": seconds_each(lambda: read_pointers(lake), 100),
        # What a poll would cost without the pointer: parsing the metadata file, history and all.
        "load": seconds_each(lambda: lake.catalog.load_table(table_identifier(settings, BARS_1M)), 20),
    }
    bars = NextBars(settings)
    times = []
    for _ in range(rerenders):
        bars.commit()
        pointers = read_pointers(lake)
        started = time.perf_counter()
        board.market(pointers, SYMBOL, "1m", "1 day", local_time=False)
        times.append(time.perf_counter() - started)
    costs["rerender"] = median(times)
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=30, help="bars committed while the page is open")
    parser.add_argument("--snapshots", type=int, default=3600, help="snapshots of history in the long table")
    parser.add_argument("--rerenders", type=int, default=10)
    args = parser.parse_args(argv)
    print(describe_machine())
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as root:
        fresh = build_lakehouse(f"{root}/fresh", 0)
        long = build_lakehouse(f"{root}/long", args.snapshots)
        fresh_costs = refresh_costs(fresh, args.rerenders)
        long_costs = refresh_costs(long, args.rerenders)
        latencies = commit_to_page(long, args.commits, f"{root}/long")
    print(f"commit to page ({args.commits} commits, bars_1m with {args.snapshots:,} snapshots, 2 s poll): "
          f"p50 {percentile(latencies, 50):.2f} s, p99 {percentile(latencies, 99):.2f} s, "
          f"max {max(latencies):.2f} s")
    for label, key in (("poll, 6 metadata pointers", "poll"), ("load bars_1m instead of its pointer", "load"),
                       ("re-render after a commit", "rerender")):
        print(f"{label}: fresh {fresh_costs[key] * 1000:.1f} ms, {args.snapshots:,} snapshots "
              f"{long_costs[key] * 1000:.1f} ms")
    print(f"ratio: poll at {args.snapshots:,} snapshots / fresh {long_costs['poll'] / fresh_costs['poll']:.2f}x; "
          f"re-render {long_costs['rerender'] / fresh_costs['rerender']:.2f}x; a load instead of the pointer "
          f"{long_costs['load'] / long_costs['poll']:.0f}x a whole poll at {args.snapshots:,}")
    print(f"load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
