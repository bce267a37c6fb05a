-- The latest 1-minute bar of each symbol, newest first.
--
-- Table: the BigQuery external table the sync keeps on the Iceberg table `bars_1m` (replace
-- {project} and {dataset} with bigquery.project and bigquery.dataset). Times are UTC; a bar covers
-- [window_start, window_end). A bar of the current minute may still change (late trades within the
-- allowed lateness correct it), and BigQuery shows the snapshot of the sync's last run.
-- To scan less, add e.g. `WHERE window_start >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 DAY)`
-- (the table is partitioned by symbol and day of window_start).
SELECT
  symbol,
  window_start,
  window_end,
  open,
  high,
  low,
  close,
  volume,
  trade_count,
  vwap
FROM `{project}.{dataset}.bars_1m`
WHERE TRUE  -- older BigQuery releases accept QUALIFY only next to WHERE, GROUP BY or HAVING
QUALIFY ROW_NUMBER() OVER (PARTITION BY symbol ORDER BY window_start DESC) = 1
ORDER BY window_start DESC, symbol;
