"""A stop signal asks for a stop at the next safe point; a second one, later, stops at once."""

from __future__ import annotations

import signal

from lakehouse.shutdown import StopRequest, Verdict, judge_signal


def test_the_first_signal_asks_for_a_stop_at_the_next_safe_point() -> None:
    assert judge_signal(None, now=100.0) is Verdict.STOP_AT_SAFE_POINT


def test_copies_of_one_request_arriving_together_are_one_request() -> None:
    assert judge_signal(100.0, now=100.4) is Verdict.SAME_REQUEST


def test_a_second_signal_after_the_window_stops_at_once() -> None:
    assert judge_signal(100.0, now=101.5) is Verdict.STOP_NOW


def test_stop_request_sets_once_and_exits_on_a_later_signal() -> None:
    clock = iter([10.0, 10.0, 10.2, 12.0]).__next__
    exits: list[int] = []
    stop = StopRequest("test", clock=clock, exit_now=exits.append)

    assert not stop.is_set()
    assert stop.receive(signal.SIGTERM) is Verdict.STOP_AT_SAFE_POINT
    assert stop.is_set() and stop.wait(0)
    assert stop.receive(signal.SIGTERM) is Verdict.SAME_REQUEST
    assert exits == []
    assert stop.receive(signal.SIGINT) is Verdict.STOP_NOW
    assert exits == [128 + signal.SIGINT]
