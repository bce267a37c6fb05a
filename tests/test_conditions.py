"""The trade-condition rule, as pure Python (the Spark Column form is checked in test_bars.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lakehouse.conditions import EXCLUDED_CODES, is_bar_eligible

FINNHUB_CODES = [str(code) for code in range(1, 42)]
codes = st.lists(st.sampled_from(FINNHUB_CODES), max_size=6)


def test_regular_and_intermarket_sweep_trades_make_bars() -> None:
    assert is_bar_eligible("finnhub", ["1"])
    assert is_bar_eligible("finnhub", ["1", "8"])


def test_odd_lot_out_of_sequence_and_form_t_trades_do_not_make_bars() -> None:
    assert not is_bar_eligible("finnhub", ["1", "12"])  # odd lot
    assert not is_bar_eligible("finnhub", ["30"])  # sold out of sequence
    assert not is_bar_eligible("finnhub", ["1", "8", "24", "12"])  # after-hours odd lot, as Finnhub sends it


def test_trades_without_conditions_are_eligible() -> None:
    assert is_bar_eligible("finnhub", [])
    assert is_bar_eligible("finnhub", None)


@given(codes)
def test_vnstock_trades_are_always_eligible(conditions: list[str]) -> None:
    assert is_bar_eligible("vnstock", conditions)


@given(codes)
def test_a_finnhub_trade_is_eligible_iff_it_carries_no_excluded_condition(conditions: list[str]) -> None:
    assert is_bar_eligible("finnhub", conditions) == all(code not in EXCLUDED_CODES for code in conditions)


@given(codes, codes)
def test_adding_conditions_never_makes_a_trade_eligible(first: list[str], more: list[str]) -> None:
    if not is_bar_eligible("finnhub", first):
        assert not is_bar_eligible("finnhub", first + more)


@given(codes)
def test_order_and_repetition_of_conditions_do_not_matter(conditions: list[str]) -> None:
    assert is_bar_eligible("finnhub", conditions) == is_bar_eligible("finnhub", sorted(set(conditions)) * 2)
