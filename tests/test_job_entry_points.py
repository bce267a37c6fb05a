"""Every job has one entry-point shape: ``main(argv) -> int``, ``--config`` accepted, and it is the
list ``spark-submit.sh`` names in its usage text. No JVM: ``--help`` ends before a session starts."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JOBS = sorted(path.stem for path in (PROJECT_ROOT / "jobs").glob("*.py") if path.stem != "__init__")


@pytest.mark.parametrize("job", JOBS)
def test_every_job_takes_argv_and_accepts_config(job: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"jobs.{job}").main
    assert list(inspect.signature(main).parameters) == ["argv"]
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith(f"usage: python -m jobs.{job} ")
    assert "--config FILE" in usage


def test_spark_submit_lists_exactly_the_jobs_that_exist() -> None:
    script = (PROJECT_ROOT / "spark-submit.sh").read_text()
    listed = re.search(r"JOB is a module name in jobs/ \(([^)]*)\)", script.replace("\n#", ""))
    assert listed is not None
    assert sorted(name.strip() for name in listed.group(1).split(",")) == JOBS


@pytest.mark.parametrize("job", JOBS)
def test_a_missing_config_file_or_a_bad_setting_ends_a_job_in_its_message_before_spark(
    job: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    main = importlib.import_module(f"jobs.{job}").main
    missing = tmp_path / "nope.toml"
    required = ["--day", "2026-01-05"] if job == "rebuild_bars" else []
    for argv, setting in (([*required, f"--config={missing}"], None), (required, "streaming.trigger_seconds")):
        if setting:
            monkeypatch.setenv("LAKEHOUSE__STREAMING__TRIGGER_SECONDS", "-1")
        with pytest.raises(SystemExit) as done:
            main(argv)  # a Spark session would start a JVM, and fail later and otherwise
        said = capsys.readouterr().err
        assert done.value.code == 2, said
        assert (setting or f"config file {missing} does not exist") in said
        assert "Traceback" not in said and "LAKEHOUSE_CONFIG" not in said


def test_spark_submit_checks_the_jobs_settings_before_it_starts_a_jvm(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    bad = subprocess.run([str(PROJECT_ROOT / "spark-submit.sh"), "raw_trades", "--config", str(missing)],
                         capture_output=True, text=True, timeout=120)
    # One line, and nothing of Spark's start-up (its warnings, a traceback from the job's driver).
    assert (bad.returncode, bad.stdout, bad.stderr) == (2, "", f"config file {missing} does not exist\n")


def test_spark_submit_refuses_a_bind_address_that_is_no_address_before_it_starts_a_jvm() -> None:
    environ = {**os.environ, "LAKEHOUSE__SPARK__LOCAL_BIND_ADDRESS": "not an address"}
    done = subprocess.run([str(PROJECT_ROOT / "spark-submit.sh"), "raw_trades"], env=environ, capture_output=True,
                          text=True, timeout=300)
    # Was: a JVM started and died with java.net.UnknownHostException in a 29-line trace, exit 1.
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.splitlines()[1:] == [
        "  setting 'spark.local_bind_address' (env LAKEHOUSE__SPARK__LOCAL_BIND_ADDRESS): Value error, "
        "'not an address' is neither an IP address nor a host name"]


@pytest.mark.parametrize(("job", "argv", "said"), [
    ("maintenance", ["--interval", "-5"], "argument --interval: must be >= 0, got -5"),
    ("maintenance", ["--interval", "nan"], "argument --interval: must be >= 0, got nan"),
    ("maintenance", ["--step-attempts", "0"], "argument --step-attempts: must be >= 1, got 0"),
    ("maintenance", ["--max-snapshots", "0"], "argument --max-snapshots: must be >= 1, got 0"),
    ("maintenance", ["--max-snapshots", "1.5"], "argument --max-snapshots: not an integer: '1.5'"),
    ("maintenance", ["--orphan-age-hours", "0"], "argument --orphan-age-hours: must be >= 24, got 0"),
    # Iceberg's procedure refuses under 24 hours: it failed every table's step after the session started.
    ("maintenance", ["--orphan-age-hours", "23.9"], "argument --orphan-age-hours: must be >= 24, got 23.9"),
    ("maintenance", ["--snapshot-retention-hours", "inf"], "argument --snapshot-retention-hours: must be > 0"),
    # An empty list maintained nothing and recorded a success; an unknown name exited 1.
    ("maintenance", ["--tables", ""], "argument --tables: names no table; known: ['bars_1m', "),
    ("maintenance", ["--tables", " , "], "argument --tables: names no table; known: "),
    ("maintenance", ["--tables", "trades,trade"], "argument --tables: unknown tables ['trade']; known: ['bars_1m', "),
    ("bigquery_sync", ["--interval", "0"], "argument --interval: must be > 0, got 0"),
    # Any string went into every table's definition: BigQuery refused each, or a dry run printed it.
    ("bigquery_sync", ["--dry-run", "--connection", "lake"], "argument --connection: BigQuery connection 'lake' "
     "is not PROJECT.LOCATION.CONNECTION_ID or projects/PROJECT/locations/LOCATION/connections/CONNECTION_ID"),
    ("bigquery_sync", ["--connection", "my-project.us.lake;x"], "argument --connection: BigQuery connection "
     "'my-project.us.lake;x': connection id 'lake;x' may contain only letters, digits, underscores and hyphens"),
    ("bars", ["--max-rows-per-batch", "0"], "argument --max-rows-per-batch: must be >= 1, got 0"),
    ("rebuild_bars", ["--day", "2026-13-01"], "argument --day: not a day YYYY-MM-DD: '2026-13-01' (month must be"),
    ("rebuild_bars", ["--day", "yesterday"], "argument --day: not a day YYYY-MM-DD: 'yesterday'"),
    # An empty symbol rebuilt nothing and committed an empty replacement.
    ("rebuild_bars", ["--day", "2026-01-05", "--symbol", ""], "argument --symbol: not a symbol: ''"),
    ("rebuild_bars", ["--day", "2026-01-05", "--symbol", "BRK B"], "argument --symbol: not a symbol: 'BRK B'"),
])
def test_a_number_out_of_range_is_refused_as_a_bad_argument(
    job: str, argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A negative --interval ran maintenance back to back; --step-attempts 0 ran no step and failed.
    with pytest.raises(SystemExit) as done:
        importlib.import_module(f"jobs.{job}").main(argv)
    assert done.value.code == 2
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--master", "local[1]", "--help"]])
def test_spark_submit_help_prints_its_usage(argv: list[str]) -> None:
    done = subprocess.run([str(PROJECT_ROOT / "spark-submit.sh"), *argv], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr  # was: "$2: unbound variable", exit 1
    assert done.stdout.startswith("Run a job of jobs/") and "JOB is a module name in jobs/" in done.stdout


def test_spark_submit_names_an_option_left_without_its_value() -> None:
    done = subprocess.run([str(PROJECT_ROOT / "spark-submit.sh"), "--driver-memory"], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stderr) == (2, "spark-submit option --driver-memory needs a value\n")


@pytest.mark.parametrize("form", [["--config", "only_here.toml"], ["--config=only_here.toml"]])
def test_spark_submit_reads_a_relative_config_from_the_callers_directory(tmp_path: Path, form: list[str]) -> None:
    # The script cd's to the project root: the job said "config file only_here.toml does not exist".
    (tmp_path / "only_here.toml").write_text("[kafka]\npartitions = 0\n")
    done = subprocess.run([str(PROJECT_ROOT / "spark-submit.sh"), "raw_trades", *form], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "setting 'kafka.partitions'" in done.stderr, done.stderr


def test_spark_submit_names_a_master_left_without_its_value() -> None:
    done = subprocess.run([str(PROJECT_ROOT / "spark-submit.sh"), "--master"], capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stderr) == (2, "spark-submit option --master needs a value\n")  # was: $2 unbound


@pytest.mark.parametrize("job", ["../lakehouse/settings", "__init__", "Raw_Trades", "raw trades"])
def test_spark_submit_runs_only_the_jobs_it_lists(job: str) -> None:
    # '../lakehouse/settings' ran lakehouse/settings.py as a job, '__init__' ran the package's file.
    done = subprocess.run([str(PROJECT_ROOT / "spark-submit.sh"), job], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith(f"no job '{job}' in jobs/ (have: bars "), done.stderr


def test_spark_submit_started_through_a_symlink_finds_the_project(tmp_path: Path) -> None:
    link = tmp_path / "submit"
    link.symlink_to(PROJECT_ROOT / "spark-submit.sh")
    missing = tmp_path / "nope.toml"
    done = subprocess.run([str(link), "raw_trades", "--config", str(missing)], capture_output=True, text=True,
                          timeout=120)
    # Was: the link's folder taken for the project ("spark-submit not found" or "no jars in jars/spark").
    assert (done.returncode, done.stderr) == (2, f"config file {missing} does not exist\n")


FAKE_SPARK_SUBMIT = """#!/usr/bin/env bash
# Stands in for spark-submit: records the --py-files it was given; runs on while $HOLD exists.
while [[ $# -gt 0 ]]; do [[ "$1" == --py-files ]] && echo "$2" >> "$RECORD"; shift; done
while [[ -n "${HOLD:-}" && -e "$HOLD" ]]; do sleep 0.1; done
"""


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """spark-submit.sh, lakehouse/ and jobs/ copied (the jars linked), so a test's .state/dist and
    source edits stay its own; a fake spark-submit in SPARK_SUBMIT stands in for the JVM."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy2(PROJECT_ROOT / "spark-submit.sh", root)
    for package in ("lakehouse", "jobs"):
        shutil.copytree(PROJECT_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "jars").symlink_to(PROJECT_ROOT / "jars")
    fake = tmp_path / "fake-spark-submit"
    fake.write_text(FAKE_SPARK_SUBMIT)
    fake.chmod(0o755)
    return root


def launch(root: Path, hold: Path | None = None) -> subprocess.Popen[str]:
    environ = {**os.environ, "SPARK_SUBMIT": str(root.parent / "fake-spark-submit"),
               "RECORD": str(root.parent / "py-files.txt"), "HOLD": str(hold or "")}
    return subprocess.Popen([str(root / "spark-submit.sh"), "--master", "spark://127.0.0.1:1", "raw_trades"],
                            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def launched(root: Path, hold: Path | None = None) -> Path:
    """Run one launch to its end; the zip it shipped."""
    done = launch(root, hold)
    _, stderr = done.communicate(timeout=120)
    assert done.returncode == 0, stderr
    return Path((root.parent / "py-files.txt").read_text().splitlines()[-1])


def zips(root: Path) -> set[Path]:
    return set((root / ".state" / "dist").glob("lakehouse-py-*.zip"))


def test_spark_submit_ships_one_zip_per_version_of_the_code_and_launches_reuse_it(project_copy: Path) -> None:
    first, second = launched(project_copy), launched(project_copy)

    # Was: a new 550 KB zip under .state/dist on every launch, none ever removed.
    assert first == second and zips(project_copy) == {first}
    assert "lakehouse/settings.py" in zipfile.ZipFile(first).namelist()


def test_spark_submit_removes_the_zips_no_running_job_uses_and_keeps_a_running_jobs_zip(
    project_copy: Path, tmp_path: Path
) -> None:
    dist = project_copy / ".state" / "dist"
    hold = tmp_path / "job-a-runs"
    hold.touch()
    job_a = launch(project_copy, hold)  # a job that runs on with its zip
    record = tmp_path / "py-files.txt"
    deadline = time.monotonic() + 60
    while not record.exists():
        assert time.monotonic() < deadline and job_a.poll() is None, job_a.stderr and job_a.stderr.read()
        time.sleep(0.1)
    zip_a = Path(record.read_text().strip())
    leftover, partial = dist / "lakehouse-py-Ab12Cd.zip", dist / ".partial-x1.zip"  # a launch's before, a killed one's
    named = dist / "lakehouse-py-Ef34Gh.zip"
    for path in (leftover, partial, named):
        path.write_bytes(b"PK")
    # A job started by an earlier spark-submit.sh, which took no lock: it names its zip on its command line.
    older_job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "--py-files", str(named)])
    try:
        with (project_copy / "jobs" / "raw_trades.py").open("a") as source:
            source.write("# another version of the code\n")
        zip_b = launched(project_copy)
        assert zip_b != zip_a
        assert zips(project_copy) == {zip_a, zip_b, named}  # the leftover and the partial zip are gone
        assert not partial.exists()
    finally:
        older_job.kill()
        older_job.wait(timeout=30)
        hold.unlink()
        job_a.communicate(timeout=60)
    assert job_a.returncode == 0

    assert launched(project_copy) == zip_b
    assert zips(project_copy) == {zip_b}  # job A's zip once job A had ended, the older job's once it had
