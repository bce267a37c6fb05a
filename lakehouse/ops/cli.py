"""``lakehouse``: the operator's command line (installed as a console script by ``pip install .``).

    lakehouse status    # one screen: table freshness, Kafka lag per job, last maintenance and sync;
                        # exit 0 when all is fresh, 1 when something is stale (cron, health checks),
                        # 2 when the settings are wrong
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from lakehouse.settings import Settings, SettingsError, load_settings


def run_thresholds_seconds(settings: Settings) -> dict[str, float]:
    return {
        "maintenance": settings.status.max_maintenance_age_seconds,
        "bigquery_sync": settings.status.max_sync_age_seconds,
    }


def status(settings: Settings, now: datetime | None = None) -> tuple[str, int]:
    """The status screen and its exit code, as of ``now`` (default: the current UTC time)."""
    from lakehouse.ops.status import assess, exit_code, render
    from lakehouse.ops.status_probe import observe

    observation = observe(settings)
    now = now or datetime.now(UTC)
    findings = assess(observation, now, settings.status, run_thresholds_seconds(settings))
    return render(findings, now), exit_code(findings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lakehouse", description="Operate the stock-market lakehouse.")
    commands = parser.add_subparsers(dest="command", required=True)
    status_parser = commands.add_parser(
        "status", help="what is fresh and what is behind; exit 1 when something is stale",
        description="Per table: newest event time and age, snapshots, small files. Per Kafka topic: end "
        "offsets and each streaming job's committed position and lag. Last maintenance and sync. "
        "Thresholds: the [status] settings (LAKEHOUSE__STATUS__*).",
    )
    status_parser.add_argument("--config", type=Path, default=None, help="settings TOML (default conf/lakehouse.toml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "pyiceberg"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        print(error)
        return 2
    screen, code = status(settings)
    print(screen, flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
