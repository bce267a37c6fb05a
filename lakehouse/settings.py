"""One typed settings object for every process in the lakehouse.

Values come from a TOML file (``conf/lakehouse.toml`` unless ``LAKEHOUSE_CONFIG`` names another)
and are overridden by environment variables ``LAKEHOUSE__SECTION__KEY`` (double underscores,
case-insensitive), e.g. ``LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS=broker:9092``. Nothing else in the
project reads ``os.environ``: callers build ``Settings`` once at start and pass it down.

Relative paths are resolved against the project root so that every process, wherever it was
started from, agrees on the same local state directory, catalog file and warehouse.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from lakehouse.messages import Symbol


def _project_root() -> Path:
    """The folder holding ``lakehouse/`` and ``conf/``, against which relative settings resolve.

    Imported from the ``--py-files`` zip that ``spark-submit.sh`` ships on a non-local master (the
    driver's PYTHONPATH lists it first), this file lies inside the archive, which is no folder: the
    root is then the working directory, where ``spark-submit.sh`` starts the driver.
    """
    package_parent = Path(__file__).resolve().parent.parent
    return package_parent if package_parent.is_dir() else Path.cwd()


PROJECT_ROOT = _project_root()
DEFAULT_CONFIG_FILE = PROJECT_ROOT / "conf" / "lakehouse.toml"
ENV_PREFIX = "LAKEHOUSE__"
CONFIG_FILE_ENV = "LAKEHOUSE_CONFIG"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


class _Section(BaseModel):
    # No NaN or infinity in any number: a trigger of inf seconds was accepted and never fired.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def host_problem(host: str) -> str | None:
    """Why ``host`` is neither an IP address nor a host name, or None. The name is not looked up:
    only its form is checked (labels of letters, digits, ``-`` and ``_``, at most 253 characters);
    a name whose last label is a number (``300.1.1.1``) is taken as a mistyped IPv4 address."""
    if not host:
        return "is empty: name an IP address or a host name"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = (host[:-1] if host.endswith(".") else host).split(".")
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        return f"{host!r} is neither an IP address nor a host name"
    if labels[-1].isdigit():
        return f"{host!r} is not an IP address (each of its 4 parts is 0-255)"
    return None


def _an_address(value: str) -> str:
    if problem := host_problem(value):
        raise ValueError(problem)
    return value


# An address a server listens on, checked at start: Spark takes any string and fails only once its
# JVM runs, in a Java stack trace (an empty one as late as the driver's RPC URL).
BindAddress = Annotated[str, AfterValidator(_an_address)]


class LocalSettings(_Section):
    """Where the embedded stack keeps its state: broker logs, the local servers' data, ops records.

    The catalog, the warehouse and the checkpoints are settings of their own and do not follow
    ``state_dir``: moving the state elsewhere means setting ``catalog.uri``, ``catalog.warehouse``
    and ``streaming.checkpoint_dir`` too (their defaults name ``.state/`` themselves).
    Paths may start with ``~``; an empty one is refused (it would name the project root).
    """

    state_dir: Path = Path(".state")
    kafka_jars_dir: Path = Path("jars/kafka")
    spark_jars_dir: Path = Path("jars/spark")
    rest_catalog_jars_dir: Path = Path("jars/rest-catalog")
    # Local shared-catalog servers only (lakehouse.local.postgres, lakehouse.local.rest_catalog).
    postgres_port: int = Field(default=15432, ge=1, le=65535)
    rest_catalog_port: int = Field(default=18181, ge=1, le=65535)
    # The address the local REST catalog server listens on: loopback, unless other hosts must reach it.
    rest_catalog_bind_address: BindAddress = "127.0.0.1"

    @field_validator("state_dir", "kafka_jars_dir", "spark_jars_dir", "rest_catalog_jars_dir", mode="before")
    @classmethod
    def _named_folder(cls, value: object) -> object:
        if isinstance(value, str | Path) and not str(value).strip():
            raise ValueError("is empty: name a folder (an empty path would be the project root)")
        return Path(value).expanduser() if isinstance(value, str | Path) else value


def bootstrap_server_problem(server: str) -> str | None:
    """Why one ``host:port`` entry of ``kafka.bootstrap_servers`` names no server, or None. An IPv6
    address goes in brackets (``[::1]:9092``); the host is not looked up."""
    host, sep, port = server.rpartition(":")
    if not sep:
        return "has no port"
    if not (port.isascii() and port.isdigit()):
        return f"has port {port!r}, not a number" if port else "has no port"
    if not 1 <= int(port) <= 65535:
        return f"has port {port}, outside 1-65535"
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        return "has no host"
    if any(character.isspace() for character in host):
        return "has a space in its host"
    return None


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:19092"
    trades_topic: str = "market.trades"
    vendor_bars_topic: str = "market.vendor_bars"
    feed_events_topic: str = "market.feed_events"
    quarantine_topic: str = "market.quarantine"
    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    # Replicas that must hold a record before an acks=all producer is acknowledged (set on the
    # topics the project creates); None: the broker's default. Cluster topology: 2 of 3.
    min_insync_replicas: int | None = Field(default=None, ge=1)
    # Local broker only: where the embedded KRaft broker listens.
    local_broker_port: int = Field(default=19092, ge=1, le=65535)
    local_controller_port: int = Field(default=19093, ge=1, le=65535)
    # How every client connects (producers through kafka-python, Spark jobs through ``kafka.*``
    # options; both built by lakehouse.kafka_security from these). Managed Service for Apache
    # Kafka: SASL_SSL with OAUTHBEARER (``sasl_oauthbearer = "google"``: Application Default
    # Credentials) or PLAIN (username = service account email, password = the base64 of its key).
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_oauthbearer: Literal["google"] | None = None
    # A PEM bundle of the CAs that signed the brokers' certificates; None: the system's trust store.
    ssl_cafile: Path | None = None

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        """Every entry, at start: a port out of range otherwise shows only later, as a broker that
        never answers (producers, status) or an error inside Kafka's client (jobs)."""
        problems = [f"{server.strip()!r} {problem}" for server in value.split(",")
                    if (problem := bootstrap_server_problem(server.strip()))]
        if problems:
            raise ValueError(f"{'; '.join(problems)} (expected host:port[,host:port...], port 1-65535)")
        return value

    @model_validator(mode="after")
    def _security_is_complete(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism (PLAIN or OAUTHBEARER)")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(f"sasl_mechanism is set but security_protocol {self.security_protocol} uses no SASL")
        if self.sasl_mechanism == "PLAIN" and (not self.sasl_username or self.sasl_password is None):
            raise ValueError("sasl_mechanism PLAIN needs sasl_username and sasl_password")
        if self.sasl_mechanism == "OAUTHBEARER" and self.sasl_oauthbearer is None:
            raise ValueError("sasl_mechanism OAUTHBEARER needs sasl_oauthbearer (the token provider: google)")
        return self


class CatalogSettings(_Section):
    """The one Iceberg catalog that Spark (Java) and pyiceberg both open.

    ``type = "jdbc"``: ``uri`` is a JDBC URI (what Java's JdbcCatalog takes; pyiceberg's SQLAlchemy
    URI is derived from it), with ``user``/``password`` for Postgres. Embedded default: a SQLite file
    under the state directory; shared: ``jdbc:postgresql://host:port/db`` (Cloud SQL on GCP).

    ``type = "rest"``: ``uri`` is an Iceberg REST catalog's base URL (Apache Iceberg's server,
    Polaris, Nessie, Lakekeeper, Unity, BigLake metastore). Authentication, as the server wants it:

    * none (a local server on loopback);
    * OAuth2: ``credential`` (``client_id:client_secret``, exchanged for tokens at
      ``oauth2_server_uri`` with ``scope``) or a ready bearer ``token``;
    * Google (BigLake metastore): ``rest_auth_type = "google"`` signs every request with Application
      Default Credentials (or the key file ``google_credentials_file``), and ``google_user_project``
      is the project billed for the requests (header ``x-goog-user-project``).

    ``access_delegation`` asks the server for storage credentials scoped to each table
    (``vended-credentials``), where the server supports it.
    """

    name: str = "lakehouse"
    type: Literal["jdbc", "rest"] = "jdbc"
    uri: str = "jdbc:sqlite:.state/catalog.db"
    warehouse: str = ".state/warehouse"
    namespace: str = "market"
    user: str | None = None
    password: SecretStr | None = None
    credential: SecretStr | None = None
    token: SecretStr | None = None
    oauth2_server_uri: str | None = None
    scope: str | None = None
    rest_auth_type: Literal["none", "oauth2", "google"] | None = None
    google_user_project: str | None = None
    google_credentials_file: Path | None = None
    access_delegation: Literal["vended-credentials", "remote-signing"] | None = None

    @field_validator("name", "namespace")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.replace("_", "").isalnum():
            raise ValueError(f"must be letters, digits and underscores, got {value!r}")
        return value

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("jdbc:sqlite:", "jdbc:postgresql:", "http://", "https://")):
            raise ValueError(f"expected jdbc:sqlite:, jdbc:postgresql: or an http(s) REST URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _uri_fits_type(self) -> CatalogSettings:
        is_rest_url = self.uri.startswith(("http://", "https://"))
        if self.type == "rest" and not is_rest_url:
            raise ValueError(f"catalog.type 'rest' needs an http(s) URL as catalog.uri, got {self.uri!r}")
        if self.type == "jdbc" and is_rest_url:
            raise ValueError(f"catalog.uri {self.uri!r} is a REST URL: set catalog.type = 'rest'")
        if self.rest_auth_type == "google" and self.type != "rest":
            raise ValueError("catalog.rest_auth_type 'google' is for a REST catalog (catalog.type = 'rest')")
        return self


class GcsSettings(_Section):
    """Google Cloud Storage access. ``endpoint`` is set only for an emulator."""

    project: str | None = None
    endpoint: str | None = None
    credentials_file: Path | None = None


class BigQuerySettings(_Section):
    project: str = "local-project"
    dataset: str = "market"
    location: str = "US"
    endpoint: str | None = None
    credentials_file: Path | None = None


SYMBOL_RULE = "1-32 characters of A-Z a-z 0-9 . : / ^ _ -"
_SYMBOL = TypeAdapter(Symbol)


def symbols_problem(symbols: list[str]) -> str | None:
    """Why a producer cannot subscribe to these symbols, or None: it would run with none, or
    subscribe to ones the message model refuses (every trade of such a symbol goes to quarantine)."""
    if not symbols:
        return "no symbols given"
    bad = [symbol for symbol in symbols if not _is_symbol(symbol)]
    return f"not valid symbols ({SYMBOL_RULE}): {', '.join(map(repr, bad))}" if bad else None


def _is_symbol(text: str) -> bool:
    try:
        _SYMBOL.validate_python(text)
    except ValidationError:
        return False
    return True


def websocket_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a WebSocket server's address, or None. The text never quotes the URL,
    which may carry a token."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:  # a port out of range or not a number
        return f"not a valid URL: {error}"
    if parts.scheme not in ("ws", "wss"):
        return f"the scheme must be ws:// or wss://, not {parts.scheme + '://' if parts.scheme else 'none'}"
    if not parts.hostname:
        return "the URL names no host"
    if port == 0:
        return "port 0 is not a server's port"
    return None


# The largest Finnhub frame the producer reads (a busy open on thousands of symbols batches tens of
# thousands of trades, ~71 bytes each, into one frame); a larger one closes the connection and is
# lost. Parsing holds ~27 bytes of Python objects per byte of frame: ~430 MiB at 16 MiB.
FINNHUB_MAX_FRAME_BYTES = 16 * 2**20


class FinnhubSettings(_Section):
    url: str = "wss://ws.finnhub.io"
    token: SecretStr | None = None
    symbols: list[str] = Field(default_factory=lambda: ["AAPL", "MSFT", "AMZN", "NVDA", "TSLA"])
    max_frame_bytes: int = Field(default=FINNHUB_MAX_FRAME_BYTES, ge=2**16)

    @field_validator("url")
    @classmethod
    def _a_websocket_url(cls, url: str) -> str:
        if problem := websocket_url_problem(url):
            raise ValueError(problem)
        return url

    @field_validator("symbols")
    @classmethod
    def _subscribable(cls, symbols: list[str]) -> list[str]:
        if problem := symbols_problem(symbols):
            raise ValueError(problem)
        return symbols


class VnstockSettings(_Section):
    source: str = "VCI"
    base_url: str | None = None
    symbols: list[str] = Field(default_factory=lambda: ["VCB", "FPT", "HPG"])
    poll_interval_seconds: float = Field(default=30.0, gt=0)


class StreamingSettings(_Section):
    trigger_seconds: float = Field(default=5.0, ge=0)
    allowed_lateness_seconds: float = Field(default=60.0, ge=0)
    max_offsets_per_trigger: int | None = Field(default=None, ge=1)
    shuffle_partitions: int = Field(default=2, ge=1)
    # How often the raw-trades and bars jobs fold their appended (day-only) files into day-symbol
    # files, in the background (lakehouse.fold); 0 = never (maintenance then does it for closed days).
    fold_interval_seconds: float = Field(default=300.0, ge=0)
    checkpoint_dir: str = ".state/checkpoints"
    # How long one lookup of the Kafka source's offsets waits before it starts again on fresh
    # metadata (Kafka's default.api.timeout.ms is 60 s: a killed partition leader stalled every
    # stream that long). The source keeps trying for about three minutes in all, as with Kafka's
    # defaults, before the query fails (lakehouse.streaming.read_kafka).
    kafka_offsets_timeout_seconds: float = Field(default=15.0, ge=1)
    # A stream whose checkpoint points at messages Kafka has deleted (retention ran out while it was
    # stopped) stops and names them; true: record them as a 'kafka' gap in feed_events and go on
    # from the oldest messages Kafka holds (lakehouse.kafka_loss).
    accept_kafka_loss: bool = False
    # FAIR scheduler pools of the queries sharing one application (empty: Spark's defaults).
    scheduler_pools_file: str = "conf/fairscheduler.xml"


class SparkSettings(_Section):
    """The Spark driver's own servers. On local masters they listen on ``local_bind_address`` only
    (loopback by default: on a shared host no one else opens a job's UI); on a cluster the cluster
    manager decides."""

    ui_enabled: bool = True
    local_bind_address: BindAddress = "127.0.0.1"


class StatusSettings(_Section):
    """Thresholds of ``lakehouse status``: beyond any of them it reports STALE and exits 1.

    A threshold of 0 turns its check off (the part is still shown). Event ages are judged only for
    ``fresh_tables``: a table such as ``late_trades`` may rightly stay empty for days.
    """

    fresh_tables: list[str] = Field(default_factory=lambda: ["trades", "bars_1m"])
    max_event_age_seconds: float = Field(default=900.0, ge=0)
    max_kafka_lag_messages: int = Field(default=10_000, ge=0)
    max_maintenance_age_seconds: float = Field(default=3_600.0, ge=0)
    max_sync_age_seconds: float = Field(default=0.0, ge=0)
    # A data file below this size counts as small (what maintenance's compaction exists to merge).
    small_file_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    kafka_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("fresh_tables")
    @classmethod
    def _known_tables(cls, value: list[str]) -> list[str]:
        """A misspelt name judged nothing and status said all was fresh on stale data."""
        from lakehouse.tables import ALL_TABLES  # pyiceberg's schema types: only when validating

        known = [table.name for table in ALL_TABLES]
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(f"unknown table(s) {', '.join(unknown)}; the tables are {', '.join(known)}")
        return value


class MetricsSettings(_Section):
    """Prometheus endpoints, always on 127.0.0.1. Port 0 means no endpoint (the default, so tests
    and several processes on one machine never clash); each process kind has its own port, and two
    processes of one kind need two values. A port already in use ends the second process at start
    (``lakehouse.ops.metrics_http``)."""

    finnhub_port: int = Field(default=0, ge=0, le=65535)
    vnstock_port: int = Field(default=0, ge=0, le=65535)
    streaming_port: int = Field(default=0, ge=0, le=65535)
    maintenance_port: int = Field(default=0, ge=0, le=65535)
    sync_port: int = Field(default=0, ge=0, le=65535)


class DashboardSettings(_Section):
    """The dashboard's pipeline view: how it reads producers' metrics and Kafka without stalling a poll.

    The timeouts are short because the page asks every poll; a part that does not answer within
    them is shown as down, and asked again at the next poll."""

    rate_window_seconds: float = Field(default=10.0, gt=0)  # messages/s is averaged over this
    metrics_timeout_seconds: float = Field(default=2.0, gt=0)
    kafka_timeout_seconds: float = Field(default=3.0, gt=0)


class Settings(_Section):
    local: LocalSettings = LocalSettings()
    kafka: KafkaSettings = KafkaSettings()
    catalog: CatalogSettings = CatalogSettings()
    gcs: GcsSettings = GcsSettings()
    bigquery: BigQuerySettings = BigQuerySettings()
    finnhub: FinnhubSettings = FinnhubSettings()
    vnstock: VnstockSettings = VnstockSettings()
    streaming: StreamingSettings = StreamingSettings()
    spark: SparkSettings = SparkSettings()
    status: StatusSettings = StatusSettings()
    metrics: MetricsSettings = MetricsSettings()
    dashboard: DashboardSettings = DashboardSettings()

    def path(self, relative: Path | str) -> Path:
        """Resolve a configured path against the project root (absolute paths pass through)."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else PROJECT_ROOT / candidate

    @property
    def state_dir(self) -> Path:
        return self.path(self.local.state_dir)

    def with_streaming(self, **changes: Any) -> Settings:
        """These settings with ``changes`` to the streaming section (another checkpoint, trigger...)."""
        return self.model_copy(update={"streaming": self.streaming.model_copy(update=changes)})


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``LAKEHOUSE__KAFKA__PARTITIONS=8`` into ``{"kafka": {"partitions": "8"}}``.

    List settings take a comma-separated value (``LAKEHOUSE__FINNHUB__SYMBOLS=AAPL,MSFT``).
    """
    overrides: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__") if part]
        if len(path) != 2:
            raise SettingsError(f"environment variable {name} must look like {ENV_PREFIX}SECTION__KEY")
        section, key = path
        field = Settings.model_fields.get(section)
        section_type = field.annotation if field else None
        key_field = section_type.model_fields.get(key) if isinstance(section_type, type) else None
        is_list = key_field is not None and "list[" in str(key_field.annotation)
        overrides.setdefault(section, {})[key] = (
            [item.strip() for item in value.split(",") if item.strip()] if is_list else value
        )
    return overrides


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        setting = ".".join(str(part) for part in problem["loc"])
        if len(problem["loc"]) < 2:  # a rule across a section's settings: no one variable to name
            lines.append(f"settings [{setting}] (env {ENV_PREFIX}{setting.upper()}__*): {problem['msg']}")
            continue
        env_name = ENV_PREFIX + "__".join(str(part).upper() for part in problem["loc"][:2])
        lines.append(f"setting '{setting}' (env {env_name}): {problem['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _config_path(config_file: Path | None, environ: Mapping[str, str]) -> tuple[Path, str]:
    """The config file to read and where its name came from (for messages).

    An empty ``LAKEHOUSE_CONFIG`` is an error rather than "unset": ``Path("")`` is the working
    directory, and a variable someone set means a file they wanted read.
    """
    if config_file is not None:
        return _resolved(config_file), ""
    if CONFIG_FILE_ENV not in environ:
        return DEFAULT_CONFIG_FILE, ""
    named = environ[CONFIG_FILE_ENV].strip()
    if not named:
        raise SettingsError(f"{CONFIG_FILE_ENV} is set but empty: name a config file, or unset it to read "
                            f"{DEFAULT_CONFIG_FILE}")
    return _resolved(Path(named).expanduser()), f" (from {CONFIG_FILE_ENV})"


def _resolved(config_file: Path) -> Path:
    """A relative config path against the working directory, else the project root (a notebook
    kernel runs in ``notebooks/`` yet ``LAKEHOUSE_CONFIG=conf/gcp.toml`` means the project's file)."""
    if config_file.is_absolute():
        return config_file
    in_cwd = Path.cwd() / config_file
    in_root = PROJECT_ROOT / config_file
    return in_root if not in_cwd.exists() and in_root.exists() else in_cwd


def _read_toml(config_file: Path, origin: str) -> dict[str, Any]:
    """The file's values; every way a file can be unreadable is one ``SettingsError`` line."""
    if not config_file.is_file():
        what = "is not a regular file" if config_file.exists() else "does not exist"
        raise SettingsError(f"config file {config_file}{origin} {what}")
    try:
        return tomllib.loads(config_file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {config_file}{origin} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        problem = f"{exc.reason} at byte {exc.start}"
        raise SettingsError(f"config file {config_file}{origin} is not UTF-8 text: {problem}") from None
    except OSError as exc:
        raise SettingsError(f"config file {config_file}{origin} cannot be read: {exc.strerror or exc}") from None


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build and validate the settings; raise ``SettingsError`` naming every bad setting.

    ``config_file`` (else ``LAKEHOUSE_CONFIG``, else ``conf/lakehouse.toml``) must be a readable
    UTF-8 TOML file; only the default may be absent (embedded defaults). A relative path is looked
    up in the working directory first, then under the project root.
    """
    environ = os.environ if environ is None else environ
    config_file, origin = _config_path(config_file, environ)
    absent_default = config_file == DEFAULT_CONFIG_FILE and not config_file.exists()
    file_values = {} if absent_default else _read_toml(config_file, origin)
    try:
        return Settings.model_validate(_merge(file_values, _env_overrides(environ)))
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
