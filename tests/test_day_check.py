"""The day check the daily DAGs run after rebuild_bars, on a real pyiceberg catalog (no Spark)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from lakehouse.catalog import table_identifier
from lakehouse.ops.day_check import check_day, main
from lakehouse.reading.synthetic import _arrow, append_rows, bars_from_trades, create_tables, synthetic_trades
from lakehouse.settings import load_settings
from lakehouse.tables import BARS_1M, TRADES

DAY = date(2026, 3, 2)


def lakehouse(state: Path, every_other_trade_in_bars: bool):
    environ = {"LAKEHOUSE__LOCAL__STATE_DIR": str(state), "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{state}/catalog.db",
               "LAKEHOUSE__CATALOG__WAREHOUSE": str(state / "warehouse")}
    settings = load_settings(environ=environ)
    catalog = create_tables(settings, (TRADES, BARS_1M))
    trades = synthetic_trades(("AAPL", "MSFT"), DAY, trades_per_minute=2.0)
    append_rows(catalog.load_table(table_identifier(settings, TRADES)), _arrow(trades, TRADES))
    bars = bars_from_trades(trades.iloc[::2] if every_other_trade_in_bars else trades)
    append_rows(catalog.load_table(table_identifier(settings, BARS_1M)), _arrow(bars, BARS_1M))
    return settings, environ, len(bars)


def test_bars_built_from_every_eligible_trade_pass_the_check(tmp_path: Path, monkeypatch, capsys):
    settings, environ, bar_count = lakehouse(tmp_path, every_other_trade_in_bars=False)
    assert check_day(settings, DAY) == (bar_count, [])
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert main(["--day", DAY.isoformat()]) == 0
    assert f"{DAY}: {bar_count} bars checked against the stored trades, 0 differences" in capsys.readouterr().out


def test_bars_that_missed_trades_fail_the_check_naming_symbol_and_minute(tmp_path: Path):
    settings, _, _ = lakehouse(tmp_path, every_other_trade_in_bars=True)
    _, problems = check_day(settings, DAY, ["AAPL"])
    assert len(problems) == 10  # the first ten differences are listed
    assert all(p.startswith("AAPL 2026-03-02 ") for p in problems)
    assert "trades say" in problems[0] or "no bar" in problems[0]


def test_another_day_has_nothing_to_check(tmp_path: Path):
    settings, _, _ = lakehouse(tmp_path, every_other_trade_in_bars=False)
    assert check_day(settings, date(2026, 3, 3)) == (0, [])
