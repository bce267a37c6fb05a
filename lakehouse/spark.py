"""Spark session set-up: the Iceberg catalog, the jars and the small-machine defaults, in one place.

``spark_conf`` is pure (settings in, Spark properties out) so a job launched by ``spark-submit.sh``
on a laptop and the same job on Dataproc differ only in settings. ``build_spark_session`` is the
edge that creates the session.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fnmatch import fnmatch
from typing import TYPE_CHECKING

from lakehouse.catalog import (
    gcs_java_properties,
    is_gcs_warehouse,
    jdbc_uri,
    prepare_catalog,
    rest_client_properties,
    rest_java_auth_properties,
    spark_table_name,
    warehouse_uri,
)
from lakehouse.conditions import bar_eligible_column
from lakehouse.settings import Settings, SettingsError, load_settings
from lakehouse.tables import (
    ALL_TABLES,
    TRADES,
    TableDef,
    create_table_ddl,
    missing_optional_columns,
    missing_properties,
    partition_field_name,
    spark_column_type,
    spec_evolution,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


# Hadoop's local FileSystem, without libhadoop (never in Maven jars), sets each new file's permissions
# by forking `chmod`: two forks per Iceberg data file (the file and its .crc). This one sets them
# through java.nio. Measured on a raw-trades micro-batch of ~13k trades into 50 symbol partitions:
# 2.27 s -> 1.64-1.73 s (docs/performance.md#the-local-file-system).
NIO_LOCAL_FILESYSTEM = "com.globalmentor.apache.hadoop.fs.BareLocalFileSystem"
NIO_LOCAL_FILESYSTEM_JAR = "hadoop-bare-naked-local-fs-*.jar"
# Streaming checkpoints go through Hadoop's FileContext API by default, whose local implementation
# forks `chmod` too (two offset-log files per micro-batch: 150 ms of 1.7 s). Through the FileSystem
# API they use the java.nio one.
FILESYSTEM_CHECKPOINTS = "org.apache.spark.sql.execution.streaming.FileSystemBasedCheckpointFileManager"


def spark_jars(settings: Settings) -> list[str]:
    jars_dir = settings.path(settings.local.spark_jars_dir)
    return sorted(str(jar) for jar in jars_dir.glob("*.jar"))


def local_filesystem_conf(jars: list[str]) -> dict[str, str]:
    """Launch properties that make ``file:`` paths (Iceberg files, streaming checkpoints) use the
    java.nio FileSystem, given the jars.

    The class must be on the driver's launch classpath (Spark resolves ``file:`` before it loads
    ``spark.jars``), so this applies where the JVM is started with it: in-process sessions (tests,
    benchmarks, notebooks, the demo) and ``spark-submit.sh`` on local masters (``main`` below).
    """
    found = [jar for jar in jars if fnmatch(os.path.basename(jar), NIO_LOCAL_FILESYSTEM_JAR)]
    if not found:
        return {}
    return {
        "spark.driver.extraClassPath": found[0],
        "spark.hadoop.fs.file.impl": NIO_LOCAL_FILESYSTEM,
        "spark.sql.streaming.checkpointFileManagerClass": FILESYSTEM_CHECKPOINTS,
    }


POSTGRES_RECONNECT_SQLSTATES = "57P01,57P02,57P03"


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
        conf[f"{prefix}.type"] = "rest"
        rest = {**rest_client_properties(settings), **rest_java_auth_properties(settings)}
        conf.update({f"{prefix}.{key}": value for key, value in rest.items()})
    else:
        conf.update({f"{prefix}.type": "jdbc", f"{prefix}.uri": jdbc_uri(settings)})
        if jdbc_uri(settings).startswith("jdbc:sqlite:"):
            # SQLite allows one writer at a time and every streaming query (and process) has its own
            # catalog connection: WAL lets readers run beside a writer, busy_timeout makes a commit
            # wait its turn. Iceberg 1.10's catalog-table check leaves a metadata ResultSet open,
            # which pins a stale read snapshot on the connection so that every later commit fails
            # with SQLITE_BUSY_SNAPSHOT; the tables are created by ``prepare_catalog`` instead.
            conf.update({
                f"{prefix}.clients": "1",
                f"{prefix}.jdbc.init-catalog-tables": "false",
                f"{prefix}.jdbc.journal_mode": "WAL",
                f"{prefix}.jdbc.busy_timeout": "60000",
            })
        if jdbc_uri(settings).startswith("jdbc:postgresql:"):
            # A pooled connection outlives a database restart or failover (Cloud SQL maintenance) and
            # then fails with SQLSTATE 57P01-57P03 (server shut down / crashed / not yet accepting),
            # which Iceberg's pool does not count as a lost connection: listed here, the pool opens a
            # new connection and retries instead of failing every later catalog call of the process.
            conf[f"{prefix}.retryable_status_codes"] = POSTGRES_RECONNECT_SQLSTATES
        if settings.catalog.user:
            conf[f"{prefix}.jdbc.user"] = settings.catalog.user
        if settings.catalog.password:
            conf[f"{prefix}.jdbc.password"] = settings.catalog.password.get_secret_value()
    if is_gcs_warehouse(settings):
        conf.update({f"{prefix}.{key}": value for key, value in gcs_java_properties(settings).items()})
    return conf


GOOGLE_CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"


def spark_environment(settings: Settings) -> dict[str, str]:
    """Environment variables the Spark JVMs need: Java GCSFileIO reads a key file only through ADC.

    Iceberg's GCSFileIO (1.10) has no property for a service-account key file; the Google auth
    library finds one through ``GOOGLE_APPLICATION_CREDENTIALS``. The driver JVM must be started with
    it (``build_spark_session`` does that in-process; under ``spark-submit`` the caller exports it)
    and executors get it through ``spark.executorEnv`` (the file must exist on their hosts).
    """
    if is_gcs_warehouse(settings) and settings.gcs.credentials_file is not None:
        return {GOOGLE_CREDENTIALS_ENV: str(settings.path(settings.gcs.credentials_file))}
    return {}


# Spark's web UI binds to the address in this variable of the driver JVM's environment, else to every
# interface (0.0.0.0); no property sets it.
SPARK_LOCAL_IP_ENV = "SPARK_LOCAL_IP"


def local_network_conf(settings: Settings) -> dict[str, str]:
    """Local masters: the driver (RPC, block manager) listens on ``spark.local_bind_address`` and
    advertises it, so no one else on the network reaches a job on a shared host."""
    address = settings.spark.local_bind_address
    return {"spark.driver.bindAddress": address, "spark.driver.host": address}


def local_launch_environment(settings: Settings) -> dict[str, str]:
    """Local masters: the driver JVM's environment that binds the web UI to the same address."""
    return {SPARK_LOCAL_IP_ENV: settings.spark.local_bind_address}


