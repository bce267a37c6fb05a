"""``python -m dashboard``: serve the dashboard on 127.0.0.1 over the lakehouse in the settings.

The catalog and warehouse come from ``conf/lakehouse.toml`` and ``LAKEHOUSE__*`` variables, as for
every other part, so the same command serves the embedded demo lakehouse or a GCS/REST one.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from dashboard.app import build_app
from lakehouse.logs import configure_logging
from lakehouse.reading import Lakehouse
from lakehouse.settings import load_settings

HOST = "127.0.0.1"  # loopback only: the page has no authentication

log = logging.getLogger("dashboard")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dashboard", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--port", type=int, default=8050, help="port on 127.0.0.1 (default 8050)")
    parser.add_argument("--poll-seconds", type=float, default=2.0,
                        help="how often the page checks the catalog for new commits (default 2)")
    parser.add_argument("--config", type=Path, default=None, help="settings TOML (default conf/lakehouse.toml)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per poll would bury what matters
    # The page says when Kafka does not answer; kafka-python would log each refused connection, per poll.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    lake = Lakehouse(load_settings(args.config))
    log.info("dashboard over %r on http://%s:%d/ (checks for commits every %.1f s)", lake, HOST, args.port,
             args.poll_seconds)
    build_app(lake, args.poll_seconds).run(host=HOST, port=args.port, debug=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
