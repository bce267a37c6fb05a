"""A gs:// warehouse is a settings-only switch: the FileIO properties Spark and pyiceberg get from it."""

from __future__ import annotations

from pathlib import Path

from lakehouse.catalog import (
    EMULATOR_TOKEN_EXPIRES_AT_MS,
    gcs_java_properties,
    gcs_pyiceberg_properties,
    is_gcs_warehouse,
    pyiceberg_properties,
)
from lakehouse.settings import PROJECT_ROOT, Settings, load_settings
from lakehouse.spark import spark_conf, spark_environment

EMULATOR = "http://127.0.0.1:4443"
PREFIX = "spark.sql.catalog.lakehouse"


def settings(**gcs: str) -> Settings:
    environ = {"LAKEHOUSE__CATALOG__WAREHOUSE": "gs://market-lake/warehouse"}
    environ |= {f"LAKEHOUSE__GCS__{key.upper()}": value for key, value in gcs.items()}
    return load_settings(environ=environ)


def test_a_local_warehouse_gets_no_gcs_properties() -> None:
    local = load_settings(environ={"LAKEHOUSE__CATALOG__WAREHOUSE": ".state/warehouse"})
    assert not is_gcs_warehouse(local)
    assert not any(key.startswith(("gcs.", "py-io-impl")) for key in pyiceberg_properties(local))
    assert not any(".gcs." in key or key.endswith(".io-impl") for key in spark_conf(local))
    assert spark_environment(local) == {}


def test_emulator_java_uses_gcsfileio_without_auth() -> None:
    assert gcs_java_properties(settings(endpoint=EMULATOR, project="local-project")) == {
        "io-impl": "org.apache.iceberg.io.ResolvingFileIO",
        "gcs.project-id": "local-project",
        "gcs.service.host": EMULATOR,
        "gcs.no-auth": "true",
    }


def test_emulator_pyiceberg_uses_arrow_with_a_dummy_token_so_it_never_asks_the_metadata_server() -> None:
    props = gcs_pyiceberg_properties(settings(endpoint=EMULATOR))
    assert props == {
        "gcs.service.host": EMULATOR,
        "gcs.oauth2.token": "emulator-ignores-tokens",
        "gcs.oauth2.token-expires-at": str(EMULATOR_TOKEN_EXPIRES_AT_MS),
    }
    assert "py-io-impl" not in props  # PyArrowFileIO, pyiceberg's default for gs://


def test_real_gcs_with_application_default_credentials_sets_no_credential_properties() -> None:
    adc = settings(project="prod-project")
    assert gcs_java_properties(adc) == {"io-impl": "org.apache.iceberg.io.ResolvingFileIO",
                                        "gcs.project-id": "prod-project"}
    assert gcs_pyiceberg_properties(adc) == {"gcs.project-id": "prod-project"}
    assert spark_environment(adc) == {}


def test_a_key_file_goes_to_gcsfs_for_pyiceberg_and_to_adc_for_the_jvms() -> None:
    keyed = settings(project="prod-project", credentials_file="conf/gcs-key.json")
    key = str(PROJECT_ROOT / "conf" / "gcs-key.json")
    assert gcs_pyiceberg_properties(keyed) == {
        "gcs.project-id": "prod-project",
        "py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO",
        "gcs.oauth2.token": key,
    }
    assert "gcs.no-auth" not in gcs_java_properties(keyed)
    assert spark_environment(keyed) == {"GOOGLE_APPLICATION_CREDENTIALS": key}
    assert spark_conf(keyed)["spark.executorEnv.GOOGLE_APPLICATION_CREDENTIALS"] == key


def test_a_key_file_with_an_endpoint_authenticates_instead_of_no_auth() -> None:
    keyed = settings(endpoint=EMULATOR, credentials_file=str(Path("/secrets/key.json")))
    assert "gcs.no-auth" not in gcs_java_properties(keyed)
    assert gcs_pyiceberg_properties(keyed)["gcs.oauth2.token"] == "/secrets/key.json"


def test_spark_catalog_gets_the_java_properties_under_its_prefix() -> None:
    conf = spark_conf(settings(endpoint=EMULATOR, project="local-project"))
    assert conf[f"{PREFIX}.warehouse"] == "gs://market-lake/warehouse"
    assert conf[f"{PREFIX}.io-impl"] == "org.apache.iceberg.io.ResolvingFileIO"
    assert conf[f"{PREFIX}.gcs.service.host"] == EMULATOR
    assert conf[f"{PREFIX}.gcs.no-auth"] == "true"
    assert not any("oauth2" in key for key in conf)  # Java refuses no-auth together with a token


def test_pyiceberg_catalog_properties_include_the_gcs_ones() -> None:
    props = pyiceberg_properties(settings(endpoint=EMULATOR))
    assert props["warehouse"] == "gs://market-lake/warehouse"
    assert props["gcs.service.host"] == EMULATOR


def test_the_gcp_example_config_is_valid_and_uses_real_gcs_with_adc() -> None:
    gcp = load_settings(config_file=PROJECT_ROOT / "conf" / "gcp.example.toml", environ={})
    assert is_gcs_warehouse(gcp)
    assert gcp.gcs.endpoint is None and gcp.bigquery.endpoint is None
    assert gcs_pyiceberg_properties(gcp) == {"gcs.project-id": "<gcp-project>"}
    assert pyiceberg_properties(gcp)["uri"].startswith("postgresql+psycopg2://iceberg@")
