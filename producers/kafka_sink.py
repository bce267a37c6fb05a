"""The one Kafka producer both feeds publish through: durable, ordered per symbol, bounded in memory.

Why these settings:
- ``acks=all`` + idempotence: a record counts as delivered only once every in-sync replica has it,
  and the broker drops the duplicates a retry would otherwise create. Idempotence also keeps the
  order of one partition (= one symbol, the key) through retries with up to 5 requests in flight.
- ``linger_ms``/``batch_size``/gzip: one request carries hundreds of trades; there is no flush per
  message (that is what makes a naive producer ~two orders of magnitude slower, see bench/).
- a bounded buffer: while the broker is down, records wait in kafka-python's accumulator, which
  (since kafka-python 3) has no memory bound of its own, so this sink counts the bytes not yet
  acknowledged and, above ``max_pending_bytes``, blocks :meth:`KafkaSink.publish` (the source
  reader) in steps of ``max_block_ms``, logging the back-pressure, instead of growing memory or
  crashing. A caller that wants to give up (shutdown) passes ``should_stop``.
- no delivery timeout (``delivery_timeout_ms`` at its maximum, ~24 days): a record waits for
  the broker however long it is down, bounded by ``max_pending_bytes``. With kafka-python's 120 s
  default, a batch in flight when the broker died expired, the idempotent producer reset its id and
  then sent nothing ever again, even once the broker was back: every later record was lost.
- Records whose delivery failed all the same are re-sent, not dropped: the deterministic trade id
  lets the jobs store a re-sent trade once.
- a spool file (``spool_file``): a stop while Kafka is down keeps the records it has not
  acknowledged there, and the next sink on the same file sends them first. Without it they were
  lost with one ERROR line, written after the 30 s flush, as a supervisor's grace period ended.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, SaslAuthenticationFailedError

from lakehouse.kafka_security import kafka_python_options
from lakehouse.messages import _Message
from lakehouse.settings import Settings

log = logging.getLogger(__name__)


def _lz4_available() -> bool:
    try:
        import lz4.frame  # noqa: F401
    except ImportError:
        return False
    return True


def default_compression() -> str:
    """lz4 when its library is installed (cheaper on CPU), else gzip (stdlib, always there)."""
    return "lz4" if _lz4_available() else "gzip"


@dataclass
class SinkStats:
    """Delivery counters; ``acked``/``failed`` are updated from kafka-python's I/O thread."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    resent: int = 0
    awaiting_resend: int = 0
    pending_bytes: int = 0
    backpressure_waits: int = 0
    blocked_since: float | None = None  # monotonic time the buffer first refused a record
    last_error: str = ""
    acked_by_topic: dict[str, int] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        """Records handed to Kafka and not yet acknowledged (includes ones queued for a re-send)."""
        return self.sent - self.acked - self.failed + self.awaiting_resend


@dataclass(frozen=True)
class SinkConfig:
    bootstrap_servers: str
    client_id: str = "lakehouse-producer"
    linger_ms: int = 20
    batch_size: int = 256 * 1024
    # The memory unacknowledged records may hold, each counted with RECORD_OVERHEAD_BYTES: about
    # 38,000 trades at the default (an outage of seconds to minutes at market rates).
    max_pending_bytes: int = 64 * 1024 * 1024
    max_block_ms: int = 1000  # one step of back-pressure; publish() loops over these steps
    delivery_timeout_ms: int = 2**31 - 1  # never expire a record: see the module docstring
    request_timeout_ms: int = 15_000
    compression_type: str | None = None  # None = default_compression()
    connect_timeout_seconds: float = 60.0
    # kafka-python security options (lakehouse.kafka_security.kafka_python_options): SASL, TLS.
    security: Mapping[str, Any] = field(default_factory=dict)
    # Where close() keeps the records Kafka has not acknowledged; the next sink on it sends them first.
    spool_file: Path | None = None


Record = tuple[str, bytes | None, bytes]  # topic, key, value
# What one pending record costs in memory beyond its key and value: kafka-python's future and
# batch entry, the sink's callbacks and its spool entry. Measured: 100,000 pending trades of 230 B
# grew the process by 169 MB (1,693 B each); counting the bytes alone let a 32 MiB bound hold ~290 MB.
RECORD_OVERHEAD_BYTES = 1_500
# How long a start waits to hand its spooled records to Kafka before it keeps them and goes on.
SPOOL_SEND_PATIENCE_SECONDS = 60.0


