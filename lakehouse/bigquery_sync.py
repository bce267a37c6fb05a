"""Keeping BigQuery's external ICEBERG tables pointed at each lakehouse table's current metadata.

For each table of ``lakehouse.tables.ALL_TABLES`` the current metadata file is read from the
Iceberg catalog, and the BigQuery table of the same name in ``bigquery.project``.``bigquery.dataset``
is created if missing, re-pointed if stale, and left alone if current (the plan of one table is pure:
``lakehouse.bigquery``; this module makes the requests). The dataset is created (in
``bigquery.location``) if missing. A pass reports one line per table (created / updated / unchanged
/ skipped / conflict / failed) and a summary. Safe to run on a schedule and concurrently;
``jobs/bigquery_sync.py`` is its command line.

Settings: ``bigquery.*`` for BigQuery (``endpoint`` only for an emulator; credentials from
``credentials_file`` or Application Default Credentials), ``catalog.*`` and ``gcs.*`` for the Iceberg
catalog. BigQuery reads Iceberg files only from Cloud Storage: with a local warehouse the sync still
runs (useful against the emulator) but warns.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.bigquery import (
    UPDATED_FIELDS,
    Action,
    ExistingTable,
    ExternalTable,
    TablePlan,
    dataset_resource,
    is_gcs_uri,
    plan_table,
    skipped,
    summary,
    updated_labels,
    validate_dataset_id,
    validate_project_id,
)
from lakehouse.catalog import jdbc_uri, load_catalog, table_identifier, warehouse_uri
from lakehouse.logs import error_line
from lakehouse.ops.batch_runs import BIGQUERY_SYNC, sync_run, sync_succeeded
from lakehouse.ops.job_runs import record_success
from lakehouse.settings import Settings, SettingsError
from lakehouse.shutdown import StopRequest
from lakehouse.tables import ALL_TABLES, TableDef

if TYPE_CHECKING:
    from google.cloud import bigquery
    from pyiceberg.catalog import Catalog

JOB_NAME = BIGQUERY_SYNC
log = logging.getLogger(JOB_NAME)

REQUEST_TIMEOUT_S = 30.0  # one HTTP request
RETRY_TIMEOUT_S = 120.0  # all retries of one call (transient 5xx, rate limits), with backoff
# The longest sleep between two tries: a stop request is noticed at the next try, so this bounds
# how long a stop waits on a call that keeps failing.
RETRY_MAX_DELAY_S = 4.0
SQLITE_JDBC = "jdbc:sqlite:"
STOP_REQUESTED = "stop requested"  # why a table a stopped run did not reach is skipped
ATTEMPTS_PER_TABLE = 2  # a second look after losing a race (created or changed by someone else)


@dataclass(frozen=True)
class SyncReport:
    dataset: str  # what happened to the dataset: "exists", "created", "would create"
    tables: tuple[TablePlan, ...]
    dry_run: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return all(plan.action not in (Action.CONFLICT, Action.FAILED) for plan in self.tables)

    def lines(self) -> list[str]:
        return [
            f"dataset {self.dataset}",
            *(plan.describe(self.dry_run) for plan in self.tables),
            f"{summary(self.tables, self.dry_run)} in {self.seconds:.2f} s",
        ]


def bigquery_client(settings: Settings) -> bigquery.Client:
    """The official client: the emulator without credentials when ``bigquery.endpoint`` is set, else
    a service-account key file (``bigquery.credentials_file``) or Application Default Credentials."""
    config = settings.bigquery
    credentials = None
    if not config.endpoint and config.credentials_file is not None:
        from google.oauth2 import service_account

        key_file = settings.path(config.credentials_file)
        if problem := key_file_problem(key_file):
            raise SettingsError(f"{CREDENTIALS_FILE_SETTING} {key_file} {problem}")
        try:
            credentials = service_account.Credentials.from_service_account_file(
                str(key_file), scopes=["https://www.googleapis.com/auth/bigquery"],
            )
        except ValueError:  # its message may quote the key: name the file only
            raise SettingsError(f"{CREDENTIALS_FILE_SETTING} {key_file}: its private_key cannot be loaded") from None
    # Only now: the client library (pandas with it) costs a CPU-second that a start refused for its
    # key file never needs.
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    if config.endpoint:
        return bigquery.Client(
            project=config.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=config.endpoint),
            location=config.location,
        )
    return bigquery.Client(project=config.project, credentials=credentials, location=config.location)


CREDENTIALS_FILE_SETTING = "bigquery.credentials_file (LAKEHOUSE__BIGQUERY__CREDENTIALS_FILE)"
SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")


def key_file_problem(key_file: Path) -> str | None:
    """What makes ``key_file`` unusable as a service-account key, or None. A file that is set but
    wrong was reported as "no Google credentials" (or a traceback); the answer never quotes the
    file's content, which holds a private key."""
    if not key_file.is_file():
        return "is not a regular file" if key_file.exists() else "does not exist"
    try:
        info = json.loads(key_file.read_bytes())
    except OSError as error:
        return f"cannot be read: {error.strerror}"
    except ValueError:  # not JSON, or not text at all
        return "is not JSON: expected a service-account key file"
    if not isinstance(info, dict) or info.get("type") != "service_account":
        return 'is not a service-account key: its "type" is not "service_account"'
    missing = [name for name in SERVICE_ACCOUNT_FIELDS if not info.get(name)]
    return f"is a service-account key without {', '.join(missing)}" if missing else None


