"""pyiceberg writes and reads an Iceberg table on the local GCS emulator (``gs://`` warehouse).

Two FileIOs, two sets of properties, both with ``gcs.service.host`` = the emulator's http endpoint:

* PyArrowFileIO (pyiceberg's default for ``gs://``): a credential must be given, or Arrow's GCS client
  goes looking for Google default credentials (and the GCE metadata server). Any token works, since
  the emulator does not check it: ``gcs.oauth2.token`` + ``gcs.oauth2.token-expires-at`` (epoch ms).
* FsspecFileIO (``py-io-impl``), i.e. gcsfs: ``gcs.oauth2.token = "anon"``. gcsfs 2026.x by default
  asks the Storage Control gRPC API for each bucket's layout, which the emulator does not serve: every
  call then waits out a 60 s retry. ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` (read when gcsfs is
  first imported) turns that off, so that case runs in a subprocess with the variable set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from lakehouse.local import gcs_emulator
from lakehouse.local._daemon import EmulatorProcess

BUCKET = "market-lake"


def round_trip(catalog_db: str, properties: dict[str, str]) -> dict[str, Any]:
    """Create ``market.trades`` in a SQLite SqlCatalog over ``gs://BUCKET/wh``, append twice, read back."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("lake", uri=f"sqlite:///{catalog_db}", warehouse=f"gs://{BUCKET}/wh", **properties)
    catalog.create_namespace("market")
    trades = pa.table({"symbol": ["AAPL", "MSFT"], "price": [187.5, 410.25], "volume": [100, 10]})
    table = catalog.create_table("market.trades", schema=trades.schema)
    table.append(trades)
    table.append(trades.slice(0, 1))
    reloaded = catalog.load_table("market.trades")
    return {
        "file_io": type(reloaded.io).__name__,
        "metadata_location": reloaded.metadata_location,
        "snapshots": len(reloaded.snapshots()),
        "rows": reloaded.scan()
        .to_arrow()
        .sort_by([("symbol", "ascending"), ("volume", "ascending")])
        .to_pylist(),
    }


EXPECTED_ROWS = [
    {"symbol": "AAPL", "price": 187.5, "volume": 100},
    {"symbol": "AAPL", "price": 187.5, "volume": 100},
    {"symbol": "MSFT", "price": 410.25, "volume": 10},
]


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with gcs_emulator.running(tmp_path / "gcs") as started:
        gcs_emulator.storage_client(started.endpoint).create_bucket(BUCKET)
        yield started


def _objects(emulator: EmulatorProcess) -> list[str]:
    return sorted(b.name for b in gcs_emulator.storage_client(emulator.endpoint).list_blobs(BUCKET))


def test_pyarrow_fileio_appends_and_reads_back_through_the_emulator(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    result = round_trip(
        str(tmp_path / "cat.db"),
        {
            "gcs.service.host": emulator.endpoint,
            "gcs.oauth2.token": "emulator-ignores-tokens",
            "gcs.oauth2.token-expires-at": str(int(time.time() * 1000) + 3_600_000),
        },
    )
    assert result["file_io"] == "PyArrowFileIO"
    assert result["rows"] == EXPECTED_ROWS
    assert result["snapshots"] == 2
    assert result["metadata_location"].startswith(f"gs://{BUCKET}/wh/market/trades/metadata/00002-")

    objects = _objects(emulator)
    assert result["metadata_location"].removeprefix(f"gs://{BUCKET}/") in objects
    assert (
        sum(name.startswith("wh/market/trades/data/") and name.endswith(".parquet") for name in objects) == 2
    )


def test_fsspec_fileio_appends_and_reads_back_with_gcsfs_layout_probe_off(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    properties = {
        "py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO",
        "gcs.service.host": emulator.endpoint,
        "gcs.oauth2.token": "anon",
        "gcs.project-id": "local-project",
    }
    script = (
        "import json, sys; from tests.test_pyiceberg_on_gcs import round_trip; "
        "print(json.dumps(round_trip(sys.argv[1], json.loads(sys.argv[2]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "cat.db"), json.dumps(properties)],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["file_io"] == "FsspecFileIO"
    assert result["rows"] == EXPECTED_ROWS
    assert result["metadata_location"].removeprefix(f"gs://{BUCKET}/") in _objects(emulator)
