"""The shared Iceberg catalog: one definition that Spark (Java Iceberg) and pyiceberg both open.

The catalog is described once by ``CatalogSettings``; this module turns it into the properties
each engine wants. Pure functions build the property maps; ``load_catalog`` is the only I/O.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lakehouse.settings import Settings
from lakehouse.tables import TableDef

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table


def jdbc_uri(settings: Settings) -> str:
    """The catalog's JDBC URI with a SQLite path made absolute (Java and Python must agree)."""
    uri = settings.catalog.uri
    prefix = "jdbc:sqlite:"
    if uri.startswith(prefix):
        return prefix + str(settings.path(uri[len(prefix):]))
    return uri


def missing_embedded_catalog(settings: Settings) -> str | None:
    """What to do when the catalog is an embedded SQLite file that does not exist (pyiceberg and
    the JDBC driver would silently create an empty one); None when there is nothing to say."""
    uri = jdbc_uri(settings)
    prefix = "jdbc:sqlite:"
    if uri.startswith(prefix) and not Path(uri[len(prefix):]).exists():
        return (f"no lakehouse catalog at {uri[len(prefix):]}: run `make demo` to create the embedded "
                "demo lakehouse, or set LAKEHOUSE__CATALOG__URI and LAKEHOUSE__CATALOG__WAREHOUSE")
    return None


def sqlalchemy_uri(settings: Settings) -> str:
    """pyiceberg's SqlCatalog speaks SQLAlchemy; derive its URI from the JDBC one."""
    uri = jdbc_uri(settings)
    if uri.startswith("jdbc:sqlite:"):
        return "sqlite:///" + uri[len("jdbc:sqlite:"):]
    if uri.startswith("jdbc:postgresql://"):
        # user and password go into the URL's userinfo, percent-encoded (a password may hold @ : /).
        credentials = ""
        if settings.catalog.user:
            credentials = quote(settings.catalog.user, safe="")
            if settings.catalog.password:
                credentials += ":" + quote(settings.catalog.password.get_secret_value(), safe="")
            credentials += "@"
        return "postgresql+psycopg2://" + credentials + uri[len("jdbc:postgresql://"):]
    raise ValueError(f"catalog.uri {uri!r} is not a JDBC URI pyiceberg can open")


def warehouse_uri(settings: Settings) -> str:
    """``gs://…`` and other URIs pass through; a local path becomes an absolute ``file:`` URI."""
    warehouse = settings.catalog.warehouse
    if "://" in warehouse:
        return warehouse
    return Path(settings.path(warehouse)).as_uri()


def is_gcs_warehouse(settings: Settings) -> bool:
    """True when the warehouse is a ``gs://`` bucket (Spark and pyiceberg then need GCS FileIO props)."""
    return warehouse_uri(settings).startswith("gs://")


# ResolvingFileIO picks the FileIO by each path's scheme: gs:// -> GCSFileIO (what the warehouse
# needs), file:/ and hdfs:/ -> HadoopFileIO. A plain GCSFileIO is not enough: Iceberg's streaming
# source (the bars job) writes its offset file into the Spark checkpoint with the *table's* FileIO,
# and a local checkpoint then fails with "not a valid gsutil URI".
JAVA_RESOLVING_FILE_IO = "org.apache.iceberg.io.ResolvingFileIO"
PYICEBERG_FSSPEC_FILE_IO = "pyiceberg.io.fsspec.FsspecFileIO"
# Arrow's GCS client wants a token and its expiry when one is given; the emulator checks neither,
# so a fixed far-future expiry (2100-01-01 UTC, epoch ms) keeps this function free of a clock.
EMULATOR_TOKEN = "emulator-ignores-tokens"
EMULATOR_TOKEN_EXPIRES_AT_MS = 4_102_444_800_000


