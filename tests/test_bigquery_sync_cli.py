"""``python -m jobs.bigquery_sync`` as a new user runs it, on a machine without Google credentials.

The sync runs as its own process, against a real embedded catalog (pyiceberg on SQLite) with the
lakehouse tables created and no way to find credentials: no key file variable, an empty gcloud
configuration, and the Compute Engine metadata server pointed at a closed local port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.reading.synthetic import create_tables
from lakehouse.settings import PROJECT_ROOT, load_settings
from lakehouse.tables import ALL_TABLES

pytestmark = pytest.mark.integration  # each test runs the sync job as a child process


def without_google_credentials(state: Path) -> dict[str, str]:
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_", "LAKEHOUSE"))}
    closed = "127.0.0.1:9"  # the discard port: nothing listens there
    environ.update({
        "HOME": str(state), "CLOUDSDK_CONFIG": str(state / "gcloud"),
        "GCE_METADATA_HOST": closed, "GCE_METADATA_IP": closed,
        "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state}/catalog.db",
        "LAKEHOUSE__CATALOG__WAREHOUSE": str(state / "warehouse"),
        "LAKEHOUSE__LOCAL__STATE_DIR": str(state),
    })
    return environ


def run_sync(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobs.bigquery_sync", *args], cwd=PROJECT_ROOT, env=environ,
                          capture_output=True, text=True, timeout=120, check=False)


def test_a_dry_run_without_credentials_plans_every_table_and_says_what_to_set_in_one_line(tmp_path: Path) -> None:
    environ = without_google_credentials(tmp_path)
    create_tables(load_settings(environ=environ))

    done = run_sync(environ, "--dry-run")

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    advice = [line for line in done.stderr.splitlines() if "GOOGLE_APPLICATION_CREDENTIALS" in line]
    assert len(advice) == 1 and "no Google credentials" in advice[0]
    planned = [line for line in done.stdout.splitlines() if line.startswith("would create")]
    assert len(planned) == len(ALL_TABLES), done.stdout


def test_a_real_sync_without_credentials_stops_with_one_line_and_exit_status_2(tmp_path: Path) -> None:
    environ = without_google_credentials(tmp_path)
    create_tables(load_settings(environ=environ))

    done = run_sync(environ)

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if "ERROR" in line] == [
        line for line in done.stderr.splitlines() if "no Google credentials" in line
    ] != []
    assert done.stdout == ""


def test_a_connection_in_no_form_bigquery_takes_ends_the_sync_in_one_line_with_exit_status_2(tmp_path: Path) -> None:
    environ = without_google_credentials(tmp_path)
    create_tables(load_settings(environ=environ))

    done = run_sync(environ, "--dry-run", "--connection", "not a connection")

    # Was: exit 0, every table planned "WITH CONNECTION `not a connection`" (a real run: BigQuery refused each).
    assert (done.returncode, done.stdout) == (2, "")
    assert [line for line in done.stderr.splitlines() if not line.startswith(("usage:", " "))] == [
        "python -m jobs.bigquery_sync: error: argument --connection: BigQuery connection 'not a connection' is not "
        "PROJECT.LOCATION.CONNECTION_ID or projects/PROJECT/locations/LOCATION/connections/CONNECTION_ID "
        "(e.g. my-project.us.lake)"
    ]


def test_a_dry_run_before_any_job_ran_skips_every_table_instead_of_failing(tmp_path: Path) -> None:
    environ = without_google_credentials(tmp_path / "fresh-clone")  # not even the state folder exists

    done = run_sync(environ, "--dry-run")

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "no Iceberg catalog at" in done.stderr
    assert sum(line.startswith("skipped") for line in done.stdout.splitlines()) == len(ALL_TABLES)


def test_a_table_whose_metadata_file_is_gone_is_named_and_the_others_are_still_synced(tmp_path: Path) -> None:
    """It stopped the whole pass with a 36-line trace: the tables after the damaged one were not synced."""
    environ = without_google_credentials(tmp_path)
    settings = load_settings(environ=environ)
    create_tables(settings)
    shutil.rmtree(Path(settings.catalog.warehouse) / settings.catalog.namespace / "bars_1m" / "metadata")

    done = run_sync(environ, "--dry-run")

    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    failed = [line for line in done.stdout.splitlines() if "bars_1m" in line]
    assert failed and "cannot load the Iceberg table" in failed[0] and "FileNotFoundError" in failed[0], done.stdout
    planned = [line for line in done.stdout.splitlines() if line.startswith("would create")]
    assert len(planned) == len(ALL_TABLES) - 1, done.stdout


FAKE_KEY = "-----BEGIN PRIVATE KEY-----\nSECRETKEYDATA\n-----END PRIVATE KEY-----\n"


def broken_key_file(state: Path, kind: str) -> Path:
    """A credentials_file that is set but unusable, in one of the ways an operator gets it wrong."""
    if kind == "a directory":
        return state
    key_file = state / "key.json"
    if kind == "not JSON":
        key_file.write_bytes(b"\xff\xfe" + FAKE_KEY.encode())
    elif kind == "a malformed key":
        key_file.write_text(json.dumps({"type": "service_account", "private_key": FAKE_KEY, "client_email": "a@b",
                                        "token_uri": "https://oauth2.googleapis.com/token"}))
    return key_file


@pytest.mark.parametrize(("kind", "said"), [
    ("a directory", "is not a regular file"),  # was: IsADirectoryError, a traceback
    ("missing", "does not exist"),  # was: "no Google credentials: set ... credentials_file", though it is set
    ("not JSON", "is not JSON"),
    ("a malformed key", "its private_key cannot be loaded"),
])
def test_a_credentials_file_that_is_set_but_unusable_is_named_in_one_line_with_exit_status_2(
    tmp_path: Path, kind: str, said: str
) -> None:
    key_file = broken_key_file(tmp_path, kind)
    environ = {**without_google_credentials(tmp_path), "LAKEHOUSE__BIGQUERY__CREDENTIALS_FILE": str(key_file)}

    for args in ((), ("--dry-run",)):
        done = run_sync(environ, *args)

        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and f"credentials_file (LAKEHOUSE__BIGQUERY__CREDENTIALS_FILE) {key_file}" \
            in done.stderr and said in done.stderr, done.stderr
        assert "SECRETKEYDATA" not in done.stdout + done.stderr and "no Google credentials" not in done.stderr
