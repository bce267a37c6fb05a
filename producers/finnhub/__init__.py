"""Finnhub WebSocket trades -> Kafka. Pure frame parsing in ``parser``, the socket loop in ``client``."""