def gcs_java_properties(settings: Settings) -> dict[str, str]:
    """Iceberg catalog properties for Java's ``GCSFileIO`` (Spark jobs), for a ``gs://`` warehouse.

    The FileIO is ``ResolvingFileIO``, which hands ``gs://`` paths to GCSFileIO with these properties
    and local checkpoint paths to HadoopFileIO.

    Credentials, in order: with ``gcs.endpoint`` and no ``gcs.credentials_file`` (an emulator) no
    authentication at all (``gcs.no-auth``); otherwise Google Application Default Credentials. Java
    GCSFileIO has no key-file property: a ``gcs.credentials_file`` reaches the JVMs as
    ``GOOGLE_APPLICATION_CREDENTIALS`` (see ``lakehouse.spark.spark_environment``).
    """
    props = {"io-impl": JAVA_RESOLVING_FILE_IO}
    if settings.gcs.project:
        props["gcs.project-id"] = settings.gcs.project
    if settings.gcs.endpoint:
        props["gcs.service.host"] = settings.gcs.endpoint
        if settings.gcs.credentials_file is None:
            props["gcs.no-auth"] = "true"
    return props


def gcs_pyiceberg_properties(settings: Settings) -> dict[str, str]:
    """pyiceberg FileIO properties for a ``gs://`` warehouse.

    * ``gcs.credentials_file`` set: gcsfs (``FsspecFileIO``) with ``gcs.oauth2.token`` = the key file
      path; gcsfs loads the service-account key and refreshes its tokens (Arrow's GCS client has no
      key-file option, and a token minted here would expire after an hour in a long notebook).
    * ``gcs.endpoint`` without a key file (an emulator): Arrow (``PyArrowFileIO``) with a dummy token,
      because without one Arrow asks Google's metadata server for credentials.
    * neither: Arrow with Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``,
      ``gcloud auth application-default login``, or the VM's service account).
    """
    props: dict[str, str] = {}
    if settings.gcs.project:
        props["gcs.project-id"] = settings.gcs.project
    if settings.gcs.endpoint:
        props["gcs.service.host"] = settings.gcs.endpoint
    if settings.gcs.credentials_file is not None:
        props["py-io-impl"] = PYICEBERG_FSSPEC_FILE_IO
        props["gcs.oauth2.token"] = str(settings.path(settings.gcs.credentials_file))
    elif settings.gcs.endpoint:
        props["gcs.oauth2.token"] = EMULATOR_TOKEN
        props["gcs.oauth2.token-expires-at"] = str(EMULATOR_TOKEN_EXPIRES_AT_MS)
    return props


# The Iceberg REST client properties Java's RESTCatalog and pyiceberg's RestCatalog spell alike.
GOOGLE_USER_PROJECT_HEADER = "header.x-goog-user-project"
ACCESS_DELEGATION_HEADER = "header.X-Iceberg-Access-Delegation"


def rest_client_properties(settings: Settings) -> dict[str, str]:
    """REST catalog client properties both engines read under the same names: the URI, OAuth2
    (``credential``/``token``, ``oauth2-server-uri``, ``scope``) and the extra request headers.

    The auth manager is chosen differently by each engine (``rest_java_auth_properties``,
    ``rest_pyiceberg_auth_properties``).
    """
    catalog = settings.catalog
    props = {"uri": catalog.uri}
    if catalog.credential is not None:
        props["credential"] = catalog.credential.get_secret_value()
    if catalog.token is not None:
        props["token"] = catalog.token.get_secret_value()
    if catalog.oauth2_server_uri:
        props["oauth2-server-uri"] = catalog.oauth2_server_uri
    if catalog.scope:
        props["scope"] = catalog.scope
    if catalog.google_user_project:
        props[GOOGLE_USER_PROJECT_HEADER] = catalog.google_user_project
    if catalog.access_delegation:
        props[ACCESS_DELEGATION_HEADER] = catalog.access_delegation
    return props


def rest_java_auth_properties(settings: Settings) -> dict[str, str]:
    """Java Iceberg 1.10's ``rest.auth.type``: ``google`` is ``org.apache.iceberg.gcp.auth.GoogleAuthManager``
    (in the Spark runtime jar), which signs each request with Google credentials (ADC unless
    ``gcp.auth.credentials-path`` names a key file). Unset: Java's default (OAuth2 when a
    credential or token is set, else none)."""
    catalog = settings.catalog
    props: dict[str, str] = {}
    if catalog.rest_auth_type:
        props["rest.auth.type"] = catalog.rest_auth_type
    if catalog.rest_auth_type == "google" and catalog.google_credentials_file is not None:
        props["gcp.auth.credentials-path"] = str(settings.path(catalog.google_credentials_file))
    return props


