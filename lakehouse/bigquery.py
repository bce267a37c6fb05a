"""What the BigQuery sync should do, decided without touching BigQuery: names, resources, plans.

For each Iceberg table the sync keeps one BigQuery external table (format ICEBERG) whose single
source URI is the table's *current* metadata file. BigQuery reads an Iceberg table only through the
metadata file it was given, so after each commit the external table must be re-pointed, and an
external table that already points at the current file is left alone.

Which file an existing table points at is read from ``externalDataConfiguration.sourceUris`` (what
real BigQuery returns) or, failing that, from a marker line in the table's description that the sync
writes too. The description fallback matters for the local emulator, which drops the external
configuration, and it lets a reader of the table in the console see where it comes from.

Everything here is pure: the job (``jobs/bigquery_sync.py``) fetches and applies.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DoubleType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    StringType,
    TimestamptzType,
)

from lakehouse.tables import TableDef

SOURCE_FORMAT = "ICEBERG"
MANAGED_BY_LABEL = "managed_by"
MANAGED_BY_VALUE = "lakehouse-bigquery-sync"
METADATA_MARKER = "Iceberg metadata: "
ICEBERG_TABLE_MARKER = "Iceberg table: "
# The table fields a re-point changes (``google.cloud.bigquery.Table`` property names).
UPDATED_FIELDS = ("external_data_configuration", "description", "labels")


class BigQueryNameError(ValueError):
    """A project, dataset or table name that BigQuery would reject; the message says which rule."""


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"  # a table of that name exists and the sync does not own it: left alone
    SKIP = "skip"  # the Iceberg table does not exist (yet): nothing to point at
    FAILED = "failed"  # BigQuery refused or did not answer; the next run tries again

    def past(self, dry_run: bool) -> str:
        """How a report names the action: ``created`` after a run, ``would create`` in a dry run."""
        if self in (Action.CREATE, Action.UPDATE):
            return f"would {self.value}" if dry_run else f"{self.value}d"
        return {Action.SKIP: "skipped"}.get(self, self.value)


# --- names -----------------------------------------------------------------------------------------

_PROJECT_ID = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_DATASET_ID = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_RESERVED_TABLE_PREFIXES = ("_TABLE_", "_FILE_", "_PARTITION", "_ROW_TIMESTAMP", "__ROOT__", "_COLON_")


def validate_project_id(project: str) -> str:
    """6-30 lowercase letters, digits or hyphens, starting with a letter, not ending with a hyphen
    (optionally ``domain:`` scoped)."""
    if not _PROJECT_ID.match(project):
        raise BigQueryNameError(
            f"BigQuery project id {project!r} must be 6-30 lowercase letters, digits or hyphens, "
            "start with a letter and not end with a hyphen"
        )
    return project


def validate_dataset_id(dataset: str) -> str:
    """Letters, digits and underscores only, at most 1,024 characters (case-sensitive)."""
    if not _DATASET_ID.match(dataset):
        raise BigQueryNameError(
            f"BigQuery dataset name {dataset!r} may contain only letters, digits and underscores "
            "(1-1024 characters)"
        )
    return dataset


CONNECTION_FORMS = "PROJECT.LOCATION.CONNECTION_ID or projects/PROJECT/locations/LOCATION/connections/CONNECTION_ID"
_CONNECTION_DOTTED = re.compile(r"^(?P<project>.+)\.(?P<location>[^./]+)\.(?P<connection>[^./]+)$")
_CONNECTION_PATH = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/connections/(?P<connection>[^/]+)$"
)
_LOCATION = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_CONNECTION_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def connection_parts(connection: str) -> tuple[str, str, str]:
    """(project, location, connection id) of a BigQuery connection in either form BigQuery's table
    API takes (``my-project.us.lake`` or ``projects/my-project/locations/us/connections/lake``)."""
    form = _CONNECTION_PATH.match(connection) or _CONNECTION_DOTTED.match(connection)
    if not form:
        raise BigQueryNameError(
            f"BigQuery connection {connection!r} is not {CONNECTION_FORMS} (e.g. my-project.us.lake)"
        )
    project, location, connection_id = form.group("project", "location", "connection")
    try:
        validate_project_id(project)
    except BigQueryNameError as error:
        raise BigQueryNameError(f"BigQuery connection {connection!r}: {error}") from None
    if not _LOCATION.match(location):
        raise BigQueryNameError(f"BigQuery connection {connection!r}: location {location!r} is not a BigQuery "
                                "location (us, eu, us-central1...)")
    if not _CONNECTION_ID.match(connection_id):
        raise BigQueryNameError(f"BigQuery connection {connection!r}: connection id {connection_id!r} may contain "
                                "only letters, digits, underscores and hyphens")
    return project, location, connection_id


def validate_table_name(table: str) -> str:
    """At most 1,024 UTF-8 bytes of Unicode letters, marks, numbers, connectors (``_``), dashes or
    spaces, not starting with a prefix BigQuery reserves."""
    if not table or len(table.encode()) > 1024:
        raise BigQueryNameError(f"BigQuery table name {table!r} must be 1-1024 UTF-8 bytes long")
    bad = [c for c in table if unicodedata.category(c)[0] not in "LMN" and unicodedata.category(c) not in
           ("Pc", "Pd", "Zs")]
    if bad:
        raise BigQueryNameError(
            f"BigQuery table name {table!r} has characters BigQuery does not allow: {''.join(sorted(set(bad)))!r}"
        )
    if table.upper().startswith(_RESERVED_TABLE_PREFIXES):
        raise BigQueryNameError(f"BigQuery table name {table!r} starts with a prefix BigQuery reserves")
    return table


# --- the desired state -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalTable:
    """The BigQuery external table the sync wants for one Iceberg table."""

    project: str
    dataset: str
    name: str
    metadata_uri: str  # the Iceberg table's current metadata file, e.g. gs://…/metadata/00007-….metadata.json
    iceberg_table: str  # ``namespace.table`` in the Iceberg catalog
    doc: str = ""
    connection_id: str | None = None  # a BigLake table's connection, in a form ``connection_parts`` reads

    def __post_init__(self) -> None:
        validate_project_id(self.project)
        validate_dataset_id(self.dataset)
        validate_table_name(self.name)
        if self.connection_id is not None:
            connection_parts(self.connection_id)

    @property
    def table_id(self) -> str:
        """``project.dataset.table``, as the google-cloud-bigquery client and the SQL name it."""
        return f"{self.project}.{self.dataset}.{self.name}"

    @property
    def description(self) -> str:
        lines = [self.doc] if self.doc else []
        lines += [f"{ICEBERG_TABLE_MARKER}{self.iceberg_table}", f"{METADATA_MARKER}{self.metadata_uri}"]
        return "\n".join(lines)

    def external_data_configuration(self) -> dict[str, Any]:
        config: dict[str, Any] = {"sourceFormat": SOURCE_FORMAT, "sourceUris": [self.metadata_uri]}
        if self.connection_id:
            config["connectionId"] = self.connection_id
        return config

    def resource(self) -> dict[str, Any]:
        """The REST ``Table`` resource for ``tables.insert``; BigQuery reads the schema from Iceberg."""
        return {
            "tableReference": {"projectId": self.project, "datasetId": self.dataset, "tableId": self.name},
            "externalDataConfiguration": self.external_data_configuration(),
            "description": self.description,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        }

    def ddl(self) -> str:
        """The equivalent BigQuery DDL, for a dry run's reader (the sync itself uses the table API)."""
        connection = ""
        if self.connection_id:  # DDL names a connection only as PROJECT.LOCATION.CONNECTION_ID
            connection = f"\nWITH CONNECTION `{'.'.join(connection_parts(self.connection_id))}`"
        uri = self.metadata_uri.replace("'", "\\'")
        return (
            f"CREATE OR REPLACE EXTERNAL TABLE `{self.table_id}`{connection}\n"
            f"OPTIONS (format = '{SOURCE_FORMAT}', uris = ['{uri}'])"
        )


