"""The command line every job shares: ``python -m jobs.<name> [--config FILE] ...``.

One parser shape so each job's ``--help`` reads the same and ``--config`` works everywhere; the
job adds its own arguments to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lakehouse.settings import Settings, SettingsError, load_settings

SETTINGS_EPILOG = "Settings come from conf/lakehouse.toml (or --config) and LAKEHOUSE__SECTION__KEY variables."


def job_parser(job_name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser for ``jobs/<job_name>.py`` with ``--config``; ``description`` may be a
    module docstring (its line breaks are joined)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m jobs.{job_name}",
        description=" ".join(description.replace("``", "").split()),
        epilog=SETTINGS_EPILOG,
    )
    parser.add_argument(
        "--config", type=Path, default=None, metavar="FILE", help="settings TOML (default conf/lakehouse.toml)"
    )
    return parser


def job_settings(parser: argparse.ArgumentParser, config: Path | None) -> Settings:
    """The job's settings (``--config`` or the default file, and the environment); a bad setting
    or a missing file ends the job as a bad argument does: its message and exit code 2, before any
    Spark session starts."""
    try:
        return load_settings(config)
    except SettingsError as error:
        parser.exit(2, f"{parser.prog}: {error}\n")


def config_argument(argv: list[str]) -> Path | None:
    """The ``--config FILE`` among a job's arguments (None when absent), for a launcher that must
    read the job's settings before the job itself starts (``spark-submit.sh``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config", type=Path, default=None)
    known, _ = parser.parse_known_args(argv)
    return known.config
