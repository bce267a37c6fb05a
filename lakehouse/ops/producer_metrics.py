"""Reading the producers' Prometheus endpoints back, for the dashboard's pipeline view.

A producer exports counters only (``producers.metrics``): messages Kafka acknowledged per topic,
reconnects, feed gaps, quarantined records. A rate is therefore a difference of two scrapes, as
Prometheus' ``rate()`` computes it: ``MessageRate`` keeps the scrapes of the last
``window_seconds`` (plus the newest one before them) and divides the messages between the oldest
and the newest by the time between them. A burst of N messages shows as exactly N messages in the
window for as long as a scrape taken before the burst is still in it, whichever scrape the burst
straddled. A counter that went down means the producer restarted: the window starts again there.

Every endpoint is on 127.0.0.1 (``lakehouse.ops.metrics_http``); port 0 in the settings means the
producer exports no metrics, which is a state to show, not an error.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lakehouse.ops.metrics_http import LOOPBACK
from lakehouse.settings import Settings


class MetricsUnavailableError(RuntimeError):
    """The endpoint did not answer, or answered something that is not Prometheus text."""


@dataclass(frozen=True)
class ProducerEndpoint:
    source: str  # finnhub | vnstock
    port: int  # 0: this producer exports no metrics

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/metrics"

    @property
    def setting(self) -> str:
        return f"LAKEHOUSE__METRICS__{self.source.upper()}_PORT"


def producer_endpoints(settings: Settings) -> tuple[ProducerEndpoint, ...]:
    return (ProducerEndpoint("finnhub", settings.metrics.finnhub_port),
            ProducerEndpoint("vnstock", settings.metrics.vnstock_port))


@dataclass(frozen=True)
class ProducerReading:
    """One scrape of one producer; ``scraped_at`` in Unix seconds (the reader's clock)."""

    source: str
    scraped_at: float
    messages_by_topic: Mapping[str, float]
    reconnects: float
    feed_gaps: float
    quarantined: float
    failed: float
    last_message_age_seconds: float | None  # None: the source has sent nothing yet (pings count)
    # What the stall alert judges: seconds since the last trade, or since the start while
    # ``traded`` is False; None: the endpoint exports no trade age.
    last_trade_age_seconds: float | None = None
    traded: bool = False

    @property
    def messages(self) -> float:
        return sum(self.messages_by_topic.values())


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples}
    except ValueError as error:
        raise MetricsUnavailableError(f"not Prometheus metrics: {error}") from error


def reading_from(source: str, samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float],
                 scraped_at: float) -> ProducerReading:
    """The producer's figures out of its parsed samples (names as ``producers.metrics`` exports them)."""
    def single(name: str) -> float:
        return next((v for (n, labels), v in samples.items() if n == name and dict(labels).get("source") == source),
                    0.0)

    def gauge(name: str) -> float | None:
        return next((v for (n, labels), v in samples.items() if n == name and dict(labels).get("source") == source),
                    None)

    by_topic = {dict(labels)["topic"]: value for (name, labels), value in samples.items()
                if name == "lakehouse_producer_messages_total" and dict(labels).get("source") == source}
    return ProducerReading(source, scraped_at, by_topic, single("lakehouse_producer_reconnects_total"),
                           single("lakehouse_producer_feed_gaps_total"),
                           single("lakehouse_producer_quarantined_total"),
                           single("lakehouse_producer_messages_failed_total"),
                           gauge("lakehouse_producer_last_message_age_seconds"),
                           gauge("lakehouse_producer_last_trade_age_seconds"),
                           gauge("lakehouse_producer_last_trade_timestamp_seconds") is not None)


def scrape(endpoint: ProducerEndpoint, timeout_seconds: float, now_seconds: float) -> ProducerReading:
    """GET the endpoint once; ``MetricsUnavailableError`` says why it gave nothing."""
    try:
        with urllib.request.urlopen(endpoint.url, timeout=timeout_seconds) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise MetricsUnavailableError(f"{endpoint.url} did not answer ({reason})") from error
    return reading_from(endpoint.source, parse_metrics(text), now_seconds)


@dataclass
class MessageRate:
    """Messages per second of one producer over a sliding window of scrapes."""

    window_seconds: float
    _readings: deque[ProducerReading] = field(default_factory=deque)

    def add(self, reading: ProducerReading) -> None:
        if self._readings and reading.messages < self._readings[-1].messages:
            self._readings.clear()  # the producer restarted: its counters began again at 0
        self._readings.append(reading)
        # Keep the newest reading older than the window too: it is where the window starts.
        while len(self._readings) > 2 and reading.scraped_at - self._readings[1].scraped_at >= self.window_seconds:
            self._readings.popleft()

    def window(self) -> tuple[float, float] | None:
        """(messages, seconds) between the oldest and newest scrape kept; None before two scrapes."""
        if len(self._readings) < 2:
            return None
        first, last = self._readings[0], self._readings[-1]
        seconds = last.scraped_at - first.scraped_at
        return (last.messages - first.messages, seconds) if seconds > 0 else None


@dataclass(frozen=True)
class ProducerFigures:
    """What the pipeline view shows for one producer: its reading and its windowed rate, or why not."""

    endpoint: ProducerEndpoint
    reading: ProducerReading | None = None
    window: tuple[float, float] | None = None  # (messages, seconds)
    problem: str | None = None

    @property
    def rate(self) -> float | None:
        return None if self.window is None else self.window[0] / self.window[1]


class ProducerWatch:
    """Scrapes every configured producer and keeps each one's rate window between calls."""

    def __init__(self, endpoints: Iterable[ProducerEndpoint], window_seconds: float, timeout_seconds: float) -> None:
        self.endpoints = tuple(endpoints)
        self.timeout_seconds = timeout_seconds
        self._rates = {e.source: MessageRate(window_seconds) for e in self.endpoints}

    def figures(self, now_seconds: float) -> list[ProducerFigures]:
        shown = []
        for endpoint in self.endpoints:
            if not endpoint.port:
                shown.append(ProducerFigures(endpoint, problem=(
                    f"no metrics endpoint configured ({endpoint.setting}=0); set a port and restart the "
                    f"{endpoint.source} producer to see its figures here")))
                continue
            try:
                reading = scrape(endpoint, self.timeout_seconds, now_seconds)
            except MetricsUnavailableError as error:
                shown.append(ProducerFigures(endpoint, problem=(
                    f"metrics endpoint down: {error}. Is the {endpoint.source} producer running?")))
                continue
            rate = self._rates[endpoint.source]
            rate.add(reading)
            shown.append(ProducerFigures(endpoint, reading, rate.window()))
        return shown
