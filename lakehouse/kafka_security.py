"""How every Kafka client of the project authenticates, built from the one ``kafka`` settings section.

The producers (kafka-python) and the Spark jobs (the Kafka source's ``kafka.*`` options, i.e. the
Java client's properties) get the same security from the same settings, so a cluster that demands
SASL_SSL (Google's Managed Service for Apache Kafka demands it) is reached by both or by neither:

* ``PLAIN``: the username and password in both clients; for Managed Kafka the service account's
  email and the base64 of its JSON key.
* ``OAUTHBEARER`` with ``sasl_oauthbearer = "google"``: Java uses Google's own login callback
  handler (``GcpLoginCallbackHandler``, jar ``com.google.cloud.hosted.kafka:managed-kafka-auth-login-handler``
  on the Spark classpath); kafka-python gets ``GoogleTokenProvider``, which builds the same token
  from Application Default Credentials (the handler's format: a JWT-shaped header and claims around
  a Google access token, which the brokers verify).
* ``ssl_cafile``: a PEM bundle both clients trust (Java reads PEM trust stores since Kafka 2.7).

See docs/deploy-gcp.md for the exact values on Managed Kafka.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

from kafka.net.sasl.oauth import AbstractTokenProvider

from lakehouse.settings import Settings

GOOGLE_LOGIN_HANDLER = "com.google.cloud.hosted.kafka.auth.GcpLoginCallbackHandler"
OAUTHBEARER_LOGIN_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
PLAIN_LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _jaas_quoted(value: str) -> str:
    """A JAAS option value in double quotes (a backslash escapes the next character)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def spark_kafka_options(settings: Settings) -> dict[str, str]:
    """The Kafka source's ``kafka.*`` options for the configured security (empty for PLAINTEXT)."""
    kafka = settings.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return {}
    props = {"security.protocol": kafka.security_protocol}
    if kafka.sasl_mechanism == "PLAIN":
        assert kafka.sasl_username is not None and kafka.sasl_password is not None  # settings validate it
        props["sasl.mechanism"] = "PLAIN"
        props["sasl.jaas.config"] = (
            f"{PLAIN_LOGIN_MODULE} required username={_jaas_quoted(kafka.sasl_username)} "
            f"password={_jaas_quoted(kafka.sasl_password.get_secret_value())};"
        )
    elif kafka.sasl_mechanism == "OAUTHBEARER":
        props["sasl.mechanism"] = "OAUTHBEARER"
        props["sasl.jaas.config"] = f"{OAUTHBEARER_LOGIN_MODULE} required;"
        props["sasl.login.callback.handler.class"] = GOOGLE_LOGIN_HANDLER
    if kafka.ssl_cafile is not None:
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = str(settings.path(kafka.ssl_cafile))
    return {f"kafka.{key}": value for key, value in props.items()}


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's clients (KafkaProducer, KafkaConsumer, KafkaAdminClient)."""
    kafka = settings.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if kafka.sasl_mechanism == "PLAIN":
        assert kafka.sasl_password is not None  # settings validate it
        options.update(sasl_mechanism="PLAIN", sasl_plain_username=kafka.sasl_username,
                       sasl_plain_password=kafka.sasl_password.get_secret_value())
    elif kafka.sasl_mechanism == "OAUTHBEARER":
        options.update(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=GoogleTokenProvider())
    if kafka.ssl_cafile is not None:
        options["ssl_cafile"] = str(settings.path(kafka.ssl_cafile))
    return options


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class GoogleTokenProvider(AbstractTokenProvider):
    """The OAUTHBEARER token Managed Kafka accepts, from Application Default Credentials: what Java's
    ``GcpLoginCallbackHandler`` sends (header ``{"typ":"JWT","alg":"GOOG_OAUTH2_TOKEN"}``, claims
    ``exp``/``iat``/``scope: kafka``/``sub`` = the principal's email, then the access token itself),
    refreshed when the access token expires."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self._lock = threading.Lock()
        self._credentials: Any = None

    def token(self) -> str:
        import google.auth
        from google.auth.transport.requests import Request

        with self._lock:
            if self._credentials is None:
                self._credentials, _ = google.auth.default(scopes=[GOOGLE_SCOPE])
            if not self._credentials.valid:
                self._credentials.refresh(Request())
            credentials = self._credentials
            now = int(time.time())
            expiry = int(credentials.expiry.timestamp()) if credentials.expiry else now + 3600
            header = json.dumps({"typ": "JWT", "alg": "GOOG_OAUTH2_TOKEN"}, separators=(",", ":"))
            claims = json.dumps({"exp": expiry, "iat": now, "scope": "kafka", "sub": _principal(credentials)},
                                separators=(",", ":"))
            return ".".join(_b64url(part.encode()) for part in (header, claims, credentials.token))


def _principal(credentials: Any) -> str:
    """The email Managed Kafka authorizes: the service account's (its key file's, or the VM's, which
    Compute Engine credentials learn from the metadata server when they refresh)."""
    email = getattr(credentials, "service_account_email", None)
    if email and email != "default":
        return str(email)
    raise ValueError("the Application Default Credentials name no service account: Managed Kafka needs one")
