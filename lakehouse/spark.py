"""Spark session set-up: the Iceberg catalog, the jars and the small-machine defaults, in one place.

``spark_conf`` is pure (settings in, Spark properties out) so a job launched by ``spark-submit.sh``
on a laptop and the same job on Dataproc differ only in settings. ``build_spark_session`` is the
edge that creates the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakehouse.catalog import gcs_file_io_properties, jdbc_uri, warehouse_uri
from lakehouse.settings import Settings
from lakehouse.tables import ALL_TABLES, TableDef, create_table_ddl

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def spark_jars(settings: Settings) -> list[str]:
    jars_dir = settings.path(settings.local.spark_jars_dir)
    return sorted(str(jar) for jar in jars_dir.glob("*.jar"))


def catalog_conf(settings: Settings) -> dict[str, str]:
    """Spark properties that register the lakehouse Iceberg catalog."""
    prefix = f"spark.sql.catalog.{settings.catalog.name}"
    conf = {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.warehouse": warehouse_uri(settings),
        # Streaming micro-batches run in a cloned session with a catalog instance of its own, and
        # other processes commit too: a cached table would be read stale, so always load fresh.
        f"{prefix}.cache-enabled": "false",
    }
    if settings.catalog.type == "rest":
        conf.update({f"{prefix}.type": "rest", f"{prefix}.uri": settings.catalog.uri})
    else:
        conf.update({f"{prefix}.type": "jdbc", f"{prefix}.uri": jdbc_uri(settings)})
        if jdbc_uri(settings).startswith("jdbc:sqlite:"):
            # SQLite allows one writer: one pooled connection per JVM, WAL so readers in other
            # processes (pyiceberg, other jobs) never block a commit, and a wait instead of an error.
            conf.update({
                f"{prefix}.clients": "1",
                f"{prefix}.jdbc.journal_mode": "WAL",
                f"{prefix}.jdbc.busy_timeout": "30000",
            })
        if settings.catalog.user:
            conf[f"{prefix}.jdbc.user"] = settings.catalog.user
        if settings.catalog.password:
            conf[f"{prefix}.jdbc.password"] = settings.catalog.password.get_secret_value()
    if warehouse_uri(settings).startswith("gs://"):
        conf[f"{prefix}.io-impl"] = "org.apache.iceberg.gcp.gcs.GCSFileIO"
        conf.update({f"{prefix}.{key}": value for key, value in gcs_file_io_properties(settings).items()})
    return conf


def spark_conf(settings: Settings) -> dict[str, str]:
    return {
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        "spark.sql.defaultCatalog": settings.catalog.name,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.streaming.shuffle_partitions),
        "spark.default.parallelism": str(settings.streaming.shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        **catalog_conf(settings),
    }


def launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands the Python driver its gateway port."""
    import os

    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_spark_session(settings: Settings, app_name: str, master: str | None = None) -> SparkSession:
    """Create (or reuse) the session. Under ``spark-submit`` the jars and master come from the
    command line; in-process (tests, notebooks) they are added here from ``jars/spark``."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if not launched_by_spark_submit():
        jars = spark_jars(settings)
        if not jars:
            raise RuntimeError(f"no Spark jars in {settings.path(settings.local.spark_jars_dir)}: run `make jars`")
        builder = builder.master(master or "local[2]").config("spark.jars", ",".join(jars))
        builder = builder.config("spark.driver.memory", "2g").config("spark.ui.enabled", "false")
    elif master:
        builder = builder.master(master)
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def ensure_tables(spark: SparkSession, settings: Settings, tables: tuple[TableDef, ...] = ALL_TABLES) -> None:
    """Create the namespace and tables that do not exist yet (idempotent)."""
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {settings.catalog.name}.{settings.catalog.namespace}")
    for table in tables:
        spark.sql(create_table_ddl(table, f"{settings.catalog.name}.{settings.catalog.namespace}.{table.name}"))
