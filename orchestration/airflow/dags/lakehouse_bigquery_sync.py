"""BigQuery sync every 15 minutes: re-point each external table at its Iceberg table's current
metadata (``python -m jobs.bigquery_sync``; idempotent, says what it changed). Exit 1 (a table in
conflict or failed) fails the task, so the run shows red and retries."""

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

from lakehouse_dag_support import DEFAULT_ARGS, PROJECT_PYTHON, project_command

SYNC_EVERY = timedelta(minutes=15)

with DAG(
    dag_id="lakehouse_bigquery_sync",
    description="Keep the BigQuery external tables pointed at the current Iceberg metadata",
    schedule=SYNC_EVERY,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(minutes=10)},
    tags=["lakehouse", "bigquery"],
    doc_md=__doc__,
):
    BashOperator(task_id="bigquery_sync", bash_command=project_command(f"{PROJECT_PYTHON} -m jobs.bigquery_sync"))