NO_CREDENTIALS = (
    "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS or bigquery.credentials_file "
    "(LAKEHOUSE__BIGQUERY__CREDENTIALS_FILE) to a service-account key file, or run "
    "`gcloud auth application-default login`; bigquery.endpoint for an emulator"
)


def client_or_none(settings: Settings, dry_run: bool) -> bigquery.Client | None:
    """The client, or None for a dry run on a machine without Google credentials: a dry run then
    plans from the Iceberg catalog alone, as if BigQuery held neither the dataset nor any table.
    A real run cannot go on without credentials and raises ``SettingsError`` saying what to set."""
    from google.auth.exceptions import DefaultCredentialsError

    # google.auth logs each place it looked; the one line below says what to set instead.
    logging.getLogger("google.auth._default").setLevel(logging.ERROR)
    try:
        return bigquery_client(settings)
    except (DefaultCredentialsError, FileNotFoundError) as error:
        missing = f"{NO_CREDENTIALS} ({type(error).__name__})"
        if not dry_run:
            raise SettingsError(missing) from error
        log.warning("%s; planning as if BigQuery held no dataset or table yet", missing)
        return None


def _retry(stop: StopRequest | None = None):  # -> google.api_core.retry.Retry (imported lazily)
    """BigQuery's own retry (transient errors), bounded by ``RETRY_TIMEOUT_S``, that gives up at
    once when ``stop`` is set: a stop request must not wait out a minute of retries."""
    from google.cloud.bigquery import DEFAULT_RETRY
    from google.cloud.bigquery.retry import _should_retry

    def retryable(error: Exception) -> bool:
        return not (stop is not None and stop.is_set()) and _should_retry(error)

    return (DEFAULT_RETRY.with_timeout(RETRY_TIMEOUT_S).with_delay(maximum=RETRY_MAX_DELAY_S)
            .with_predicate(retryable))


def missing_catalog_file(settings: Settings) -> Path | None:
    """The embedded SQLite catalog's file if it does not exist yet (no job has run here), else None.
    Opening it would create an empty catalog, or fail when its folder is missing too."""
    uri = jdbc_uri(settings)
    if uri.startswith(SQLITE_JDBC) and not Path(uri.removeprefix(SQLITE_JDBC)).exists():
        return Path(uri.removeprefix(SQLITE_JDBC))
    return None


