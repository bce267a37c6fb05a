"""The command line every job shares: ``python -m jobs.<name> [--config FILE] ...``.

One parser shape so each job's ``--help`` reads the same and ``--config`` works everywhere; the
job adds its own arguments to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
