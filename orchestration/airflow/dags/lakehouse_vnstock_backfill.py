"""vnstock backfill, on demand: load the vendor bars of some symbols over a date range (Vietnam
dates) into Kafka, where the vendor-bars stream upserts them (``python -m producers.vnstock_feed
--backfill START:END``). Upserts on the bars' key make a repeated backfill harmless.

Trigger with parameters, e.g. ``{"symbols": ["VCB", "FPT"], "start": "2026-02-02", "end": "2026-02-27"}``.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

# The shared helpers sit beside this file; a DagBag built outside a bundle does not put this folder
# on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lakehouse_dag_support import DEFAULT_ARGS, PROJECT_PYTHON, project_command

with DAG(
    dag_id="lakehouse_vnstock_backfill",
    description="Backfill vnstock vendor bars for chosen symbols and dates",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(hours=3)},
    params={
        "symbols": Param(["VCB", "FPT", "HPG"], type="array", minItems=1,
                         items={"type": "string", "pattern": "^[A-Z0-9]{1,10}$"}),
        "start": Param(type="string", format="date", description="first day (Vietnam date)"),
        "end": Param(type="string", format="date", description="last day (Vietnam date), inclusive"),
    },
    render_template_as_native_obj=False,
    tags=["lakehouse", "vnstock", "backfill"],
    doc_md=__doc__,
):
    BashOperator(
        task_id="vnstock_backfill",
        bash_command=project_command(
            f"{PROJECT_PYTHON} -m producers.vnstock_feed --backfill {{{{ params.start }}}}:{{{{ params.end }}}} "
            "--symbols {{ params.symbols | join(',') }}"
        ),
    )
