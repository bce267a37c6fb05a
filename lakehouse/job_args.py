"""The command line every job shares: ``python -m jobs.<name> [--config FILE] ...``.

One parser shape so each job's ``--help`` reads the same and ``--config`` works everywhere; the
job adds its own arguments to it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TypeVar

from lakehouse.settings import Settings, SettingsError, load_settings
from lakehouse.tables import ALL_TABLES, TableDef, tables_named

T = TypeVar("T")

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


def at_least(minimum: float, kind: type[int] | type[float] = float) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` no smaller than ``minimum``, refused with the argument's
    name and exit 2 otherwise (a negative interval ran maintenance back to back)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
        if not minimum <= value < float("inf"):  # nan fails both
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def above_zero(text: str) -> float:
    """An argparse type: a number > 0 (a period or an age; nan and inf refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def table_selection(text: str) -> list[TableDef]:
    """An argparse type: comma-separated lakehouse table names, at least one; refused with exit 2
    otherwise (an empty list maintained nothing and recorded a success; an unknown name exited 1)."""
    try:
        tables = tables_named(text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not tables:
        raise argparse.ArgumentTypeError(f"names no table; known: {sorted(t.name for t in ALL_TABLES)}")
    return tables


def iso_day(text: str) -> date:
    """An argparse type: a day as YYYY-MM-DD, refused with what is wrong (Python said "invalid
    fromisoformat value" for 2026-13-01)."""
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        detail = "" if "fromisoformat" in str(error) else f" ({error})"
        raise argparse.ArgumentTypeError(f"not a day YYYY-MM-DD: {text!r}{detail}") from None


def a_symbol(text: str) -> str:
    """An argparse type: a symbol as the message contract spells one (an empty one rebuilt "all
    symbols of ''": nothing, and committed an empty replacement)."""
    from pydantic import TypeAdapter, ValidationError

    from lakehouse.messages import Symbol

    try:
        return TypeAdapter(Symbol).validate_python(text)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"not a symbol: {text!r} (1-32 of A-Z a-z 0-9 . : / ^ _ -)") from None


def a_bigquery_connection(text: str) -> str:
    """An argparse type: a BigQuery connection in a form BigQuery's table API takes, refused with the
    forms it may take (any string went into every table's definition, for BigQuery to refuse)."""
    from lakehouse.bigquery import BigQueryNameError, connection_parts

    try:
        connection_parts(text)
    except BigQueryNameError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def job_metrics(parser: argparse.ArgumentParser, serve: Callable[[], T]) -> T:
    """Start the job's metrics endpoint (``serve`` calls ``serve_metrics`` or ``serve_job_metrics``)
    before its Spark session: a port it cannot listen on (another process serves it) ends the job as
    a bad setting does, with the message naming the port's setting and exit code 2."""
    from lakehouse.ops.metrics_http import MetricsPortError

    try:
        return serve()
    except MetricsPortError as error:
        parser.exit(2, f"{parser.prog}: {error}\n")


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