def rest_pyiceberg_auth_properties(settings: Settings) -> dict[str, Any]:
    """pyiceberg 0.12 picks its auth manager from an ``auth`` mapping (``{"type": "google", "google":
    {...}}``); without one it uses OAuth2 when a credential or token is set, as Java does."""
    catalog = settings.catalog
    if catalog.rest_auth_type == "google":
        google: dict[str, str] = {}
        if catalog.google_credentials_file is not None:
            google["credentials_path"] = str(settings.path(catalog.google_credentials_file))
        return {"auth": {"type": "google", "google": google}}
    if catalog.rest_auth_type == "none":
        return {"auth": {"type": "noop"}}
    return {}


def pyiceberg_properties(settings: Settings) -> dict[str, Any]:
    props: dict[str, Any] = {"warehouse": warehouse_uri(settings)}
    if settings.catalog.type == "rest":
        props.update(type="rest", **rest_client_properties(settings), **rest_pyiceberg_auth_properties(settings))
    else:
        props.update(type="sql", uri=sqlalchemy_uri(settings))
    if is_gcs_warehouse(settings):
        props.update(gcs_pyiceberg_properties(settings))
    return props


def load_catalog(settings: Settings, refs_only: bool = False) -> Catalog:
    """pyiceberg's client of the catalog. ``refs_only`` (REST catalogs): tables load with only the
    snapshots their refs point at (the REST spec's ``snapshots=refs``), for readers of current data."""
    from pyiceberg.catalog import load_catalog as pyiceberg_load_catalog

    props = pyiceberg_properties(settings)
    if refs_only and settings.catalog.type == "rest":
        props["snapshot-loading-mode"] = "refs"
    return pyiceberg_load_catalog(settings.catalog.name, **props)


def prepare_catalog(settings: Settings) -> None:
    """Create the catalog's own database tables if missing (pyiceberg's SqlCatalog does so on load).

    Java's JdbcCatalog is told not to (see ``lakehouse.spark.catalog_conf``); both engines use the
    same two tables, ``iceberg_tables`` and ``iceberg_namespace_properties``.
    """
    if settings.catalog.type == "jdbc" and jdbc_uri(settings).startswith("jdbc:sqlite:"):
        Path(jdbc_uri(settings).removeprefix("jdbc:sqlite:")).parent.mkdir(parents=True, exist_ok=True)
        load_catalog(settings)


def table_identifier(settings: Settings, table: TableDef) -> str:
    """``namespace.table`` as pyiceberg names it."""
    return f"{settings.catalog.namespace}.{table.name}"


def spark_table_name(settings: Settings, table: TableDef) -> str:
    """``catalog.namespace.table`` as Spark SQL names it."""
    return f"{settings.catalog.name}.{settings.catalog.namespace}.{table.name}"


def load_table(settings: Settings, table: TableDef) -> Table:
    return load_catalog(settings).load_table(table_identifier(settings, table))


def live_files(table: Table) -> pa.Table:
    """The current snapshot's data and delete files (pyiceberg's ``inspect.files()``), none for a
    snapshot that added no file. A stream commits such snapshots (a micro-batch that wrote nothing
    still records it), and pyiceberg 0.12 raises ``ArrowInvalid: Must pass at least one table`` on
    them, which made status and the dashboard report an empty table as unreachable. Told apart by
    the snapshot's summary totals, which every Iceberg writer keeps: no read beyond ``files()``'s."""
    snapshot = table.current_snapshot()
    summary = snapshot.summary if snapshot is not None else None
    if snapshot is None or (summary is not None and summary.get("total-data-files") == "0"
                            and summary.get("total-delete-files") == "0"):
        return table.inspect._get_files_schema().empty_table()
    return table.inspect.files()
