"""The shared Iceberg catalog: one definition that Spark (Java Iceberg) and pyiceberg both open.

The catalog is described once by ``CatalogSettings``; this module turns it into the properties
each engine wants. Pure functions build the property maps; ``load_catalog`` is the only I/O.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.settings import Settings
from lakehouse.tables import TableDef

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table


def jdbc_uri(settings: Settings) -> str:
    """The catalog's JDBC URI with a SQLite path made absolute (Java and Python must agree)."""
    uri = settings.catalog.uri
    prefix = "jdbc:sqlite:"
    if uri.startswith(prefix):
        return prefix + str(settings.path(uri[len(prefix):]))
    return uri


def sqlalchemy_uri(settings: Settings) -> str:
    """pyiceberg's SqlCatalog speaks SQLAlchemy; derive its URI from the JDBC one."""
    uri = jdbc_uri(settings)
    if uri.startswith("jdbc:sqlite:"):
        return "sqlite:///" + uri[len("jdbc:sqlite:"):]
    if uri.startswith("jdbc:postgresql://"):
        credentials = ""
        if settings.catalog.user:
            password = settings.catalog.password.get_secret_value() if settings.catalog.password else ""
            credentials = f"{settings.catalog.user}:{password}@" if password else f"{settings.catalog.user}@"
        return "postgresql+psycopg2://" + credentials + uri[len("jdbc:postgresql://"):]
    raise ValueError(f"catalog.uri {uri!r} is not a JDBC URI pyiceberg can open")


def warehouse_uri(settings: Settings) -> str:
    """``gs://…`` and other URIs pass through; a local path becomes an absolute ``file:`` URI."""
    warehouse = settings.catalog.warehouse
    if "://" in warehouse:
        return warehouse
    return Path(settings.path(warehouse)).as_uri()


def gcs_file_io_properties(settings: Settings) -> dict[str, str]:
    """Iceberg GCS FileIO properties (same names in Java and pyiceberg) for a ``gs://`` warehouse."""
    props: dict[str, str] = {}
    if settings.gcs.project:
        props["gcs.project-id"] = settings.gcs.project
    if settings.gcs.endpoint:
        props["gcs.service.host"] = settings.gcs.endpoint
        props["gcs.no-auth"] = "true"
    return props


def pyiceberg_properties(settings: Settings) -> dict[str, str]:
    props = {"warehouse": warehouse_uri(settings)}
    if settings.catalog.type == "rest":
        props.update(type="rest", uri=settings.catalog.uri)
    else:
        props.update(type="sql", uri=sqlalchemy_uri(settings))
    if warehouse_uri(settings).startswith("gs://"):
        props.update(gcs_file_io_properties(settings))
    return props


def load_catalog(settings: Settings) -> Catalog:
    from pyiceberg.catalog import load_catalog as pyiceberg_load_catalog

    return pyiceberg_load_catalog(settings.catalog.name, **pyiceberg_properties(settings))


def table_identifier(settings: Settings, table: TableDef) -> str:
    """``namespace.table`` as pyiceberg names it."""
    return f"{settings.catalog.namespace}.{table.name}"


def spark_table_name(settings: Settings, table: TableDef) -> str:
    """``catalog.namespace.table`` as Spark SQL names it."""
    return f"{settings.catalog.name}.{settings.catalog.namespace}.{table.name}"


def load_table(settings: Settings, table: TableDef) -> Table:
    return load_catalog(settings).load_table(table_identifier(settings, table))
