-- Daily OHLCV per symbol, rolled up from the 1-minute bars.
--
-- Days are UTC calendar days. For an exchange's own trading day use its time zone, e.g.
-- DATE(window_start, 'America/New_York') for US stocks or 'Asia/Ho_Chi_Minh' for vnstock symbols.
-- open is the first minute's open and close the last minute's close; volume, trade_count and VWAP
-- count only the trades the bars count (the trade-condition rule in lakehouse/conditions.py), so
-- they match the bars, not every print in `trades`.
SELECT
  symbol,
  DATE(window_start) AS day,
  ARRAY_AGG(open ORDER BY window_start ASC LIMIT 1)[OFFSET(0)] AS open,
  MAX(high) AS high,
  MIN(low) AS low,
  ARRAY_AGG(close ORDER BY window_start DESC LIMIT 1)[OFFSET(0)] AS close,
  SUM(volume) AS volume,
  SUM(trade_count) AS trade_count,
  -- vwap * volume of a bar is the sum of price * volume of its trades, so this is exact.
  SAFE_DIVIDE(SUM(vwap * volume), SUM(volume)) AS vwap,
  COUNT(*) AS minute_bars
FROM `{project}.{dataset}.bars_1m`
GROUP BY symbol, day
ORDER BY symbol, day;
