"""Operating the lakehouse: what batch jobs record, `lakehouse status`, Prometheus metrics, the
market calendar that schedules the daily work."""
