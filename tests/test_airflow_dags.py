"""The Airflow DAGs in Airflow's own virtualenv (`make airflow`): they import cleanly in a DagBag,
and `airflow dags test` of the US daily DAG rebuilds a day on the real local stack (spark-submit,
Iceberg) so that its bars equal bars computed independently from the same trades."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from lakehouse.catalog import load_table, table_identifier
from lakehouse.reading.synthetic import _arrow, append_rows, bars_from_trades, create_tables, synthetic_trades
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings
from lakehouse.tables import ALL_TABLES, BARS_1M, TRADES

AIRFLOW_VENV = PROJECT_ROOT / ".airflow-venv"
DAGS_FOLDER = PROJECT_ROOT / "orchestration" / "airflow" / "dags"
DAG_IDS = {"lakehouse_daily_bars_us", "lakehouse_daily_bars_vn", "lakehouse_maintenance",
           "lakehouse_bigquery_sync", "lakehouse_vnstock_backfill"}
DAY = date(2026, 3, 2)  # a Monday, before US daylight saving starts (8 March): the close is 21:00 UTC


# Airflow CLI commands, then (with a folder as the first argument) that folder's DagBag, in one
# interpreter: each Airflow start costs seconds of CPU (its imports and configuration) before any
# command runs. Every command runs as `airflow ...` runs it; a line `=== airflow ...` opens each
# command's output on stdout and on stderr, and a failing command ends the run with its status.
AIRFLOW_COMMANDS = """
import json, sys
from airflow.__main__ import main
dag_folder, *commands = json.loads(sys.argv[1])
for command in commands:
    print(f"=== airflow {' '.join(command)}", flush=True)
    print(f"=== airflow {' '.join(command)}", file=sys.stderr, flush=True)
    sys.argv = ["airflow", *command]
    main()
