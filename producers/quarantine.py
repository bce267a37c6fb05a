"""What a producer publishes when a source sends something it cannot turn into a message.

Nothing from a source is dropped silently: the raw text and the reason go to the quarantine topic,
keyed by source, so an operator can see what was rejected and replay it after a fix.
"""

from __future__ import annotations

from lakehouse.messages import QuarantinedInput, Source

__all__ = ["QuarantinedInput", "quarantined"]

RAW_TEXT_LIMIT = 100_000  # characters; a runaway frame must not make a runaway Kafka message


def quarantined(source: Source, raw: str | bytes, reason: str, received_time_ms: int) -> QuarantinedInput:
    """Build a quarantine record, truncating huge payloads and decoding bytes leniently."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    truncated = len(text) > RAW_TEXT_LIMIT
    return QuarantinedInput(
        source=source,
        reason=reason[:2000],
        raw=text[:RAW_TEXT_LIMIT],
        raw_truncated=truncated,
        received_time_ms=max(0, received_time_ms),
    )
