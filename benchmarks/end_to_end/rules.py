"""The pure parts of the end-to-end benchmark: percentiles, "lag stayed bounded", "the rate held".

No I/O and no clock, so a unit test can pin them (tests/unit/test_bench_end_to_end_rules.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

#: a rate held when at least this share of what was offered was accepted
HELD_SHARE = 0.98


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by the nearest-rank method; None for no values.

    Nearest rank: the smallest value with at least q % of the values at or below it, so
    p100 is the maximum and a p99 of 50 values is their maximum too (no interpolation
    inventing a latency nobody saw).
    """
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def lag_bounded(samples: Sequence[tuple[float, int]], floor: int) -> bool:
    """Whether a consumer group's lag stayed bounded through a step, from ``(time, lag)`` samples.

    Bounded: the lag at the end is within ``floor`` (what one flush or one batch may hold
    back), or it is no higher than the highest lag seen in the first half of the step: a
    backlog that is flat or draining, not one that grows with time. A lag that grows
    steadily ends above everything of the first half and is not bounded. No samples: not
    known to be bounded.
    """
    if not samples:
        return False
    ordered = sorted(samples)
    final = ordered[-1][1]
    if final <= floor:
        return True
    start, end = ordered[0][0], ordered[-1][0]
    middle = start + (end - start) / 2
    first_half = [lag for t, lag in ordered if t <= middle]
    if len(first_half) == len(ordered):  # one sample, or all at one instant: nothing to compare
        return False
    return final <= max(first_half)


def held(offered: int, accepted: int, stages_bounded: Iterable[bool]) -> bool:
    """A rate held: ≥ 98 % of the offered statements accepted and every stage's lag bounded."""
    bounded = list(stages_bounded)
    return offered > 0 and accepted >= HELD_SHARE * offered and bool(bounded) and all(bounded)


def highest_held(steps: Sequence[tuple[float, bool]]) -> float | None:
    """The highest offered rate among ``(rate, held)`` steps that held; None if none did."""
    rates = [rate for rate, ok in steps if ok]
    return max(rates) if rates else None