def current_metadata_uri(catalog: Catalog | None, settings: Settings, table: TableDef) -> str | None:
    """The Iceberg table's current metadata file, or None if the table (or the catalog) does not
    exist yet."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    if catalog is None:
        return None
    try:
        return catalog.load_table(table_identifier(settings, table)).metadata_location
    except (NoSuchTableError, NoSuchNamespaceError):
        return None


def ensure_dataset(client: bigquery.Client | None, settings: Settings, dry_run: bool, retry=None) -> str:
    """Create the dataset if it is missing; return what happened, for the report. Without a client
    (a dry run without credentials) nothing is looked up."""
    from google.api_core.exceptions import Conflict, NotFound
    from google.cloud import bigquery

    config = settings.bigquery
    dataset_id = f"{config.project}.{config.dataset}"
    retry = retry or _retry()
    if client is None:
        return f"{dataset_id}: would create if missing (not looked up: no credentials)"
    try:
        dataset = client.get_dataset(dataset_id, retry=retry, timeout=REQUEST_TIMEOUT_S)
    except NotFound:
        if dry_run:
            return f"{dataset_id}: would create (location {config.location})"
        try:
            client.create_dataset(
                bigquery.Dataset.from_api_repr(dataset_resource(config.project, config.dataset, config.location)),
                retry=retry, timeout=REQUEST_TIMEOUT_S,
            )
        except Conflict:  # created by a concurrent run between our get and create
            return f"{dataset_id}: exists"
        log.info("created dataset %s in %s", dataset_id, config.location)
        return f"{dataset_id}: created (location {config.location})"
    if dataset.location and dataset.location.lower() != config.location.lower():
        log.warning(
            "dataset %s is in %s, not %s as configured (bigquery.location); a dataset cannot move",
            dataset_id, dataset.location, config.location,
        )
    return f"{dataset_id}: exists"


def existing_table(client: bigquery.Client | None, table_id: str, retry=None) -> ExistingTable | None:
    from google.api_core.exceptions import NotFound

    if client is None:  # a dry run without credentials plans as if the table were missing
        return None
    try:
        table = client.get_table(table_id, retry=retry or _retry(), timeout=REQUEST_TIMEOUT_S)
    except NotFound:
        return None
    return ExistingTable.from_resource(table.to_api_repr())


def apply(
    client: bigquery.Client, plan: TablePlan, desired: ExternalTable, existing: ExistingTable | None, retry=None
) -> None:
    """Carry out a CREATE or UPDATE plan. An update re-reads the schema from the new metadata file
    (``autodetect_schema``) and is guarded by the table's etag, so a concurrent change fails it."""
    from google.cloud import bigquery

    retry = retry or _retry()
    if plan.action is Action.CREATE:
        client.create_table(
            bigquery.Table.from_api_repr(desired.resource()), retry=retry, timeout=REQUEST_TIMEOUT_S
        )
    elif plan.action is Action.UPDATE and existing is not None:
        table = client.get_table(desired.table_id, retry=retry, timeout=REQUEST_TIMEOUT_S)
        table.external_data_configuration = bigquery.ExternalConfig.from_api_repr(
            desired.external_data_configuration()
        )
        table.description = desired.description
        table.labels = updated_labels(existing)
        client.update_table(
            table, list(UPDATED_FIELDS), autodetect_schema=True, retry=retry, timeout=REQUEST_TIMEOUT_S
        )


def sync_table(client: bigquery.Client | None, desired: ExternalTable, dry_run: bool, retry=None) -> TablePlan:
    """Plan and (unless ``dry_run``) apply one table; a lost race is looked at once more."""
    from google.api_core.exceptions import Conflict, GoogleAPIError, PreconditionFailed

    for attempt in range(1, ATTEMPTS_PER_TABLE + 1):
        try:
            existing = existing_table(client, desired.table_id, retry)
            plan = plan_table(desired, existing)
            if not dry_run and client is not None:
                apply(client, plan, desired, existing, retry)
            return plan
        except (Conflict, PreconditionFailed) as raced:
            if attempt == ATTEMPTS_PER_TABLE:
                return TablePlan(desired.name, Action.FAILED, desired.table_id, reason=str(raced))
            log.info("%s changed while syncing it (%s); looking again", desired.table_id, type(raced).__name__)
        except GoogleAPIError as error:
            log.error("syncing %s failed: %s", desired.table_id, error)
            return TablePlan(desired.name, Action.FAILED, desired.table_id, reason=str(error))
    raise AssertionError("unreachable")


