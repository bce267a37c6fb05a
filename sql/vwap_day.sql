-- VWAP over one day: for each symbol and minute of the chosen UTC day, the running VWAP since the
-- day's first trade (the line traders plot against price), ending at the whole day's VWAP.
--
-- Query parameter `day` (DATE, a UTC day): `bq query --use_legacy_sql=false --parameter=day:DATE:2026-01-02`,
-- or, in the console, write DATE '2026-01-02' in place of the parameter. Built on the 1-minute bars
-- so it counts the same trades as the bars (see daily_ohlcv.sql); the filter on window_start lets
-- BigQuery skip the other days' files.
SELECT
  symbol,
  window_start,
  close,
  volume,
  vwap AS minute_vwap,
  SAFE_DIVIDE(SUM(vwap * volume) OVER running, SUM(volume) OVER running) AS running_vwap,
  SUM(volume) OVER running AS running_volume
FROM `{project}.{dataset}.bars_1m`
WHERE window_start >= TIMESTAMP(@day)
  AND window_start < TIMESTAMP_ADD(TIMESTAMP(@day), INTERVAL 1 DAY)
WINDOW running AS (PARTITION BY symbol ORDER BY window_start ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
ORDER BY symbol, window_start;