def spark_conf(settings: Settings) -> dict[str, str]:
    return {
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        "spark.sql.defaultCatalog": settings.catalog.name,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.streaming.shuffle_partitions),
        "spark.default.parallelism": str(settings.streaming.shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        # The jobs cache a micro-batch for a few passes and drop it: compressing the cache (dictionary
        # statistics per column) costs more CPU than it saves (docs/performance.md#the-raw-trades-jobs-cost-model).
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
        "spark.ui.showConsoleProgress": "false",
        # Spark hides the values of matching properties in its UI, logs and event logs: the catalog's
        # password, OAuth2 credential and token (Spark's default regex has no "credential").
        "spark.redaction.regex": "(?i)secret|password|token|credential|access[.]key",
        "spark.ui.enabled": str(settings.spark.ui_enabled).lower(),
        # The generated-code cache (100 classes by default) held fewer than the pipeline's queries
        # use in steady state, so classes were evicted, compiled again and JIT-compiled again.
        "spark.sql.codegen.cache.maxEntries": "500",
        "spark.scheduler.mode": "FAIR",  # queries in their own pools share the cores (streaming.in_own_pool)
        **scheduler_pools_conf(settings),
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
        **catalog_conf(settings),
        **{f"spark.executorEnv.{name}": value for name, value in spark_environment(settings).items()},
    }


def scheduler_pools_conf(settings: Settings) -> dict[str, str]:
    """The pools' weights and minimum shares (``conf/fairscheduler.xml``: the raw-trades query first)."""
    pools_file = settings.streaming.scheduler_pools_file
    return {"spark.scheduler.allocation.file": str(settings.path(pools_file))} if pools_file else {}


def launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands the Python driver its gateway port."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_spark_session(settings: Settings, app_name: str, master: str | None = None) -> SparkSession:
    """Create (or reuse) the session. Under ``spark-submit`` the jars and master come from the
    command line; in-process (tests, notebooks) they are added here from ``jars/spark``."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    prepare_catalog(settings)
    builder = SparkSession.builder.appName(app_name)
    environment = spark_environment(settings)
    if not launched_by_spark_submit():
        # The driver JVM is about to be started by this process and inherits its environment; its
        # Python workers (the message model's judge, ``lakehouse.parsing``) run this interpreter, the
        # one with pydantic and pyarrow.
        os.environ.update({**environment, **local_launch_environment(settings), "PYSPARK_PYTHON": sys.executable})
        jars = spark_jars(settings)
        if not jars:
            jars_dir = settings.path(settings.local.spark_jars_dir)
            raise RuntimeError(f"no Spark jars in {jars_dir}: run `make jars`")
        builder = builder.master(master or "local[2]").config("spark.jars", ",".join(jars))
        builder = builder.config("spark.driver.memory", "2g")
        for key, value in {**local_filesystem_conf(jars), **local_network_conf(settings)}.items():
            builder = builder.config(key, value)
    else:
        missing = {name: value for name, value in environment.items() if os.environ.get(name) != value}
        if missing:
            exports = " ".join(f"{name}={value}" for name, value in missing.items())
            raise RuntimeError(
                f"the driver JVM was started without the GCS key file of gcs.credentials_file: "
                f"run `{exports} ./spark-submit.sh ...`"
            )
        if master:
            builder = builder.master(master)
        if SparkConf().get("spark.master", "").startswith("local"):
            for key, value in local_network_conf(settings).items():
                builder = builder.config(key, value)
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    with own_interrupt_handler_kept():
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


@contextmanager
def own_interrupt_handler_kept() -> Iterator[None]:
    """A SparkContext replaces the process's SIGINT handler with one that cancels every Spark job and
    raises KeyboardInterrupt (a notebook's interrupt, which keeps it). A job that installed its own
    stop handling first (``lakehouse.shutdown``) keeps it: a SIGINT then stops at a safe point."""
    on_main_thread = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if on_main_thread else None
    try:
        yield
    finally:
        if before is not None and before not in (signal.default_int_handler, signal.SIG_DFL, signal.SIG_IGN):
            signal.signal(signal.SIGINT, before)


def generated_classes_compiled(spark: SparkSession) -> int:
    """How many classes Spark's code generator has compiled in this JVM so far, one per miss of its
    cache. A stream in its steady state should compile none: a per-batch value inlined into the
    generated code costs new classes, and their JIT compilation, every micro-batch."""
    codegen = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics
    return int(codegen.METRIC_COMPILATION_TIME().getCount())


def ensure_tables(spark: SparkSession, settings: Settings, tables: tuple[TableDef, ...] = ALL_TABLES) -> None:
    """Create the namespace and tables that do not exist yet (idempotent), and bring tables from
    an earlier version up to date: properties and optional columns added since (bars_1m's
    ``last_event_time``), and a trades table's ``bar_eligible``."""
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {settings.catalog.name}.{settings.catalog.namespace}")
    for table in tables:
        name = spark_table_name(settings, table)
        spark.sql(create_table_ddl(table, name))
        add_missing_properties(spark, table, name)
        add_missing_columns(spark, table, name)
        if table is TRADES:
            add_bar_eligible(spark, name)
        add_partition_specs(spark, table, name)


def iceberg_table(spark: SparkSession, name: str):  # -> org.apache.iceberg.Table (a Py4J object)
    """The Java Iceberg table behind Spark's ``name``, for what Spark SQL does not expose (specs)."""
    return spark._jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, name)


def java_static_get(spark: SparkSession, class_name: str):
    """``ClassName.get()`` by reflection: Py4J cannot call a static ``get()`` that an instance
    ``get(String)`` overloads (SparkTableCache)."""
    gateway = spark.sparkContext._gateway
    java_class = getattr(spark._jvm, class_name)._java_lang_class
    no_types = gateway.new_array(spark._jvm.java.lang.Class, 0)
    return java_class.getMethod("get", no_types).invoke(None, gateway.new_array(spark._jvm.java.lang.Object, 0))


def partition_specs(spark: SparkSession, name: str) -> tuple[int, dict[int, list[str]]]:
    """(default spec id, {spec id: its partition field names}) of the Iceberg table ``name``."""
    return specs_of(iceberg_table(spark, name))


