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


def use(monkeypatch, environ: dict[str, str]) -> None:
    for key, value in environ.items():
        monkeypatch.setenv(key, value)


def test_a_day_with_neither_trades_nor_bars_fails_unless_allowed(tmp_path: Path, monkeypatch, capsys):
    """It passed with '0 bars checked': a run against the wrong day or lakehouse reported success."""
    _, environ, _ = lakehouse(tmp_path, every_other_trade_in_bars=False)
    use(monkeypatch, environ)
    assert main(["--day", "2026-03-03"]) == 1
    assert "nothing to check: no eligible trades and no bars on 2026-03-03" in capsys.readouterr().out
    assert main(["--day", "2026-03-03", "--allow-empty"]) == 0
    assert main(["--day", DAY.isoformat(), "--symbol", "NOPE"]) == 1


def test_a_symbol_is_a_value_in_the_filter_never_filter_text(tmp_path: Path):
    """Symbols were pasted into a filter string: a quote crashed pyiceberg's parser, and a crafted
    symbol could widen the check."""
    settings, _, bar_count = lakehouse(tmp_path, every_other_trade_in_bars=False)
    assert check_day(settings, DAY, ["X'Y"]) == (0, [])
    assert check_day(settings, DAY, ["A') or symbol not in ('"]) == (0, [])
    assert check_day(settings, DAY, ["AAPL", "MSFT"]) == (bar_count, [])


def test_a_day_that_cannot_be_checked_is_said_in_one_line_with_exit_2(tmp_path: Path, monkeypatch, capsys):
    environ = {"LAKEHOUSE__LOCAL__STATE_DIR": str(tmp_path), "LAKEHOUSE__CATALOG__URI": f"jdbc:sqlite:{tmp_path}/c.db",
               "LAKEHOUSE__CATALOG__WAREHOUSE": str(tmp_path / "warehouse")}
    use(monkeypatch, environ)
    assert main(["--day", "2099-01-01"]) == 2  # not over yet, like rebuild_bars refuses it
    assert "not over yet" in capsys.readouterr().err
    assert main(["--day", DAY.isoformat()]) == 2  # no tables
    assert "no table to check" in capsys.readouterr().err.strip()
    monkeypatch.setenv("LAKEHOUSE__KAFKA__PARTITIONS", "eight")
    assert main(["--day", DAY.isoformat()]) == 2
    said = capsys.readouterr().err
    assert "Traceback" not in said and "setting 'kafka.partitions' (env LAKEHOUSE__KAFKA__PARTITIONS)" in said