def sync_once(
    settings: Settings,
    client: bigquery.Client | None,
    catalog: Catalog | None,
    dry_run: bool = False,
    tables: Sequence[TableDef] = ALL_TABLES,
    connection_id: str | None = None,
    stop: StopRequest | None = None,
) -> SyncReport:
    """One pass over ``tables``: dataset first, then each table; never raises for one table's failure.
    Without a ``catalog`` (none created yet) every table is skipped. A ``stop`` request ends the pass
    between tables (the rest are skipped) and cuts a call's retries short."""
    started = time.monotonic()
    config = settings.bigquery
    validate_project_id(config.project)
    validate_dataset_id(config.dataset)
    if not is_gcs_uri(warehouse_uri(settings)):
        log.warning(
            "the warehouse %s is not on Cloud Storage: BigQuery can only read Iceberg tables from gs:// "
            "(set catalog.warehouse = \"gs://BUCKET/warehouse\"); the external tables will not be queryable",
            warehouse_uri(settings),
        )
    retry = _retry(stop)
    dataset = ensure_dataset(client, settings, dry_run, retry)
    plans = []
    for table in tables:
        if stop is not None and stop.is_set():
            plans.append(skipped(config.project, config.dataset, table.name, STOP_REQUESTED))
            continue
        try:
            uri = current_metadata_uri(catalog, settings, table)
        except Exception as error:  # one damaged table (its metadata file gone) must not stop the rest
            log.error("%s: cannot load the Iceberg table: %s", table.name, error_line(error))
            plans.append(skipped(config.project, config.dataset, table.name,
                                 f"cannot load the Iceberg table: {error_line(error)}", Action.FAILED))
            continue
        if uri is None:
            plans.append(skipped(config.project, config.dataset, table.name, "no such Iceberg table yet"))
            continue
        desired = ExternalTable(
            project=config.project, dataset=config.dataset, name=table.name, metadata_uri=uri,
            iceberg_table=table_identifier(settings, table), doc=table.doc, connection_id=connection_id,
        )
        plan = sync_table(client, desired, dry_run, retry)
        if dry_run and plan.action in (Action.CREATE, Action.UPDATE):
            log.info("%s would run the equivalent of:\n%s", desired.table_id, desired.ddl())
        plans.append(plan)
    return SyncReport(dataset, tuple(plans), dry_run, time.monotonic() - started)


def run_every(interval_s: float, sync: Callable[[], SyncReport], stop: StopRequest) -> None:
    """Run ``sync`` now and then every ``interval_s`` until ``stop`` is set; a failed run is logged
    and the next one tries again (the schedule is the retry)."""
    while not stop.is_set():
        try:
            print_report(sync())
        except Exception as error:  # a scheduled job must outlive one bad run
            if stop.is_set():  # the stop cut the run's retries short
                log.info("run cut short by the stop request (%s)", type(error).__name__)
            else:
                log.exception("sync run failed; next try in %.0f s", interval_s)
        stop.wait(interval_s)



def sync_and_record(
    settings: Settings,
    client: bigquery.Client | None,
    dry_run: bool = False,
    connection_id: str | None = None,
    stop: StopRequest | None = None,
) -> SyncReport:
    """``sync_once`` on the settings' catalog (every table skipped while no catalog exists yet), and
    a successful real pass recorded for ``lakehouse status`` and Prometheus (``lakehouse.ops.job_runs``);
    a pass a stop cut short is no success."""
    catalog = None
    if (missing := missing_catalog_file(settings)) is not None:
        log.warning("no Iceberg catalog at %s yet (`make demo` or ./spark-submit.sh pipeline creates it)", missing)
    else:
        catalog = load_catalog(settings)
    report = sync_once(settings, client, catalog, dry_run, connection_id=connection_id, stop=stop)
    cut_short = any(plan.reason == STOP_REQUESTED for plan in report.tables)
    if not report.dry_run and not cut_short and sync_succeeded(report.tables):
        record_success(settings.state_dir, sync_run(report.tables, datetime.now(UTC), report.seconds))
    return report


def print_report(report: SyncReport) -> None:
    for line in report.lines():
        print(line, flush=True)
