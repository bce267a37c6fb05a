"""Logging set-up shared by every CLI: one readable line per event, noisy client libraries quieted."""

from __future__ import annotations

import logging


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "py4j", "urllib3", "google", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def describe_error(error: BaseException) -> str:
    """The Java exception's first line (class and message), not the Py4J stack trace."""
    text = str(error)
    for line in text.splitlines():
        if "Exception" in line or "Error" in line:
            text = line.strip()
            break
    return text if len(text) <= 300 else text[:297] + "..."