def specs_of(java_table) -> tuple[int, dict[int, list[str]]]:
    """``partition_specs`` of a Java Iceberg table already loaded (``iceberg_table``)."""
    specs = {int(spec_id): [f.name() for f in spec.fields()] for spec_id, spec in java_table.specs().items()}
    return int(java_table.spec().specId()), specs


def append_spec_id(spark: SparkSession, table: TableDef, name: str) -> int | None:
    """The id of the spec streaming appends to ``table`` write with (``append_partition_by``), or
    None for a table without one (appends then write the default spec)."""
    if table.append_partition_by is None:
        return None
    return append_spec_of(iceberg_table(spark, name), table)


def append_spec_of(java_table, table: TableDef) -> int | None:
    """``append_spec_id`` of a Java Iceberg table already loaded."""
    if table.append_partition_by is None:
        return None
    wanted = [partition_field_name(e) for e in table.append_partition_by]
    _, specs = specs_of(java_table)
    matching = [spec_id for spec_id, fields in specs.items() if fields == wanted]
    if not matching:
        raise RuntimeError(f"{java_table.name()} has no partition spec {wanted}: run ensure_tables first")
    return max(matching)


def add_partition_specs(spark: SparkSession, table: TableDef, name: str) -> None:
    """Give ``table`` its append spec beside its default spec (``lakehouse.tables.spec_evolution``):
    metadata commits only, and none when both exist."""
    if table.append_partition_by is None:
        return
    default_id, specs = partition_specs(spark, name)
    for clause in spec_evolution(table, specs[default_id], list(specs.values())):
        log.info("%s: %s", name, clause)
        spark.sql(f"ALTER TABLE {name} {clause}")


def add_missing_properties(spark: SparkSession, table: TableDef, name: str) -> None:
    """Set the properties ``table`` declares that the stored table lacks (one metadata commit, only
    when some are missing)."""
    current = {row.key: row.value for row in spark.sql(f"SHOW TBLPROPERTIES {name}").collect()}
    missing = missing_properties(table, current)
    if missing:
        log.info("%s: setting properties it was created without: %s", name, missing)
        assignments = ", ".join(f"'{key}'='{value}'" for key, value in missing.items())
        spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ({assignments})")


def add_missing_columns(spark: SparkSession, table: TableDef, name: str) -> None:
    """Add the optional columns ``table`` declares that the stored table lacks (metadata only: the
    rows already written read them as null, which readers of that column must allow for)."""
    missing = missing_optional_columns(table, spark.table(name).columns)
    for column in missing:
        log.info("%s: adding column %s, which it was created without", name, column)
        doc = table.schema.find_field(column).doc.replace("'", "")
        spark.sql(f"ALTER TABLE {name} ADD COLUMN {column} {spark_column_type(table, column)} COMMENT '{doc}'")


def add_bar_eligible(spark: SparkSession, trades_table: str) -> None:
    """A trades table created before ``bar_eligible`` existed gets the column, derived for its stored
    trades by the same rule the raw-trades job applies to new ones (a one-off rewrite)."""
    from pyspark.sql import functions as F

    if "bar_eligible" in spark.table(trades_table).columns:
        return
    log.warning("%s has no bar_eligible column: adding it and deriving it for the stored trades", trades_table)
    doc = TRADES.schema.find_field("bar_eligible").doc
    spark.sql(f"ALTER TABLE {trades_table} ADD COLUMN bar_eligible boolean COMMENT '{doc}'")
    # The whole table is replaced (overwrite where true), whatever spec each of its files was written in.
    (spark.table(trades_table).withColumn("bar_eligible", bar_eligible_column())
     .writeTo(trades_table).overwrite(F.lit(True)))


def main(argv: Sequence[str] | None = None) -> int:
    """What ``spark-submit.sh`` adds on local masters, so the class names and addresses live here
    only: the first line is the address the driver JVM binds (its ``SPARK_LOCAL_IP``), then the
    ``local_filesystem_conf`` and ``local_network_conf`` properties as spark-submit arguments.
    ``argv`` is the job's arguments: its ``--config`` is read here too, so a bad setting stops the
    launch in one message before a JVM starts."""
    from lakehouse.job_args import config_argument

    try:
        settings = load_settings(config_argument(list(sys.argv[1:] if argv is None else argv)))
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    print(local_launch_environment(settings)[SPARK_LOCAL_IP_ENV])
    for key, value in {**local_filesystem_conf(spark_jars(settings)), **local_network_conf(settings)}.items():
        print(f"--conf\n{key}={value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
