"""What the lakehouse DAGs share: where the project is, how its entry points are called, the
market calendar as Jinja macros, and the shape of a DAG that runs one command on an interval.

The DAGs run in Airflow's own virtualenv (``make airflow``), which does not have the project's
dependencies: tasks call the project's entry points (``./spark-submit.sh``, ``.venv/bin/python -m``)
as processes, and this file imports only ``lakehouse.ops.market_calendar``, which is standard
library only (Airflow itself is imported inside ``periodic_dag``). The project root is found from
this file's place (``orchestration/airflow/dags``).
"""

from __future__ import annotations

import shlex
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

PROJECT_ROOT = Path(__file__).resolve().parents[3]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from lakehouse.ops.market_calendar import (  # noqa: E402 (needs the project root on sys.path)
    MARKETS,
    Market,
    is_trading_day,
    rebuild_ready_utc,
    session_date,
    utc_days_of_session,
)

if TYPE_CHECKING:
    from airflow.sdk import DAG

# Shell words, quoted for the commands they are spliced into: a project path with a space split
# the interpreter's path in two ("cd '/p a/main' && /p a/main/.venv/bin/python ...").
PROJECT_PYTHON = shlex.quote(str(PROJECT_ROOT / ".venv" / "bin" / "python"))
SPARK_SUBMIT = shlex.quote(str(PROJECT_ROOT / "spark-submit.sh"))


def allowed_lateness_seconds(environ: dict[str, str] | None = None) -> float:
    """The streaming bars job's ``streaming.allowed_lateness_seconds``: rebuild_bars refuses a day
    whose last window can still change, so a DAG waits this long after the day. Read as the jobs
    read it (``LAKEHOUSE__STREAMING__ALLOWED_LATENESS_SECONDS``, else the settings file named by
    ``LAKEHOUSE_CONFIG`` or ``conf/lakehouse.toml``), with the standard library only: Airflow's
    virtualenv has no pydantic. A fixed 60 s released days too early under a longer lateness, and
    the rebuild failed until a retry."""
    import os
    import tomllib

    environ = os.environ if environ is None else environ
    if value := environ.get("LAKEHOUSE__STREAMING__ALLOWED_LATENESS_SECONDS", "").strip():
        return float(value)
    config = Path(environ.get("LAKEHOUSE_CONFIG") or "conf/lakehouse.toml")
    config = config if config.is_absolute() else PROJECT_ROOT / config
    try:
        streaming = tomllib.loads(config.read_text()).get("streaming", {})
    except (OSError, tomllib.TOMLDecodeError):
        return 60.0  # the settings' default; the job itself reports a bad settings file
    return float(streaming.get("allowed_lateness_seconds", 60.0))


# Retries and timeouts a scheduled batch job gets unless its DAG says otherwise.
DEFAULT_ARGS = {
    "owner": "lakehouse",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=1),
}


def project_command(*parts: str) -> str:
    """A shell command run from the project root (relative paths in conf/ resolve from there)."""
    return f"cd {shlex.quote(str(PROJECT_ROOT))} && " + " ".join(parts)


def trading_day(market: Market, logical_date: datetime, params: dict | None = None) -> date:
    """The session a run is for: the ``day`` parameter when given (a re-run of any day), else the
    market-local date of the run's logical date (a run scheduled at the close names its own day)."""
    chosen = (params or {}).get("day")
    return date.fromisoformat(str(chosen)) if chosen else session_date(market, logical_date)


def calendar_macros(market: Market) -> dict:
    """Jinja macros of one market's calendar for its DAG's templates."""

    def day(logical_date: datetime, params: dict | None = None) -> str:
        return trading_day(market, logical_date, params).isoformat()

    def ready_at(logical_date: datetime, params: dict | None = None) -> str:
        session = trading_day(market, logical_date, params)
        return rebuild_ready_utc(market, session, allowed_lateness_seconds()).isoformat()

    def day_args(logical_date: datetime, params: dict | None = None) -> str:
        """``--day D ...`` (the UTC days the session touches) and ``--symbol S ...`` when given."""
        session = trading_day(market, logical_date, params)
        args = [f"--day {d.isoformat()}" for d in utc_days_of_session(market, session)]
        args += [f"--symbol {shlex.quote(s)}" for s in (params or {}).get("symbols") or []]
        return " ".join(args)

    return {"trading_day": day, "ready_at": ready_at, "day_args": day_args, "quote": shlex.quote}


def is_session_day(market: Market, logical_date: datetime, params: dict | None = None, **_: object) -> bool:
    """ShortCircuitOperator's callable: False (skip the rest) when the run's day is no trading day."""
    return is_trading_day(market, trading_day(market, logical_date, params))


def periodic_dag(
    dag_id: str,
    description: str,
    every: timedelta,
    task_id: str,
    command: str,
    tags: list[str],
    doc_md: str,
    **task_args: object,
) -> DAG:
    """A DAG of one ``BashOperator`` running ``command`` from the project root every ``every``, for
    a batch job that looks at the lakehouse as it is (maintenance, BigQuery sync): runs never overlap
    and missed ones are not caught up, since the next run does whatever is due. ``task_args``
    override ``DEFAULT_ARGS`` (``retries``, ``execution_timeout``...). Airflow is imported here, not
    at the top, so this module stays importable without it."""
    import pendulum
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG

    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=every,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args={**DEFAULT_ARGS, **task_args},
        tags=["lakehouse", *tags],
        doc_md=doc_md,
    ) as dag:
        BashOperator(task_id=task_id, bash_command=project_command(command))
    return dag


__all__ = ["DEFAULT_ARGS", "MARKETS", "PROJECT_PYTHON", "SPARK_SUBMIT", "allowed_lateness_seconds", "calendar_macros",
           "is_session_day", "periodic_dag", "project_command"]