if dag_folder:
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=dag_folder)
    print(json.dumps({
        "errors": {path: str(error) for path, error in bag.import_errors.items()},
        "dags": {dag_id: {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
                 for dag_id, dag in bag.dags.items()},
    }))
"""


def run_airflow(env: dict[str, str], *commands: list[str], dag_folder: Path | None = None, timeout: float,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``airflow COMMAND`` for each of ``commands`` in turn, and ``dag_folder``'s DagBag, in one
    interpreter of Airflow's virtualenv (``AIRFLOW_COMMANDS``)."""
    arguments = json.dumps([str(dag_folder) if dag_folder else None, *commands])
    return subprocess.run([str(AIRFLOW_VENV / "bin" / "python"), "-c", AIRFLOW_COMMANDS, arguments], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def outputs_of(done: subprocess.CompletedProcess[str]) -> list[str]:
    """Each command's stdout and stderr in a ``run_airflow``, in the order they ran."""
    out, err = (stream.split("\n=== airflow ")[1:] for stream in ("\n" + done.stdout, "\n" + done.stderr))
    return [o + e for o, e in zip(out, err, strict=True)]


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An Airflow home of this module's own, its metadata database migrated. The interpreter that
    migrates it also parses the DAGs folder in a DagBag, into ``dagbag.json`` in the home (see
    ``test_the_dags_import_cleanly_in_airflows_dagbag_without_cycles``): one Airflow start for both."""
    python = AIRFLOW_VENV / "bin" / "python"
    assert python.exists(), f"no Airflow virtualenv at {AIRFLOW_VENV}: run `make airflow`"
    home = tmp_path_factory.mktemp("airflow")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "LAKEHOUSE"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PATH": f"{AIRFLOW_VENV / 'bin'}:{env.get('PATH', '')}",
    })
    migrated = run_airflow(env, ["db", "migrate"], dag_folder=DAGS_FOLDER, timeout=600)
    assert migrated.returncode == 0, migrated.stdout[-2000:] + migrated.stderr[-3000:]
    assert "Database migration done!" in outputs_of(migrated)[0], migrated.stdout[-2000:] + migrated.stderr[-3000:]
    (home / "dagbag.json").write_text(migrated.stdout.strip().splitlines()[-1])
    return env


def test_the_dags_import_cleanly_in_airflows_dagbag_without_cycles(airflow_env):
    bag = json.loads((Path(airflow_env["AIRFLOW_HOME"]) / "dagbag.json").read_text())
    assert bag["errors"] == {}
    assert set(bag["dags"]) == DAG_IDS
    assert bag["dags"]["lakehouse_daily_bars_us"] == {
        "is_trading_day": ["wait_for_day_over"], "wait_for_day_over": ["rebuild_bars"],
        "rebuild_bars": ["check_bars"], "check_bars": [],
    }
    for dag_id, edges in bag["dags"].items():  # no cycles: a topological order exists
        remaining = {task: set(downstream) for task, downstream in edges.items()}
        while remaining:
            sinks = {task for task, downstream in remaining.items() if not downstream & remaining.keys()}
            assert sinks, f"{dag_id} has a cycle among {sorted(remaining)}"
            remaining = {task: downstream for task, downstream in remaining.items() if task not in sinks}


def lakehouse_with_a_day_of_trades(state: Path) -> tuple[Settings, pd.DataFrame]:
    """A fresh lakehouse holding one US session of trades on DAY, and bars for it that are wrong
    (built from every other trade), as a streaming job that missed trades would have left them."""
    environ = {
        "LAKEHOUSE__LOCAL__STATE_DIR": str(state),
        "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": str(state / "warehouse"),
        "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": str(state / "checkpoints"),
    }
    settings = load_settings(environ=environ)
    catalog = create_tables(settings, (TRADES, BARS_1M))
    trades = synthetic_trades(("AAPL", "MSFT"), DAY, trades_per_minute=3.0)
    append_rows(catalog.load_table(table_identifier(settings, TRADES)), _arrow(trades, TRADES))
    wrong = bars_from_trades(trades.iloc[::2])
    append_rows(catalog.load_table(table_identifier(settings, BARS_1M)), _arrow(wrong, BARS_1M))
    return settings, trades


def test_airflow_dags_test_of_the_us_daily_dag_leaves_the_days_bars_equal_to_an_independent_rebuild(
        airflow_env, tmp_path: Path):
    settings, trades = lakehouse_with_a_day_of_trades(tmp_path / "lakehouse")
    env = {**airflow_env, **{key: value for key, value in {
        "LAKEHOUSE__LOCAL__STATE_DIR": str(settings.state_dir),
        "LAKEHOUSE__CATALOG__URI": settings.catalog.uri,
        "LAKEHOUSE__CATALOG__WAREHOUSE": settings.catalog.warehouse,
        "LAKEHOUSE__STREAMING__CHECKPOINT_DIR": settings.streaming.checkpoint_dir,
    }.items()}}
    logical = datetime(2026, 3, 2, 21, 0, tzinfo=UTC).isoformat()  # the scheduled run: 16:00 New York
    started = time.monotonic()
    done = subprocess.run([str(AIRFLOW_VENV / "bin" / "airflow"), "dags", "test", "lakehouse_daily_bars_us", logical],
                          env=env, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    print(f"\nairflow dags test lakehouse_daily_bars_us {logical}: {seconds:.0f} s")
    print("\n".join(line for line in output.splitlines() if "Marking task as" in line or "state=" in line)[-3000:])
    assert done.returncode == 0, output[-5000:]
    assert "0 differences" in output, output[-5000:]

    expected = bars_from_trades(trades)
    stored = load_table(settings, BARS_1M).scan().to_pandas()
    columns = ["symbol", "window_start", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
    ordered = ["symbol", "window_start"]
    got = stored[columns].sort_values(ordered, ignore_index=True)
    want = expected[columns].sort_values(ordered, ignore_index=True)
    want["window_start"] = pd.to_datetime(want["window_start"], utc=True).astype(got["window_start"].dtype)
    assert len(want) > 0, "no bars expected: equal frames would prove nothing"
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-9)


def test_the_maintenance_and_sync_dags_each_run_once_end_to_end_and_record_their_success(
        airflow_env, bigquery_server, tmp_path: Path):
    from lakehouse.ops.job_runs import last_success

    settings, _ = lakehouse_with_a_day_of_trades(tmp_path / "lakehouse")
    create_tables(settings)  # and every other table, empty: maintenance goes over all of them
    env = {**airflow_env,
           "LAKEHOUSE__LOCAL__STATE_DIR": str(settings.state_dir),
           "LAKEHOUSE__CATALOG__URI": settings.catalog.uri,
           "LAKEHOUSE__CATALOG__WAREHOUSE": settings.catalog.warehouse,
           "LAKEHOUSE__BIGQUERY__ENDPOINT": bigquery_server.endpoint,
           "LAKEHOUSE__BIGQUERY__PROJECT": "airflow-test"}
    dag_ids = ("lakehouse_maintenance", "lakehouse_bigquery_sync")
    started = time.monotonic()  # both `airflow dags test` in one Airflow interpreter (run_airflow)
    done = run_airflow(env, *(["dags", "test", dag_id, "2026-03-03T00:15:00+00:00"] for dag_id in dag_ids),
                       timeout=1800, cwd=tmp_path)
    print(f"\nairflow dags test {' and '.join(dag_ids)}: {time.monotonic() - started:.0f} s")
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    outputs = outputs_of(done)
    assert len(outputs) == len(dag_ids), (done.stdout + done.stderr)[-5000:]
    for dag_id, output in zip(dag_ids, outputs, strict=True):
        assert output.startswith(f"dags test {dag_id} "), output[:200]
        assert "state=success" in output, output[-5000:]
    maintenance = last_success(settings.state_dir, "maintenance")
    sync = last_success(settings.state_dir, "bigquery_sync")
    assert maintenance is not None and maintenance.counts["tables_maintained"] == len(ALL_TABLES)
    assert sync is not None and sync.counts["tables_created"] == len(ALL_TABLES)


RENDER_COMMANDS = """
import json, runpy, sys
from pathlib import Path
from airflow.sdk.definitions._internal.contextmanager import DagContext
commands = {}
for dag_file in sorted(Path(sys.argv[1]).glob("lakehouse_*.py")):  # as DagBag loads them, without its database
    DagContext.current_autoregister_module_name = dag_file.stem
    runpy.run_path(str(dag_file), run_name=dag_file.stem)
for dag, _module in DagContext.autoregistered_dags:
    for task in dag.tasks:
        if hasattr(task, "bash_command"):
            commands[f"{dag.dag_id}.{task.task_id}"] = task.bash_command
print(json.dumps(commands))
"""


def test_the_dags_commands_keep_a_project_path_with_a_space_in_one_word(tmp_path: Path):
    """``cd '/p a/main' && /p a/main/.venv/bin/python -m ...``: the interpreter's path was not quoted.
    Fast: the DAG files and the calendar they import are copied under a path with a space and
    imported once in Airflow's virtualenv, with no metadata database."""
    root = tmp_path / "p a" / "main"
    for source in (*DAGS_FOLDER.glob("*.py"), *(PROJECT_ROOT / "lakehouse").glob("__init__.py"),
                   *(PROJECT_ROOT / "lakehouse" / "ops").glob("[_m]*.py")):
        target = root / source.relative_to(PROJECT_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text())
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "LAKEHOUSE"))}
    env.update({"AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    done = subprocess.run([str(AIRFLOW_VENV / "bin" / "python"), "-c", RENDER_COMMANDS,
                           str(root / "orchestration" / "airflow" / "dags")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    commands = json.loads(done.stdout.strip().splitlines()[-1])

    assert {"lakehouse_daily_bars_us.check_bars", "lakehouse_bigquery_sync.bigquery_sync",
            "lakehouse_vnstock_backfill.vnstock_backfill", "lakehouse_maintenance.maintenance"} <= commands.keys()
    for task, command in commands.items():
        words = shlex.split(command)
        assert words[:3] == ["cd", str(root), "&&"], (task, command)
        assert words[3] in (str(root / ".venv" / "bin" / "python"), "./spark-submit.sh"), (task, command)


def test_a_dag_waits_for_the_allowed_lateness_the_jobs_are_set_to(tmp_path: Path):
    """The US DAG released a day 60 s after it ended whatever the bars job's lateness: with 600 s the
    rebuild refused the day ("not over yet") until a retry. Standard library only, as in Airflow."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dag_support", DAGS_FOLDER / "lakehouse_dag_support.py")
    support = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(support)
    config = tmp_path / "lakehouse.toml"
    config.write_text("[streaming]\nallowed_lateness_seconds = 240\n")

    assert support.allowed_lateness_seconds({}) == load_settings(environ={}).streaming.allowed_lateness_seconds
    assert support.allowed_lateness_seconds({"LAKEHOUSE_CONFIG": str(config)}) == 240
    assert support.allowed_lateness_seconds({"LAKEHOUSE_CONFIG": str(config),
                                             "LAKEHOUSE__STREAMING__ALLOWED_LATENESS_SECONDS": "600"}) == 600
    ready = support.calendar_macros(support.MARKETS["us"])["ready_at"]
    os.environ["LAKEHOUSE__STREAMING__ALLOWED_LATENESS_SECONDS"] = "600"
    try:
        assert ready(datetime(2026, 7, 6, 20, 0, tzinfo=UTC)) == "2026-07-07T00:10:00+00:00"
    finally:
        del os.environ["LAKEHOUSE__STREAMING__ALLOWED_LATENESS_SECONDS"]
