"""A service-account key file (``gcs.credentials_file``) really is what pyiceberg authenticates with.

No Google host is reachable, so the key file is a real, freshly generated RSA service-account key
whose ``token_uri`` points at a tiny local OAuth2 token endpoint; the data goes to fake-gcs-server.
The test proves the path the settings choose (gcsfs reading the key file, signing a JWT, exchanging
it for a token) works, and that the token endpoint was asked, so nothing fell back to a dummy token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lakehouse.local import gcs_emulator

BUCKET = "keyed-lake"

READ_BACK = """
import json, sys
import pyarrow as pa
from lakehouse.catalog import load_catalog
from lakehouse.settings import load_settings

settings = load_settings()
catalog = load_catalog(settings)
catalog.create_namespace("market")
table = catalog.create_table("market.prices", schema=pa.schema([("symbol", pa.string()), ("price", pa.float64())]))
table.append(pa.table({"symbol": ["AAPL"], "price": [187.5]}))
loaded = catalog.load_table("market.prices")
print(json.dumps({"io": type(loaded.io).__name__, "metadata": loaded.metadata_location,
                  "rows": loaded.scan().to_arrow().to_pylist()}))
"""


@pytest.fixture
def token_endpoint() -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    """An OAuth2 token endpoint that grants any JWT-bearer request and records it."""
    grants: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            grants.append(form)
            body = json.dumps({"access_token": "granted-token", "expires_in": 3600, "token_type": "Bearer"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token", grants
    finally:
        server.shutdown()
        server.server_close()


def service_account_key(path: Path, token_uri: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "local-project", "private_key_id": "test-key",
        "private_key": pem, "client_email": "lakehouse@local-project.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri,
    }))
    return path


def test_pyiceberg_writes_and_reads_gcs_with_a_service_account_key_file(
    tmp_path: Path, token_endpoint: tuple[str, list[dict[str, list[str]]]]
) -> None:
    token_uri, grants = token_endpoint
    key_file = service_account_key(tmp_path / "key.json", token_uri)
    with gcs_emulator.running(tmp_path / "gcs") as gcs:
        gcs_emulator.storage_client(gcs.endpoint).create_bucket(BUCKET)
        env = {
            **os.environ,
            "LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path),
            "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{tmp_path}/catalog.db",
            "LAKEHOUSE__CATALOG__WAREHOUSE": f"gs://{BUCKET}/warehouse",
            "LAKEHOUSE__GCS__ENDPOINT": gcs.endpoint,
            "LAKEHOUSE__GCS__PROJECT": "local-project",
            "LAKEHOUSE__GCS__CREDENTIALS_FILE": str(key_file),
            # gcsfs asks each bucket's layout from a gRPC API the emulator lacks (real GCS has it).
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }
        done = subprocess.run(
            [sys.executable, "-c", READ_BACK], cwd=Path(__file__).resolve().parent.parent, env=env,
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        stored = [b.name for b in gcs_emulator.storage_client(gcs.endpoint).list_blobs(BUCKET)]

    assert result["io"] == "FsspecFileIO"
    assert result["rows"] == [{"symbol": "AAPL", "price": 187.5}]
    assert result["metadata"].removeprefix(f"gs://{BUCKET}/") in stored
    assert grants, "the key file's token endpoint was never asked for a token"
    assert grants[0]["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
