"""Maintenance every 15 minutes: compact small files, expire old snapshots, remove orphan files
(``./spark-submit.sh maintenance``, once per run). Runs never overlap and missed ones are not
caught up: each run looks at the tables as they are, so the next run does all that is due."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

# The shared helpers sit beside this file; a DagBag built outside a bundle does not put this folder
# on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lakehouse_dag_support import DEFAULT_ARGS, project_command

MAINTENANCE_EVERY = timedelta(minutes=15)

with DAG(
    dag_id="lakehouse_maintenance",
    description="Compaction, snapshot expiry and orphan clean-up of every lakehouse table",
    schedule=MAINTENANCE_EVERY,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1, "execution_timeout": timedelta(minutes=45)},
    tags=["lakehouse", "maintenance"],
    doc_md=__doc__,
):
    BashOperator(task_id="maintenance", bash_command=project_command("./spark-submit.sh maintenance"))
