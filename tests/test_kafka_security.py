"""Kafka security by settings only, the same for the producers (kafka-python) and the Spark jobs (the
Kafka source's ``kafka.*`` options): against a real KRaft broker with a SASL_PLAINTEXT/PLAIN listener
on loopback, a producer and the raw-trades job authenticate with the configured password, and both
fail clearly with a wrong one. The Managed Kafka (SASL_SSL + Google OAUTHBEARER) values are checked
as the exact properties Google documents; no broker here can verify a Google token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kafka.errors import KafkaConnectionError, SaslAuthenticationFailedError

from lakehouse import raw_trades_stream
from lakehouse.catalog import load_catalog, table_identifier
from lakehouse.kafka_security import GoogleTokenProvider, kafka_python_options, spark_kafka_options
from lakehouse.local.kafka_broker import LocalKafkaBroker, SaslPlainListener
from lakehouse.local.processes import free_port
from lakehouse.settings import Settings, SettingsError, load_settings
from lakehouse.streaming import OFFSET_LOOKUP_PATIENCE_S
from lakehouse.tables import TRADES
from producers.kafka_sink import KafkaSink, SinkConfig
from tests.kafka_helpers import new_topic
from tests.test_raw_trades import trade

USER, PASSWORD = "lakehouse-producer", "s3cret-for-tests"


@pytest.fixture(scope="module")
def sasl_broker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    broker = LocalKafkaBroker(
        settings.path(settings.local.kafka_jars_dir), tmp_path_factory.mktemp("sasl-broker"),
        port=free_port(), controller_port=free_port(), heap_mb=384,
        sasl=SaslPlainListener(free_port(), {USER: PASSWORD}),
    )
    broker.start(timeout_seconds=120)
    yield broker
    broker.stop()


def secured(settings: Settings, broker: LocalKafkaBroker, password: str, name: str) -> Settings:
    """``settings`` pointed at the broker's SASL listener, by the kafka settings only."""
    assert broker.sasl is not None
    return Settings.model_validate({
        **settings.model_dump(),
        "kafka": {**settings.kafka.model_dump(), "bootstrap_servers": f"127.0.0.1:{broker.sasl.port}",
                  "trades_topic": f"sasl.{name}", "security_protocol": "SASL_PLAINTEXT",
                  "sasl_mechanism": "PLAIN", "sasl_username": USER, "sasl_password": password},
        "catalog": {**settings.catalog.model_dump(), "namespace": f"sasl_{name}"},
        "streaming": {**settings.streaming.model_dump(),
                      "checkpoint_dir": f"{settings.streaming.checkpoint_dir}/sasl_{name}"},
    })


def test_the_producer_and_the_raw_trades_job_authenticate_through_the_settings(
    sasl_broker: LocalKafkaBroker, settings: Settings, spark: Any
) -> None:
    lake = secured(settings, sasl_broker, PASSWORD, "right")
    new_topic(sasl_broker.bootstrap_servers, lake.kafka.trades_topic)  # created over the broker's own listener
    sent = [trade(symbol, n) for n in range(150) for symbol in ("SASA", "SASB")]
    sink = KafkaSink(SinkConfig(lake.kafka.bootstrap_servers, client_id="sasl-test",
                                security=kafka_python_options(lake)))
    for message in sent:
        sink.publish(lake.kafka.trades_topic, message)
    assert sink.close(timeout_seconds=60)
    assert sink.stats.acked == len(sent)

    query = raw_trades_stream.start(spark, lake)
    try:
        query.processAllAvailable()
    finally:
        query.stop()
    stored = load_catalog(lake).load_table(table_identifier(lake, TRADES)).scan().to_arrow().column("trade_id")
    assert sorted(stored.to_pylist()) == sorted(t.trade_id for t in sent)


def test_a_wrong_password_fails_the_producer_and_the_job_clearly(
    sasl_broker: LocalKafkaBroker, settings: Settings, spark: Any
) -> None:
    # Each offset lookup bounded by the lookup patience itself: Spark's source then makes its minimum
    # of 3 attempts (1 s apart) before the query fails, instead of 12 at the 15 s default; the same
    # refusal, the same failure.
    lake = secured(settings, sasl_broker, "not-the-password", "wrong").with_streaming(
        kafka_offsets_timeout_seconds=OFFSET_LOOKUP_PATIENCE_S)
    new_topic(sasl_broker.bootstrap_servers, lake.kafka.trades_topic)

    # The broker's reason when kafka-python reads it before the broker closes the socket; else the
    # timeout that names the SASL settings to check.
    with pytest.raises((SaslAuthenticationFailedError, KafkaConnectionError),
                       match=r"Authentication failed: Invalid username or password|kafka\.sasl_password"):
        KafkaSink(SinkConfig(lake.kafka.bootstrap_servers, client_id="sasl-test", connect_timeout_seconds=15,
                             security=kafka_python_options(lake)))

    from pyspark.errors import StreamingQueryException

    query = raw_trades_stream.start(spark, lake)
    try:
        with pytest.raises(StreamingQueryException, match="SaslAuthenticationException: Authentication failed"):
            query.awaitTermination(180)  # returns only if the job were still running then
    finally:
        query.stop()


def test_managed_kafka_oauthbearer_settings_give_both_clients_googles_documented_properties() -> None:
    managed = load_settings(environ={
        "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS": "bootstrap.lake.us-central1.managedkafka.my-project.cloud.goog:9092",
        "LAKEHOUSE__KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "LAKEHOUSE__KAFKA__SASL_MECHANISM": "OAUTHBEARER",
        "LAKEHOUSE__KAFKA__SASL_OAUTHBEARER": "google",
    })
    assert spark_kafka_options(managed) == {
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "OAUTHBEARER",
        "kafka.sasl.login.callback.handler.class": "com.google.cloud.hosted.kafka.auth.GcpLoginCallbackHandler",
        "kafka.sasl.jaas.config": "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
    }
    python = kafka_python_options(managed)
    assert python["security_protocol"] == "SASL_SSL" and python["sasl_mechanism"] == "OAUTHBEARER"
    assert isinstance(python["sasl_oauth_token_provider"], GoogleTokenProvider)


def test_incomplete_kafka_security_settings_are_refused_by_name() -> None:
    for environ, clue in [
        ({"LAKEHOUSE__KAFKA__SECURITY_PROTOCOL": "SASL_SSL"}, "needs sasl_mechanism"),
        ({"LAKEHOUSE__KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "LAKEHOUSE__KAFKA__SASL_MECHANISM": "PLAIN",
          "LAKEHOUSE__KAFKA__SASL_USERNAME": "sa@p.iam.gserviceaccount.com"}, "sasl_password"),
        ({"LAKEHOUSE__KAFKA__SASL_MECHANISM": "PLAIN"}, "uses no SASL"),
        ({"LAKEHOUSE__KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "LAKEHOUSE__KAFKA__SASL_MECHANISM": "OAUTHBEARER"},
         "sasl_oauthbearer"),
    ]:
        with pytest.raises(SettingsError, match=clue):
            load_settings(environ=environ)
