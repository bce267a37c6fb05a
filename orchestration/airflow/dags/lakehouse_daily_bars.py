"""Daily bars, one DAG per market: after the session closes, rebuild that day's 1-minute bars from
the stored trades (late trades folded in) and check them.

    lakehouse_daily_bars_us   America/New_York, runs at 16:00 Monday-Friday
    lakehouse_daily_bars_vn   Asia/Ho_Chi_Minh, runs at 15:00 Monday-Friday

Each run is for one trading day (its logical date's local date, or the ``day`` parameter) and is
idempotent: ``rebuild_bars`` replaces those UTC days' bars in one commit, so a re-run (clear the
task, or trigger with ``{"day": "2026-03-02"}``) replaces the day, never adds to it. Catch-up is
off, so a first deployment does not start months of Spark jobs; close a gap explicitly with
``airflow backfill create --dag-id lakehouse_daily_bars_us --from-date ... --to-date ...``.

Tasks: ``is_trading_day`` (weekends and a manual weekend trigger stop here) -> ``wait_for_day_over``
(the session closed and the UTC day is over plus the allowed lateness; a rescheduling sensor, no
worker slot held) -> ``rebuild_bars`` (./spark-submit.sh) -> ``check_bars`` (the bars agree with the
stored trades, read independently of Spark).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.providers.standard.sensors.date_time import DateTimeSensor
from airflow.sdk import DAG, Param
from airflow.timetables.trigger import CronTriggerTimetable

# The shared helpers sit beside this file; a DagBag built outside a bundle does not put this folder
# on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lakehouse_dag_support import (
    DEFAULT_ARGS,
    MARKETS,
    PROJECT_PYTHON,
    calendar_macros,
    is_session_day,
    project_command,
)

for market in MARKETS.values():
    close = market.session_close_local
    with DAG(
        dag_id=f"lakehouse_daily_bars_{market.name}",
        description=f"Rebuild and check the {market.name.upper()} session's 1-minute bars after the close",
        schedule=CronTriggerTimetable(f"{close.minute} {close.hour} * * 1-5", timezone=market.timezone),
        start_date=pendulum.datetime(2026, 1, 1, tz=market.timezone),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        user_defined_macros=calendar_macros(market),
        params={
            "day": Param(None, type=["null", "string"], format="date",
                         description="trading day to rebuild (local date); default: the run's own day"),
            "symbols": Param([], type="array", items={"type": "string"},
                             description="only these symbols; default: every symbol traded that day"),
        },
        tags=["lakehouse", "bars", market.name],
        doc_md=__doc__,
    ) as dag:
        trading = ShortCircuitOperator(
            task_id="is_trading_day",
            python_callable=is_session_day,
            op_kwargs={"market": market},
        )
        wait = DateTimeSensor(
            task_id="wait_for_day_over",
            target_time="{{ ready_at(logical_date, params) }}",
            mode="reschedule",
            poke_interval=300,
            timeout=int(timedelta(hours=30).total_seconds()),
        )
        rebuild = BashOperator(
            task_id="rebuild_bars",
            bash_command=project_command("./spark-submit.sh rebuild_bars {{ day_args(logical_date, params) }}"),
            execution_timeout=timedelta(hours=2),
        )
        check = BashOperator(
            task_id="check_bars",
            bash_command=project_command(f"{PROJECT_PYTHON} -m lakehouse.ops.day_check "
                                         "{{ day_args(logical_date, params) }}"),
            retries=0,  # a mismatch is a finding, not a glitch: re-running the check would not change it
            execution_timeout=timedelta(minutes=20),
        )
        trading >> wait >> rebuild >> check
        globals()[dag.dag_id] = dag
