"""BigQuery sync every 15 minutes: re-point each external table at its Iceberg table's current
metadata (``python -m jobs.bigquery_sync``; idempotent, says what it changed). Exit 1 (a table in
conflict or failed) fails the task, so the run shows red and retries."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG  # also what Airflow's safe mode looks for before it parses a file

# The shared helpers sit beside this file; a DagBag built outside a bundle does not put this folder
# on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lakehouse_dag_support import PROJECT_PYTHON, periodic_dag

dag: DAG = periodic_dag(
    dag_id="lakehouse_bigquery_sync",
    description="Keep the BigQuery external tables pointed at the current Iceberg metadata",
    every=timedelta(minutes=15),
    task_id="bigquery_sync",
    command=f"{PROJECT_PYTHON} -m jobs.bigquery_sync",
    tags=["bigquery"],
    doc_md=__doc__,
    execution_timeout=timedelta(minutes=10),
)