def dataset_resource(project: str, dataset: str, location: str) -> dict[str, Any]:
    """The REST ``Dataset`` resource for ``datasets.insert`` (location cannot change later)."""
    return {
        "datasetReference": {"projectId": validate_project_id(project), "datasetId": validate_dataset_id(dataset)},
        "location": location,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
    }


# --- the current state -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExistingTable:
    """What matters about a BigQuery table that already exists, read from its REST resource."""

    metadata_uri: str | None
    source_format: str | None
    managed: bool
    labels: Mapping[str, str]

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any]) -> ExistingTable:
        config = resource.get("externalDataConfiguration") or {}
        uris = config.get("sourceUris") or []
        labels = dict(resource.get("labels") or {})
        return cls(
            metadata_uri=uris[0] if len(uris) == 1 else metadata_uri_in(resource.get("description") or ""),
            source_format=config.get("sourceFormat"),
            managed=labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE,
            labels=labels,
        )


def metadata_uri_in(description: str) -> str | None:
    """The metadata file named on the sync's marker line of a table description, if any."""
    for line in reversed(description.splitlines()):
        if line.startswith(METADATA_MARKER):
            return line[len(METADATA_MARKER):].strip() or None
    return None


# --- the plan --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TablePlan:
    """One line of a sync report: what happens (or happened) to one table, and why."""

    name: str
    action: Action
    table_id: str
    metadata_uri: str | None = None
    previous_uri: str | None = None
    reason: str = ""

    def describe(self, dry_run: bool) -> str:
        what = f"{self.action.past(dry_run):<15} {self.table_id}"
        if self.action is Action.UPDATE:
            return f"{what}: {self.previous_uri or '(unknown)'} -> {self.metadata_uri}"
        if self.action in (Action.CREATE, Action.UNCHANGED):
            return f"{what} -> {self.metadata_uri}"
        return f"{what}: {self.reason}"


