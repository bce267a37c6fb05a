"""The driver's class-data archive that ``make test`` writes fits the drivers it is for: a local job
under ``spark-submit.sh`` maps thousands of classes from it. A classpath change would make every
driver start without it, silently and slower; this test says so instead."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lakehouse.local.class_archive import archive_path
from lakehouse.settings import PROJECT_ROOT, load_settings
from tests.conftest import driver_jvm_options

pytestmark = pytest.mark.integration


def test_a_local_job_under_spark_submit_loads_most_of_its_classes_from_the_archive(tmp_path: Path) -> None:
    archive = archive_path(load_settings(environ={}))
    assert archive.is_file(), f"no class archive at {archive}: `make test` writes it"
    class_log = tmp_path / "classes.log"
    env = {
        **os.environ,
        "SPARK_SUBMIT_OPTS": f"{driver_jvm_options()} -Xlog:class+load=info:file={class_log}",
    }
    run = subprocess.run(
        [str(PROJECT_ROOT / "spark-submit.sh"), "--master", "local[1]", "maintenance", "--help"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "usage: " in run.stdout, run.stdout[-2000:]
    loads = class_log.read_text().splitlines()
    from_archive = [line for line in loads if "shared objects file (top)" in line]
    assert len(loads) > 2_000, f"the driver JVM loaded only {len(loads)} classes: did it start?"
    assert len(from_archive) > len(loads) / 2, (
        f"{len(from_archive)} of {len(loads)} classes came from {archive}: it does not fit the driver's "
        f"classpath or JDK; `rm {archive}` and `make test` writes it again"
    )
