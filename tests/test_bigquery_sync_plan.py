"""The sync's pure decisions: BigQuery names, the table resource, and create/update/leave/conflict."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.bigquery import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    Action,
    BigQueryNameError,
    ExistingTable,
    ExternalTable,
    TablePlan,
    connection_parts,
    dataset_resource,
    metadata_uri_in,
    plan_table,
    summary,
    validate_dataset_id,
    validate_project_id,
    validate_table_name,
)
from lakehouse.tables import ALL_TABLES

URI_3 = "gs://lake/warehouse/market/trades/metadata/00003-6f1c.metadata.json"
URI_4 = "gs://lake/warehouse/market/trades/metadata/00004-9a2b.metadata.json"


def desired(uri: str = URI_3, **overrides: str) -> ExternalTable:
    fields = {"project": "my-project", "dataset": "market", "name": "trades", "metadata_uri": uri,
              "iceberg_table": "market.trades", "doc": "Every trade once."}
    return ExternalTable(**{**fields, **overrides})


def existing(uri: str | None, managed: bool = True, source_format: str | None = "ICEBERG") -> ExistingTable:
    return ExistingTable(uri, source_format, managed, {MANAGED_BY_LABEL: MANAGED_BY_VALUE} if managed else {})


@pytest.mark.parametrize("project", ["my-project", "local-project", "abcdef", "example.com:my-project"])
def test_valid_project_ids_pass(project: str) -> None:
    assert validate_project_id(project) == project


@pytest.mark.parametrize("project", ["short", "My-Project", "1project", "project-", "a" * 31, "my_project"])
def test_invalid_project_ids_are_refused(project: str) -> None:
    with pytest.raises(BigQueryNameError, match="project id"):
        validate_project_id(project)


@pytest.mark.parametrize("dataset", ["market", "Market_2026", "_staging", "a" * 1024])
def test_valid_dataset_names_pass(dataset: str) -> None:
    assert validate_dataset_id(dataset) == dataset


@pytest.mark.parametrize("dataset", ["", "market-data", "market.data", "marché", "a b", "a" * 1025])
def test_invalid_dataset_names_are_refused(dataset: str) -> None:
    with pytest.raises(BigQueryNameError, match="dataset name"):
        validate_dataset_id(dataset)


@pytest.mark.parametrize("table", ["trades", "bars_1m", "bars-1m", "bars 1m", "giá_cổ_phiếu", "株価"])
def test_table_names_follow_bigquerys_unicode_rules(table: str) -> None:
    assert validate_table_name(table) == table


@pytest.mark.parametrize("table", ["", "bars.1m", "bars/1m", "bars$1m", "_TABLE_SUFFIX", "_partitiontime", "é" * 513])
def test_invalid_table_names_are_refused(table: str) -> None:
    with pytest.raises(BigQueryNameError, match="table name"):
        validate_table_name(table)


def test_every_lakehouse_table_has_a_valid_bigquery_name() -> None:
    for table in ALL_TABLES:
        validate_table_name(table.name)


def test_an_external_table_with_a_bad_name_cannot_be_described() -> None:
    with pytest.raises(BigQueryNameError):
        desired(dataset="market-data")


def test_the_table_resource_is_an_iceberg_external_table_on_the_metadata_file() -> None:
    resource = desired().resource()
    assert resource["externalDataConfiguration"] == {"sourceFormat": "ICEBERG", "sourceUris": [URI_3]}
    assert resource["tableReference"] == {"projectId": "my-project", "datasetId": "market", "tableId": "trades"}
    assert resource["labels"] == {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    assert resource["description"].splitlines() == [
        "Every trade once.", "Iceberg table: market.trades", f"Iceberg metadata: {URI_3}"
    ]
    assert "schema" not in resource


def test_a_connection_goes_into_the_resource_and_the_ddl() -> None:
    table = desired(connection_id="my-project.us.lake")
    assert table.resource()["externalDataConfiguration"]["connectionId"] == "my-project.us.lake"
    assert table.ddl() == (
        "CREATE OR REPLACE EXTERNAL TABLE `my-project.market.trades`\nWITH CONNECTION `my-project.us.lake`\n"
        f"OPTIONS (format = 'ICEBERG', uris = ['{URI_3}'])"
    )


@pytest.mark.parametrize(("connection", "parts"), [
    ("my-project.us.lake", ("my-project", "us", "lake")),
    ("my-project.asia-southeast1.biglake_conn-2", ("my-project", "asia-southeast1", "biglake_conn-2")),
    ("example.com:my-project.EU.lake", ("example.com:my-project", "EU", "lake")),
    ("projects/my-project/locations/us/connections/lake", ("my-project", "us", "lake")),
])
def test_a_connection_in_either_form_the_table_api_takes_is_read(connection: str, parts: tuple[str, ...]) -> None:
    assert connection_parts(connection) == parts


@pytest.mark.parametrize(("connection", "said"), [
    ("lake", "is not PROJECT.LOCATION.CONNECTION_ID or projects/PROJECT/locations/LOCATION/connections/CONNECTION_ID"),
    ("us.lake", "is not PROJECT.LOCATION.CONNECTION_ID or projects/"),
    ("", "is not PROJECT.LOCATION.CONNECTION_ID or projects/"),
    ("my-project.us.", "is not PROJECT.LOCATION.CONNECTION_ID"),
    ("projects/my-project/locations/us/connections/", "is not PROJECT.LOCATION.CONNECTION_ID"),
    ("projects/my-project/connections/lake", "is not PROJECT.LOCATION.CONNECTION_ID or projects/"),
    ("My_Project.us.lake", "project id 'My_Project' must be 6-30 lowercase letters"),
    ("my-project.u s.lake", "location 'u s' is not a BigQuery location"),
    ("my-project.us.lake!", "connection id 'lake!' may contain only letters, digits, underscores and hyphens"),
    ("my-project.us.lake;drop", "connection id 'lake;drop' may contain only"),
])
def test_a_connection_in_neither_form_is_refused_naming_the_forms_or_the_bad_part(connection: str, said: str) -> None:
    with pytest.raises(BigQueryNameError, match=re.escape(said)):
        connection_parts(connection)
    with pytest.raises(BigQueryNameError, match=re.escape(said)):
        desired(connection_id=connection)


def test_the_ddl_names_a_connection_given_as_a_resource_path_in_the_dotted_form() -> None:
    table = desired(connection_id="projects/my-project/locations/us/connections/lake")
    assert table.resource()["externalDataConfiguration"]["connectionId"] == (
        "projects/my-project/locations/us/connections/lake")  # the table API takes it as given
    assert "\nWITH CONNECTION `my-project.us.lake`\n" in table.ddl()


def test_dataset_resource_carries_the_location() -> None:
    assert dataset_resource("my-project", "market", "EU")["location"] == "EU"


def test_a_missing_table_is_created() -> None:
    assert plan_table(desired(), None).action is Action.CREATE


def test_a_table_on_the_current_metadata_file_is_left_alone() -> None:
    assert plan_table(desired(), existing(URI_3)).action is Action.UNCHANGED


def test_a_table_on_an_older_metadata_file_is_repointed() -> None:
    plan = plan_table(desired(URI_4), existing(URI_3))
    assert (plan.action, plan.previous_uri, plan.metadata_uri) == (Action.UPDATE, URI_3, URI_4)
    assert plan.describe(dry_run=False) == f"updated         my-project.market.trades: {URI_3} -> {URI_4}"
    assert plan.describe(dry_run=True).startswith("would update    my-project.market.trades")


def test_an_iceberg_table_made_by_hand_is_adopted_with_the_sync_label() -> None:
    assert plan_table(desired(), existing(URI_3, managed=False)).action is Action.UPDATE


def test_a_native_table_of_the_same_name_is_a_conflict_never_overwritten() -> None:
    plan = plan_table(desired(), existing(None, managed=False, source_format=None))
    assert plan.action is Action.CONFLICT
    assert "left alone" in plan.reason


def test_real_bigquerys_source_uris_win_over_the_description() -> None:
    resource = {
        "externalDataConfiguration": {"sourceFormat": "ICEBERG", "sourceUris": [URI_4]},
        "description": f"Iceberg metadata: {URI_3}",
        "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, "owner": "analytics"},
    }
    table = ExistingTable.from_resource(resource)
    assert (table.metadata_uri, table.source_format, table.managed) == (URI_4, "ICEBERG", True)
    assert table.labels["owner"] == "analytics"


def test_without_an_external_configuration_the_description_marker_is_read() -> None:
    # What bqemulator returns: the configuration is dropped, description and labels survive.
    table = ExistingTable.from_resource({"description": desired().description, "labels": None})
    assert (table.metadata_uri, table.source_format, table.managed) == (URI_3, None, False)


@given(st.text())
def test_any_description_without_the_marker_names_no_metadata_file(text: str) -> None:
    if "Iceberg metadata: " not in text:
        assert metadata_uri_in(text) is None


@given(st.text(alphabet=st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), min_size=1).map(str.strip)
       .filter(bool))
def test_the_description_round_trips_any_metadata_uri(uri: str) -> None:
    assert metadata_uri_in(desired(f"gs://b/{uri}").description) == f"gs://b/{uri}"


def test_summary_counts_each_outcome_in_order() -> None:
    plans = [
        TablePlan("a", Action.CREATE, "p.d.a"), TablePlan("b", Action.CREATE, "p.d.b"),
        TablePlan("c", Action.UNCHANGED, "p.d.c"), TablePlan("d", Action.SKIP, "p.d.d"),
    ]
    assert summary(plans, dry_run=False) == "2 created, 1 unchanged, 1 skipped"
    assert summary(plans, dry_run=True) == "2 would create, 1 unchanged, 1 skipped"
