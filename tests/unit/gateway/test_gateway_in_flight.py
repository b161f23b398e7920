"""The writes in flight that hold Consistent-Through back: the oldest is always the true minimum."""

from __future__ import annotations

import random

from producers.gateway.writes import InFlight


def test_oldest_is_the_minimum_of_the_writes_still_in_flight_whatever_the_order():
    rng = random.Random(7)
    tracked = InFlight()
    truth: dict[int, int] = {}
    token = 0
    for _ in range(20_000):
        if truth and rng.random() < 0.5:
            gone = rng.choice(list(truth))
            del truth[gone]
            tracked.remove(gone)
        else:
            token += 1
            # Mostly rising clock readings, sometimes earlier ones (a clock stepped back).
            truth[token] = 1_000_000 + token * 3 - rng.choice((0, 0, 0, 500))
            tracked.add(token, truth[token])
        assert tracked.oldest_ms() == min(truth.values(), default=None)
        assert len(tracked) == len(truth)


def test_finished_writes_do_not_pile_up():
    tracked = InFlight()
    tracked.add(0, 5)  # one long write keeps the top of the heap busy
    for token in range(1, 10_000):
        tracked.add(token, 10 + token)
        tracked.remove(token)
    assert tracked.oldest_ms() == 5
    assert len(tracked._heap) <= 2 * len(tracked) + 65
    tracked.remove(0)
    assert tracked.oldest_ms() is None
