"""Configuration: one typed place, validated at start, with errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.catalog import jdbc_uri, pyiceberg_properties, sqlalchemy_uri, warehouse_uri
from lakehouse.settings import PROJECT_ROOT, SettingsError, load_settings
from lakehouse.spark import catalog_conf
from lakehouse.streaming import offset_lookup_options


def test_embedded_defaults_need_no_configuration() -> None:
    settings = load_settings(environ={})

    assert settings.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert jdbc_uri(settings) == f"jdbc:sqlite:{PROJECT_ROOT}/.state/catalog.db"
    assert warehouse_uri(settings) == (PROJECT_ROOT / ".state" / "warehouse").as_uri()


def test_environment_overrides_the_file_and_lists_split_on_commas() -> None:
    settings = load_settings(environ={
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": "b1:9092,b2:9092",
        "LAKEHOUSE__FINNHUB__SYMBOLS": "AAPL, MSFT",
        "LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "0.5",
    })

    assert settings.kafka.bootstrap_servers == "b1:9092,b2:9092"
    assert settings.finnhub.symbols == ["AAPL", "MSFT"]
    assert settings.streaming.trigger_seconds == 0.5


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": "localhost"}, "kafka.bootstrap_servers"),
        ({"LAKEHOUSE__KAFKA__PARTITIONS": "many"}, "kafka.partitions"),
        ({"LAKEHOUSE__KAFKA__PARTITIONS": "0"}, "kafka.partitions"),
        ({"LAKEHOUSE__CATALOG__URI": "mysql://catalog"}, "catalog.uri"),
        ({"LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "-1"}, "streaming.trigger_seconds"),
        ({"LAKEHOUSE__KAFKA__BOOTSTRAP_SERVRS": "b:1"}, "kafka.bootstrap_servrs"),
        ({"LAKEHOUSE__FINNHUB__SYMBOLS": ""}, "finnhub.symbols"),
        ({"LAKEHOUSE__FINNHUB__SYMBOLS": " , "}, "finnhub.symbols"),
        ({"LAKEHOUSE__FINNHUB__URL": "http://127.0.0.1:1/x"}, "finnhub.url"),
        ({"LAKEHOUSE__FINNHUB__URL": "ws://h:99999"}, "finnhub.url"),
        ({"LAKEHOUSE__FINNHUB__URL": "ws://h:abc"}, "finnhub.url"),
    ],
)
def test_a_malformed_or_unknown_setting_fails_with_its_name(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(environ=environ)

    assert named in str(error.value)
    assert "LAKEHOUSE__" in str(error.value)


def test_finnhub_symbols_the_trade_model_refuses_are_named_at_start() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(environ={"LAKEHOUSE__FINNHUB__SYMBOLS": "AAPL,BAD SYM,BRK.B," + "X" * 33})

    assert "'BAD SYM'" in str(error.value) and "'" + "X" * 33 + "'" in str(error.value)
    assert "AAPL" not in str(error.value) and "BRK.B" not in str(error.value)


def test_a_missing_config_file_named_by_the_environment_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(SettingsError, match=r"nope\.toml"):
        load_settings(environ={"LAKEHOUSE_CONFIG": str(missing)})


def test_a_config_file_that_is_not_toml_is_an_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[kafka\nbootstrap_servers = ")

    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config_file=broken, environ={})


def test_secrets_never_show_in_the_settings_repr() -> None:
    settings = load_settings(environ={"LAKEHOUSE__FINNHUB__TOKEN": "sk-abcdef0123456789"})

    assert "sk-abcdef0123456789" not in repr(settings)
    assert settings.finnhub.token is not None
    assert settings.finnhub.token.get_secret_value() == "sk-abcdef0123456789"


def test_spark_and_pyiceberg_open_the_same_catalog() -> None:
    settings = load_settings(environ={"LAKEHOUSE__CATALOG__URI": "jdbc:sqlite:/data/cat.db"})

    spark = catalog_conf(settings)
    python = pyiceberg_properties(settings)

    assert spark["spark.sql.catalog.lakehouse.uri"] == "jdbc:sqlite:/data/cat.db"
    assert python["uri"] == sqlalchemy_uri(settings) == "sqlite:////data/cat.db"
    assert spark["spark.sql.catalog.lakehouse.warehouse"] == python["warehouse"]


def test_the_kafka_sources_offset_lookups_time_out_early_and_keep_kafkas_patience_in_tries() -> None:
    settings = load_settings(environ={})
    assert offset_lookup_options(settings.streaming.kafka_offsets_timeout_seconds) == {
        "kafka.default.api.timeout.ms": "15000", "kafka.request.timeout.ms": "15000", "fetchOffset.numRetries": "12",
    }
    assert offset_lookup_options(60)["fetchOffset.numRetries"] == "3"
    assert offset_lookup_options(120)["fetchOffset.numRetries"] == "3"
    assert offset_lookup_options(2.5) == {
        "kafka.default.api.timeout.ms": "2500", "kafka.request.timeout.ms": "2500", "fetchOffset.numRetries": "72",
    }
    for too_short in ("0", "0.5"):  # below a second, a busy broker's answer would count as a failure
        with pytest.raises(SettingsError, match="kafka_offsets_timeout_seconds"):
            load_settings(environ={"LAKEHOUSE__STREAMING__KAFKA_OFFSETS_TIMEOUT_SECONDS": too_short})
