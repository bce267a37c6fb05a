"""Exponential backoff with full jitter, as a pure function of the attempt number.

Jitter keeps a fleet of producers that lost the same upstream from reconnecting in lock-step; the
cap keeps a producer that has been down for an hour retrying every minute, not every day.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial_seconds: float = 0.5
    max_seconds: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5  # fraction of the delay that is randomised

    def delay_seconds(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (0 = first retry); within [ceiling*(1-jitter), ceiling]."""
        ceiling = min(self.max_seconds, self.initial_seconds * self.multiplier ** min(max(attempt, 0), 64))
        draw = (rng or random).random()
        return ceiling * (1.0 - self.jitter * draw)