def plan_table(desired: ExternalTable, existing: ExistingTable | None) -> TablePlan:
    """Create a missing table, re-point a stale one, leave a current one, never clobber a stranger's."""
    plan = TablePlan(desired.name, Action.CREATE, desired.table_id, desired.metadata_uri)
    if existing is None:
        return plan
    ours = existing.managed or existing.source_format == SOURCE_FORMAT
    if not ours:
        return TablePlan(
            desired.name, Action.CONFLICT, desired.table_id, desired.metadata_uri,
            reason="a table of this name exists and is neither an ICEBERG external table nor labelled "
            f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}; left alone",
        )
    if existing.metadata_uri == desired.metadata_uri and existing.managed:
        return TablePlan(desired.name, Action.UNCHANGED, desired.table_id, desired.metadata_uri)
    return TablePlan(
        desired.name, Action.UPDATE, desired.table_id, desired.metadata_uri, previous_uri=existing.metadata_uri
    )


def skipped(project: str, dataset: str, name: str, reason: str, action: Action = Action.SKIP) -> TablePlan:
    """A table the pass did not sync, and why (``action``: SKIP, or FAILED when it could not)."""
    return TablePlan(name, action, f"{project}.{dataset}.{name}", reason=reason)


def updated_labels(existing: ExistingTable) -> dict[str, str]:
    """Keep the labels someone else set; add the sync's own."""
    return {**existing.labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE}


def summary(plans: Iterable[TablePlan], dry_run: bool) -> str:
    """``3 created, 2 unchanged, 1 skipped`` (dry run: ``3 would create, …``)."""
    counts: dict[str, int] = {}
    for plan in plans:
        word = plan.action.past(dry_run)
        counts[word] = counts.get(word, 0) + 1
    return ", ".join(f"{count} {word}" for word, count in counts.items()) or "no tables"


def is_gcs_uri(uri: str) -> bool:
    """BigQuery reads Iceberg files from Cloud Storage only."""
    return uri.startswith("gs://")


# --- what BigQuery users see -----------------------------------------------------------------------

_BIGQUERY_TYPES: dict[type[IcebergType], str] = {
    StringType: "STRING",
    DoubleType: "FLOAT64",
    LongType: "INT64",
    IntegerType: "INT64",
    TimestamptzType: "TIMESTAMP",
    BinaryType: "BYTES",
    BooleanType: "BOOL",
}


def bigquery_schema(table: TableDef) -> list[dict[str, str]]:
    """The schema BigQuery derives from the Iceberg schema (REST ``TableFieldSchema`` form).

    The sync never sends it (BigQuery reads it from the metadata file); it documents the column
    types a BigQuery user gets and lets tests build native look-alike tables on the emulator.
    """
    fields = []
    for column in table.schema.fields:
        type_, mode = column.field_type, "REQUIRED" if column.required else "NULLABLE"
        if isinstance(type_, ListType):
            type_, mode = type_.element_type, "REPEATED"
        fields.append({"name": column.name, "type": _BIGQUERY_TYPES[type(type_)], "mode": mode})
    return fields


def render_sql(template: str, project: str, dataset: str) -> str:
    """Fill ``{project}`` and ``{dataset}`` in one of the ``sql/*.sql`` files."""
    return template.replace("{project}", validate_project_id(project)).replace(
        "{dataset}", validate_dataset_id(dataset)
    )
