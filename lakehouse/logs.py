"""Logging set-up shared by every CLI: one readable line per event, noisy client libraries quieted."""

from __future__ import annotations

import logging


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "py4j", "urllib3", "google", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # vnstock's helper library fetches an advert from hq.vnstocks.com when vnstock is imported and
    # logs an ERROR where that host is unreachable (the demo, any machine without the internet); the
    # advert is not ours to show, so neither is its failure.
    logging.getLogger("vnai.scope.promo").setLevel(logging.CRITICAL)


def error_line(error: BaseException) -> str:
    """``Type: message`` on one line: the type once (kafka-python's errors start their message with
    it) and the message's first line (SQLAlchemy's add a line of links)."""
    name, text = type(error).__name__, (str(error).strip().splitlines() or [""])[0]
    return text if text.startswith(name) else f"{name}: {text}"


def describe_error(error: BaseException) -> str:
    """The Java exception's first line (class and message), not the Py4J stack trace."""
    text = str(error)
    for line in text.splitlines():
        if "Exception" in line or "Error" in line:
            text = line.strip().removeprefix(":").strip()  # Py4J starts the Java line with ": "
            break
    return _clipped(text)


def root_cause(error: BaseException) -> str:
    """The deepest ``Caused by:`` of a Java trace carried in ``error`` (a full disk, a read-only
    warehouse, a refused connection), else ``describe_error``: what a failed query's 600-line trace
    comes down to, for the last line an operator reads."""
    causes = [line.strip().removeprefix("Caused by:").strip()
              for line in str(error).splitlines() if line.strip().startswith("Caused by:")]
    return _clipped(causes[-1]) if causes else describe_error(error)


def _clipped(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
