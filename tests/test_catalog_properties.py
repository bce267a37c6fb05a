"""What each engine is told about a shared catalog, by settings only (pure: no server)."""

from __future__ import annotations

import re

import pytest

from lakehouse.catalog import pyiceberg_properties, sqlalchemy_uri
from lakehouse.settings import SettingsError, load_settings
from lakehouse.spark import catalog_conf, spark_conf

BIGLAKE = {
    "LAKEHOUSE__CATALOG__TYPE": "rest",
    "LAKEHOUSE__CATALOG__URI": "https://biglake.googleapis.com/iceberg/v1/restcatalog",
    "LAKEHOUSE__CATALOG__WAREHOUSE": "gs://market-lake",
    "LAKEHOUSE__CATALOG__REST_AUTH_TYPE": "google",
    "LAKEHOUSE__CATALOG__GOOGLE_USER_PROJECT": "market-prod",
    "LAKEHOUSE__GCS__PROJECT": "market-prod",
}


def test_biglake_metastore_is_chosen_by_settings_alone_for_spark_and_pyiceberg() -> None:
    settings = load_settings(environ=BIGLAKE)
    spark = catalog_conf(settings)
    prefix = "spark.sql.catalog.lakehouse"
    assert spark[f"{prefix}.type"] == "rest"
    assert spark[f"{prefix}.uri"] == BIGLAKE["LAKEHOUSE__CATALOG__URI"]
    assert spark[f"{prefix}.warehouse"] == "gs://market-lake"
    assert spark[f"{prefix}.rest.auth.type"] == "google"
    assert spark[f"{prefix}.header.x-goog-user-project"] == "market-prod"
    assert spark[f"{prefix}.io-impl"] == "org.apache.iceberg.io.ResolvingFileIO"
    python = pyiceberg_properties(settings)
    assert python["type"] == "rest" and python["uri"] == BIGLAKE["LAKEHOUSE__CATALOG__URI"]
    assert python["auth"] == {"type": "google", "google": {}}
    assert python["header.x-goog-user-project"] == "market-prod"


def test_a_google_key_file_reaches_both_auth_managers() -> None:
    settings = load_settings(environ={**BIGLAKE, "LAKEHOUSE__CATALOG__GOOGLE_CREDENTIALS_FILE": "/secrets/sa.json"})
    assert catalog_conf(settings)["spark.sql.catalog.lakehouse.gcp.auth.credentials-path"] == "/secrets/sa.json"
    assert pyiceberg_properties(settings)["auth"]["google"] == {"credentials_path": "/secrets/sa.json"}


def test_an_oauth2_rest_catalog_gets_credential_server_and_scope_in_both_engines() -> None:
    settings = load_settings(environ={
        "LAKEHOUSE__CATALOG__TYPE": "rest",
        "LAKEHOUSE__CATALOG__URI": "https://polaris.example.com/api/catalog",
        "LAKEHOUSE__CATALOG__WAREHOUSE": "market",
        "LAKEHOUSE__CATALOG__CREDENTIAL": "client:s3cr3t",
        "LAKEHOUSE__CATALOG__OAUTH2_SERVER_URI": "https://polaris.example.com/api/catalog/v1/oauth/tokens",
        "LAKEHOUSE__CATALOG__SCOPE": "PRINCIPAL_ROLE:ALL",
        "LAKEHOUSE__CATALOG__ACCESS_DELEGATION": "vended-credentials",
    })
    spark = catalog_conf(settings)
    python = pyiceberg_properties(settings)
    for key, value in {
        "credential": "client:s3cr3t",
        "oauth2-server-uri": "https://polaris.example.com/api/catalog/v1/oauth/tokens",
        "scope": "PRINCIPAL_ROLE:ALL",
        "header.X-Iceberg-Access-Delegation": "vended-credentials",
    }.items():
        assert spark[f"spark.sql.catalog.lakehouse.{key}"] == value
        assert python[key] == value
    assert "rest.auth.type" not in str(spark)  # Java's default: OAuth2 when a credential is set


def test_spark_redacts_the_catalog_secrets_in_its_ui_and_logs() -> None:
    regex = spark_conf(load_settings(environ={}))["spark.redaction.regex"]
    for secret in ("credential", "token", "jdbc.password"):
        assert re.search(regex, f"spark.sql.catalog.lakehouse.{secret}")


def test_a_postgres_password_with_url_characters_is_escaped_for_sqlalchemy() -> None:
    settings = load_settings(environ={
        "LAKEHOUSE__CATALOG__URI": "jdbc:postgresql://10.0.0.5:5432/iceberg",
        "LAKEHOUSE__CATALOG__USER": "iceberg",
        "LAKEHOUSE__CATALOG__PASSWORD": "p@ss:w/rd%",
    })
    assert sqlalchemy_uri(settings) == "postgresql+psycopg2://iceberg:p%40ss%3Aw%2Frd%25@10.0.0.5:5432/iceberg"
    conf = catalog_conf(settings)
    assert conf["spark.sql.catalog.lakehouse.jdbc.password"] == "p@ss:w/rd%"
    assert conf["spark.sql.catalog.lakehouse.retryable_status_codes"] == "57P01,57P02,57P03"


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"LAKEHOUSE__CATALOG__TYPE": "rest"}, "needs an http\\(s\\) URL"),
        ({"LAKEHOUSE__CATALOG__URI": "http://127.0.0.1:8181"}, "set catalog.type = 'rest'"),
        ({"LAKEHOUSE__CATALOG__REST_AUTH_TYPE": "google"}, "is for a REST catalog"),
    ],
)
def test_a_catalog_type_that_does_not_fit_its_uri_is_refused_with_the_fix(environ: dict, says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        load_settings(environ=environ)
