"""vnstock (VCI) polling -> Kafka: trades and vendor bars, with persisted high-water marks.

Pure parts: ``trading_hours``, ``convert``. Edges: ``source`` (the vnstock library), ``watermark``
(a file), ``poller`` (the loop). Named ``vnstock_feed`` so it never shadows the ``vnstock`` library.
"""
