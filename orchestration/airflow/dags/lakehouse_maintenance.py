"""Maintenance every 15 minutes: compact small files, expire old snapshots, remove orphan files
(``./spark-submit.sh maintenance``, once per run). Runs never overlap and missed ones are not
caught up: each run looks at the tables as they are, so the next run does all that is due."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG  # also what Airflow's safe mode looks for before it parses a file

# The shared helpers sit beside this file; a DagBag built outside a bundle does not put this folder
# on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lakehouse_dag_support import periodic_dag

dag: DAG = periodic_dag(
    dag_id="lakehouse_maintenance",
    description="Compaction, snapshot expiry and orphan clean-up of every lakehouse table",
    every=timedelta(minutes=15),
    task_id="maintenance",
    command="./spark-submit.sh maintenance",
    tags=["maintenance"],
    doc_md=__doc__,
    retries=1,
    execution_timeout=timedelta(minutes=45),
)