def write_spool(path: Path, records: list[Record]) -> None:
    """``records`` as JSON lines (key and value in base64), replacing ``path`` at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w") as out:
        for topic, key, value in records:
            out.write(json.dumps({"topic": topic, "key": None if key is None else base64.b64encode(key).decode(),
                                  "value": base64.b64encode(value).decode()}) + "\n")
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)


def read_spool(path: Path) -> list[Record]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        key = None if entry["key"] is None else base64.b64decode(entry["key"])
        records.append((entry["topic"], key, base64.b64decode(entry["value"])))
    return records


class _LoginRefusals(logging.Handler):
    """Keeps the broker's reason from kafka-python's log when it refuses a SASL login."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Authentication failed" in message:
            self.reason = message[message.index("Authentication failed"):].rstrip(")")


class SinkClosedError(RuntimeError):
    """publish() was asked to give up (shutdown) while the buffer was still full."""


class KafkaSink:
    """Publishes message models (key = symbol) to Kafka; see the module docstring for guarantees."""

    def __init__(self, config: SinkConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.stats = SinkStats()
        self._clock = clock
        self._lock = threading.Lock()
        self._acked = threading.Condition(self._lock)
        self._to_resend: deque[Record] = deque()
        self._unacked: dict[int, Record] = {}  # by send number: what close() spools
        self._sends = 0
        self._replayed: set[int] = set()  # send numbers of spooled records not acknowledged yet
        self._replaying: Path | None = None
        self._last_backpressure_log = 0.0
        self._producer = self._connect()
        self._send_spooled()

    def _send_spooled(self) -> None:
        """Send what an earlier sink spooled. The file is renamed ``.replaying`` first and deleted once
        all of it is acknowledged: a crash before that sends it again (the jobs store a trade once)."""
        spool = self.config.spool_file
        if spool is None:
            return
        replaying = spool.with_name(spool.name + ".replaying")
        records = read_spool(replaying) + read_spool(spool)
        if not records:
            return
        write_spool(replaying, records)
        spool.unlink(missing_ok=True)
        log.warning("sending %d records an earlier run kept in %s (Kafka had not acknowledged them)",
                    len(records), spool)
        self._replaying = replaying
        first = self._sends
        give_up = self._clock() + SPOOL_SEND_PATIENCE_SECONDS
        for index, (topic, key, value) in enumerate(records):
            try:
                self._send(topic, key, value, lambda: self._clock() > give_up)
            except SinkClosedError as exc:  # a topic gone since, or another broker: keep them, start anyway
                write_spool(spool, records[index:])
                log.error("could not send %d spooled records within %.0f s (%s); kept in %s",
                          len(records) - index, SPOOL_SEND_PATIENCE_SECONDS, exc, spool)
                break
        with self._lock:
            self._replayed.update(n for n in range(first, self._sends) if n in self._unacked)
        self._forget_replayed()

    def _forget_replayed(self) -> None:
        if self._replaying is not None and not self._replayed:
            self._replaying.unlink(missing_ok=True)
            self._replaying = None

    def _connect(self) -> KafkaProducer:
        """Create the client, retrying while the broker is unreachable (a producer may start first).

        A broker that refuses the SASL login: kafka-python's bootstrap only logs the broker's reason
        and then times out (its 10 s bootstrap) as if no broker answered. When the reason reached the
        log, this fails after that first bootstrap, without retrying, with
        ``SaslAuthenticationFailedError`` naming it (retrying a wrong password would not help); a
        refusing broker may also just close the socket before the reason is read, so a SASL
        connection that times out says to check the SASL settings.
        """
        deadline = self._clock() + self.config.connect_timeout_seconds
        attempt = 0
        refusals = _LoginRefusals()
        kafka_logger = logging.getLogger("kafka")
        kafka_logger.addHandler(refusals)
        try:
            return self._connect_with_retries(deadline, attempt, refusals)
        finally:
            kafka_logger.removeHandler(refusals)

    def _connect_with_retries(self, deadline: float, attempt: int, refusals: _LoginRefusals) -> KafkaProducer:
        while True:
            try:
                return KafkaProducer(
                    bootstrap_servers=self.config.bootstrap_servers.split(","),
                    client_id=self.config.client_id,
                    acks="all",
                    enable_idempotence=True,
                    retries=2**31 - 1,
                    max_in_flight_requests_per_connection=5,
                    linger_ms=self.config.linger_ms,
                    batch_size=self.config.batch_size,
                    max_block_ms=self.config.max_block_ms,
                    delivery_timeout_ms=self.config.delivery_timeout_ms,
                    request_timeout_ms=self.config.request_timeout_ms,
                    compression_type=self.config.compression_type or default_compression(),
                    bootstrap_timeout_ms=10_000,
                    reconnect_backoff_max_ms=5_000,
                    **self.config.security,
                )
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                if refusals.reason is not None:
                    raise SaslAuthenticationFailedError(
                        f"Kafka at {self.config.bootstrap_servers} refused the login: {refusals.reason} "
                        "(kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username, kafka.sasl_password)"
                    ) from exc
                attempt += 1
                if self._clock() >= deadline:
                    mechanism = self.config.security.get("sasl_mechanism")
                    if mechanism is not None:
                        raise KafkaConnectionError(
                            f"Kafka at {self.config.bootstrap_servers} completed no connection within "
                            f"{self.config.connect_timeout_seconds:.0f} s ({exc}); with SASL {mechanism}, a broker "
                            "that refuses the login often just closes the socket: check kafka.security_protocol, "
                            "kafka.sasl_username and kafka.sasl_password"
                        ) from exc
                    raise
                log.warning(
                    "Kafka at %s unreachable (%s); retry %d", self.config.bootstrap_servers, exc, attempt
                )
                time.sleep(min(5.0, 0.5 * attempt))

    def publish(self, topic: str, message: _Message, should_stop: Callable[[], bool] | None = None) -> None:
        """Queue one message for delivery; blocks (reporting back-pressure) while the buffer is full."""
        self.publish_raw(topic, message.key() or None, message.to_json_bytes(), should_stop)

    def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, should_stop: Callable[[], bool] | None = None
    ) -> None:
        self._resend_failed(should_stop)
        self._send(topic, key, value, should_stop)
        self._forget_replayed()

    def _wait_for_room(self, size: int, should_stop: Callable[[], bool] | None) -> None:
        while True:
            with self._lock:
                if (
                    self.stats.pending_bytes + size <= self.config.max_pending_bytes
                    or self.stats.pending_bytes == 0
                ):
                    return
                self._acked.wait(self.config.max_block_ms / 1000)
                full = self.stats.pending_bytes + size > self.config.max_pending_bytes
            if full:
                self._report_backpressure(BufferError(f"{self.stats.pending_bytes} bytes unacknowledged"))
                if should_stop is not None and should_stop():
                    raise SinkClosedError("gave up queueing a record: the buffer is full")

    def _send(
        self, topic: str, key: bytes | None, value: bytes, should_stop: Callable[[], bool] | None
    ) -> None:
        size = len(value) + len(key or b"") + RECORD_OVERHEAD_BYTES
        self._wait_for_room(size, should_stop)
        while True:
            try:
                future = self._producer.send(topic, key=key, value=value)
            except KafkaTimeoutError as exc:  # no metadata yet: the broker is unreachable
                self._report_backpressure(exc)
                if should_stop is not None and should_stop():
                    raise SinkClosedError(f"gave up queueing a record for {topic}") from exc
                continue
            break
        with self._lock:
            number = self._sends
            self._sends += 1
            self._unacked[number] = (topic, key, value)
            self.stats.sent += 1
            self.stats.pending_bytes += size
            if self.stats.blocked_since is not None:
                log.info(
                    "Kafka accepts records again after %.1fs of back-pressure",
                    self._clock() - self.stats.blocked_since,
                )
                self.stats.blocked_since = None
        future.add_callback(self._on_ack, topic, size, number)
        future.add_errback(self._on_error, topic, key, value, size, number)

    def _report_backpressure(self, exc: Exception) -> None:
        now = self._clock()
        with self._lock:
            self.stats.backpressure_waits += 1
            self.stats.last_error = type(exc).__name__
            if self.stats.blocked_since is None:
                self.stats.blocked_since = now
            blocked_for = now - self.stats.blocked_since
        if now - self._last_backpressure_log >= 5.0:
            self._last_backpressure_log = now
            log.warning(
                "back-pressure: Kafka at %s is not taking records (%s) for %.0fs; %d records pending, "
                "reading from the source is paused",
                self.config.bootstrap_servers,
                type(exc).__name__,
                blocked_for,
                self.stats.pending,
            )

    def _on_ack(self, topic: str, size: int, number: int, _metadata: object) -> None:
        with self._lock:
            self._unacked.pop(number, None)
            self._replayed.discard(number)
            self.stats.acked += 1
            self.stats.pending_bytes -= size
            self._acked.notify_all()
            self.stats.acked_by_topic[topic] = self.stats.acked_by_topic.get(topic, 0) + 1

    def _on_error(self, topic: str, key: bytes | None, value: bytes, size: int, number: int,
                  exc: Exception) -> None:
        with self._lock:
            self._unacked.pop(number, None)  # in _to_resend now, and sent again under a new number
            self._replayed.discard(number)
            self.stats.failed += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            self.stats.awaiting_resend += 1
            self.stats.pending_bytes -= size  # counted again when it is re-sent
            self._acked.notify_all()
        self._to_resend.append((topic, key, value))

    def _resend_failed(self, should_stop: Callable[[], bool] | None) -> None:
        """Re-queue records whose delivery expired; called from the publishing thread only."""
        if not self._to_resend:
            return
        log.warning(
            "re-sending %d records whose delivery failed (%s)", len(self._to_resend), self.stats.last_error
        )
        while self._to_resend:
            topic, key, value = self._to_resend.popleft()
            try:
                self._send(topic, key, value, should_stop)
            except SinkClosedError:
                self._to_resend.appendleft((topic, key, value))
                raise
            with self._lock:
                self.stats.resent += 1
                self.stats.awaiting_resend -= 1

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Wait for every queued record to be acknowledged (re-sending failed ones); True if all were."""
        deadline = None if timeout_seconds is None else self._clock() + timeout_seconds
        while True:
            remaining = None if deadline is None else max(0.0, deadline - self._clock())
            try:
                self._producer.flush(timeout=remaining)
            except KafkaTimeoutError:
                return False
            if not self._to_resend:
                return self.stats.pending == 0
            if deadline is not None and self._clock() >= deadline:
                return False
            self._resend_failed(lambda: deadline is not None and self._clock() >= deadline)

    def close(self, timeout_seconds: float = 20.0) -> bool:
        """Flush and close; returns True when nothing was left undelivered. What Kafka has not
        acknowledged within ``timeout_seconds`` (shorter than a supervisor's usual 30 s grace) goes
        to the spool file when there is one."""
        delivered = self.flush(timeout_seconds)
        if delivered:
            self.stats.blocked_since = None
            self._forget_replayed()
        if not delivered:
            with self._lock:
                left = [*self._unacked.values(), *self._to_resend]
            kept = ""
            if self.config.spool_file is not None:
                # after what the start could not send, if anything: that stays in the file too
                write_spool(self.config.spool_file, read_spool(self.config.spool_file) + left)
                if self._replaying is not None:  # its records are among ``left`` or acknowledged
                    self._replaying.unlink(missing_ok=True)
                kept = f"; kept in {self.config.spool_file}, sent first at the next start"
            log.error(
                "closing with %d records not acknowledged by Kafka (%s)%s",
                len(left),
                self.stats.last_error or "flush timed out",
                kept,
            )
        try:
            self._producer.close(timeout=0 if not delivered else 5)
        except KafkaError as exc:  # closing must never mask the flush result
            log.warning("error while closing the Kafka producer: %s", exc)
        return delivered



def spool_file(settings: Settings, source: str) -> Path:
    """Where a producer of ``source`` keeps what Kafka had not acknowledged when it stopped."""
    return settings.state_dir / "producers" / f"{source}-unacknowledged.jsonl"


def open_sink(settings: Settings, source: str) -> KafkaSink | None:
    """The producer's ``KafkaSink`` for ``source`` (its client id ``<source>-producer``, its spool
    file), or None after logging the one line that says why it could not connect: a refused login,
    or no broker answering."""
    bootstrap = settings.kafka.bootstrap_servers
    try:
        return KafkaSink(SinkConfig(bootstrap_servers=bootstrap, client_id=f"{source}-producer",
                                    security=kafka_python_options(settings), spool_file=spool_file(settings, source)))
    except SaslAuthenticationFailedError as refused:
        log.error("%s", refused)
    except (KafkaConnectionError, KafkaTimeoutError):
        log.error("%s", no_broker_message(bootstrap))
    return None


def no_broker_message(bootstrap_servers: str) -> str:
    """The one line a producer logs when no broker answers at start: what it tried, and what to set."""
    return (f"no Kafka broker answers at {bootstrap_servers} (kafka.bootstrap_servers, "
            "LAKEHOUSE__KAFKA__BOOTSTRAP_SERVERS); for the local one run `make kafka-start`")


def broker_reachable(bootstrap_servers: str, wait_seconds: float, clock: Callable[[], float] = time.monotonic) -> bool:
    """Whether any bootstrap server accepts a TCP connection within ``wait_seconds`` (tried again
    with a short backoff, so a broker that is just starting counts). A producer checks this before
    it starts, so that a wrong address or a broker never started is one clear line at start, not a
    client retrying in the logs forever."""
    import socket

    deadline = clock() + wait_seconds
    pause = 0.2
    while True:
        for server in bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=1.0):
                    return True
            except (OSError, ValueError):
                continue
        if clock() + pause > deadline:
            return False
        time.sleep(pause)
        pause = min(2.0, pause * 2)
