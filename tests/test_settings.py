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
        "LAKEHOUSE__FINNHUB__MAX_FRAME_BYTES": "67108864",
    })

    assert settings.kafka.bootstrap_servers == "b1:9092,b2:9092"
    assert settings.finnhub.symbols == ["AAPL", "MSFT"]
    assert settings.streaming.trigger_seconds == 0.5
    assert settings.finnhub.max_frame_bytes == 64 * 2**20


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": "localhost"}, "kafka.bootstrap_servers"),
        ({"LAKEHOUSE__KAFKA__PARTITIONS": "many"}, "kafka.partitions"),
        ({"LAKEHOUSE__KAFKA__PARTITIONS": "0"}, "kafka.partitions"),
        ({"LAKEHOUSE__CATALOG__URI": "mysql://catalog"}, "catalog.uri"),
        ({"LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "-1"}, "streaming.trigger_seconds"),
        ({"LAKEHOUSE__STREAMING__TRIGGER_SECONDS": "inf"}, "streaming.trigger_seconds"),  # was accepted
        ({"LAKEHOUSE__STATUS__MAX_EVENT_AGE_SECONDS": "nan"}, "status.max_event_age_seconds"),
        ({"LAKEHOUSE__KAFKA__BOOTSTRAP_SERVRS": "b:1"}, "kafka.bootstrap_servrs"),
        ({"LAKEHOUSE__FINNHUB__SYMBOLS": ""}, "finnhub.symbols"),
        ({"LAKEHOUSE__FINNHUB__SYMBOLS": " , "}, "finnhub.symbols"),
        ({"LAKEHOUSE__FINNHUB__URL": "http://127.0.0.1:1/x"}, "finnhub.url"),
        ({"LAKEHOUSE__FINNHUB__URL": "ws://h:99999"}, "finnhub.url"),
        ({"LAKEHOUSE__FINNHUB__URL": "ws://h:abc"}, "finnhub.url"),
        ({"LAKEHOUSE__FINNHUB__MAX_FRAME_BYTES": "4096"}, "finnhub.max_frame_bytes"),  # refuses every busy frame
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


@pytest.mark.parametrize(("servers", "said"), [
    ("127.0.0.1:99999", "'127.0.0.1:99999' has port 99999, outside 1-65535"),
    ("127.0.0.1:0", "'127.0.0.1:0' has port 0, outside 1-65535"),
    ("b1:9092,b2:70000", "'b2:70000' has port 70000, outside 1-65535"),
    ("host:", "'host:' has no port"),
    ("host", "'host' has no port"),
    (":9092", "':9092' has no host"),
    ("[]:9092", "'[]:9092' has no host"),
    ("host:abc", "'host:abc' has port 'abc', not a number"),
    ("host:９０９２", "'host:９０９２' has port '９０９２', not a number"),
    ("b1:9092,,b2:9092", "'' has no port"),
    ("my broker:9092", "'my broker:9092' has a space in its host"),
])
def test_a_bootstrap_server_without_a_host_or_a_port_in_range_is_named_at_start(servers: str, said: str) -> None:
    # A port out of range was accepted: producers then said no broker answered, status "KafkaTimeoutError".
    with pytest.raises(SettingsError) as error:
        load_settings(environ={"LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": servers})

    message = str(error.value)
    assert "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS" in message and said in message, message
    assert "(expected host:port[,host:port...], port 1-65535)" in message


@pytest.mark.parametrize("servers", [
    "b1:9092, b2:9092", "[::1]:9092", "::1:9092", "kafka_1:1", "10.0.0.7:65535",
    "bootstrap.market.us-east1.managedkafka.my-project.cloud.goog:9092",
])
def test_bootstrap_servers_of_names_and_ip_addresses_are_accepted(servers: str) -> None:
    assert load_settings(environ={"LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": servers}).kafka.bootstrap_servers == servers


@pytest.mark.parametrize("variable", ["LAKEHOUSE__SPARK__LOCAL_BIND_ADDRESS",
                                      "LAKEHOUSE__LOCAL__REST_CATALOG_BIND_ADDRESS"])
@pytest.mark.parametrize(("address", "said"), [
    ("not an address", "'not an address' is neither an IP address nor a host name"),
    ("300.1.1.1", "'300.1.1.1' is not an IP address"),
    ("1.2.3", "'1.2.3' is not an IP address"),
    ("", "is empty: name an IP address or a host name"),
    (" 127.0.0.1", "' 127.0.0.1' is neither an IP address nor a host name"),
    ("127.0.0.1:4040", "'127.0.0.1:4040' is neither an IP address nor a host name"),
    ("-driver", "'-driver' is neither an IP address nor a host name"),
    ("a" * 64 + ".internal", "is neither an IP address nor a host name"),
])
def test_a_bind_address_that_is_no_ip_address_or_host_name_is_named_at_start(
    variable: str, address: str, said: str
) -> None:
    # Was accepted: Spark failed in its JVM with UnknownHostException, or on an empty host in its RPC URL.
    with pytest.raises(SettingsError) as error:
        load_settings(environ={variable: address})

    assert variable in str(error.value) and said in str(error.value), str(error.value)


@pytest.mark.parametrize("address", ["127.0.0.1", "0.0.0.0", "::1", "localhost", "driver-1.corp.internal", "my_host"])
def test_an_ip_address_or_a_host_name_is_a_bind_address(address: str) -> None:
    settings = load_settings(environ={"LAKEHOUSE__SPARK__LOCAL_BIND_ADDRESS": address,
                                      "LAKEHOUSE__LOCAL__REST_CATALOG_BIND_ADDRESS": address})

    assert settings.spark.local_bind_address == settings.local.rest_catalog_bind_address == address


def test_a_missing_config_file_named_by_the_environment_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(SettingsError, match=r"nope\.toml"):
        load_settings(environ={"LAKEHOUSE_CONFIG": str(missing)})


def test_a_config_file_that_is_not_toml_is_an_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[kafka\nbootstrap_servers = ")

    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config_file=broken, environ={})


def unreadable_config(tmp_path: Path, kind: str) -> Path:
    """A config path that exists but cannot be read as TOML text."""
    if kind == "directory":
        return tmp_path
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b"\xff\xfe[kafka]\n")
    return latin1


@pytest.mark.parametrize(("kind", "said"), [("directory", "is not a regular file"), ("binary", "is not UTF-8 text")])
def test_a_config_file_that_cannot_be_read_is_one_settings_error(tmp_path: Path, kind: str, said: str) -> None:
    # Was: IsADirectoryError or UnicodeDecodeError, a traceback and exit 1 (``lakehouse status``: "stale").
    config = unreadable_config(tmp_path, kind)

    for how in ({"config_file": config, "environ": {}}, {"environ": {"LAKEHOUSE_CONFIG": str(config)}}):
        with pytest.raises(SettingsError, match=said) as error:
            load_settings(**how)
        assert str(config) in str(error.value) and "\n" not in str(error.value)


def test_an_empty_lakehouse_config_is_an_error_that_names_it() -> None:
    # Was: Path("") is ".", the working directory, read as a file: IsADirectoryError.
    with pytest.raises(SettingsError, match="LAKEHOUSE_CONFIG is set but empty"):
        load_settings(environ={"LAKEHOUSE_CONFIG": ""})


def test_the_status_command_exits_2_not_1_on_an_unreadable_config(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from lakehouse.ops.cli import main

    assert main(["status", "--config", str(tmp_path)]) == 2
    assert capsys.readouterr().out == f"config file {tmp_path} is not a regular file\n"


def test_a_relative_config_path_is_found_in_the_working_directory_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "lakehouse.toml").write_text('[kafka]\nbootstrap_servers = "here:9092"\n')
    monkeypatch.chdir(tmp_path)

    settings = load_settings(environ={"LAKEHOUSE_CONFIG": "conf/lakehouse.toml"})

    assert settings.kafka.bootstrap_servers == "here:9092"


def test_a_relative_config_path_missing_in_the_working_directory_is_read_from_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A notebook kernel runs in notebooks/; docs/gcp.md says LAKEHOUSE_CONFIG=conf/gcp.toml.
    monkeypatch.chdir(tmp_path)

    load_settings(environ={"LAKEHOUSE_CONFIG": "conf/lakehouse.toml"})  # was: "does not exist"
    with pytest.raises(SettingsError, match=f"config file {tmp_path}/nope.toml does not exist"):
        load_settings(config_file=Path("nope.toml"), environ={})


def test_an_empty_state_dir_is_refused_instead_of_meaning_the_project_root() -> None:
    with pytest.raises(SettingsError, match=r"local\.state_dir.*is empty"):
        load_settings(environ={"LAKEHOUSE__LOCAL__STATE_DIR": ""})


def test_local_folders_expand_the_home_directory() -> None:
    settings = load_settings(environ={"LAKEHOUSE__LOCAL__STATE_DIR": "~/lh", "LAKEHOUSE__LOCAL__SPARK_JARS_DIR": "~/j"})

    assert settings.state_dir == Path.home() / "lh"  # was: <project root>/~/lh
    assert settings.local.spark_jars_dir == Path.home() / "j"


def test_status_fresh_tables_must_name_tables_that_exist() -> None:
    # 'trade,bars_1M' was accepted, and status then judged no table: exit 0 on stale data.
    with pytest.raises(SettingsError) as error:
        load_settings(environ={"LAKEHOUSE__STATUS__FRESH_TABLES": "trade,bars_1M"})

    said = str(error.value)
    assert "status.fresh_tables" in said and "unknown table(s) trade, bars_1M" in said
    assert "the tables are trades, bars_1m, " in said


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


def test_a_rule_across_a_section_names_the_section_not_a_variable_that_does_not_exist() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(environ={"LAKEHOUSE__KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    assert "settings [kafka] (env LAKEHOUSE__KAFKA__*): Value error, security_protocol SASL_PLAINTEXT needs" in str(
        error.value)  # was "(env LAKEHOUSE__KAFKA)", a variable the settings refuse
