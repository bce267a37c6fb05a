"""What a producer publishes when a source sends something it cannot turn into a message.

Nothing from a source is dropped silently: the raw text and the reason go to the quarantine topic,
keyed by source, so an operator can see what was rejected and replay it after a fix.
"""

from __future__ import annotations

from lakehouse.messages import EARLIEST_EPOCH_MS, QuarantinedInput, Source

__all__ = ["QuarantinedInput", "quarantined"]

RAW_TEXT_LIMIT = 100_000  # characters; a runaway frame must not make a runaway Kafka message


def quarantined(source: Source, raw: str | bytes, reason: str, received_time_ms: int) -> QuarantinedInput:
    """Build a quarantine record, truncating huge payloads and decoding bytes leniently; a receive
    time the contract refuses (a clock before 2000) is raised to its earliest, so the record is
    always built: what the source sent is never lost to the producer's clock."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    truncated = len(text) > RAW_TEXT_LIMIT
    return QuarantinedInput(
        source=source,
        reason=reason[:2000],
        raw=text[:RAW_TEXT_LIMIT],
        raw_truncated=truncated,
        received_time_ms=max(EARLIEST_EPOCH_MS, received_time_ms),
    )
