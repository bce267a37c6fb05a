"""Every job has one entry-point shape: ``main(argv) -> int``, ``--config`` accepted, and it is the
list ``spark-submit.sh`` names in its usage text. No JVM: ``--help`` ends before a session starts."""

from __future__ import annotations

import importlib
import inspect
import re
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
