"""The dead-letter storm limit shared by the Kafka consumers of ``sinks/`` (sink, notifier).

Dead-lettering one bad record is right; dead-lettering most of a stream is a bad deploy (a
wrong schema, a receiver refusing everything) draining the topic into ``xapi.deadletter``.
So a consumer stops with :class:`~sinks.errors.DeadLetterStorm` once at least ``minimum``
of its last ``window`` outcomes were dead letters and they are more than ``share`` of them.
Thread-safe: the sink records outcomes from its writer thread and its polling thread.
"""

from __future__ import annotations

import threading
from collections import deque

from .errors import DeadLetterStorm


class StormGuard:
    def __init__(self, window: int, minimum: int, share: float, what: str) -> None:
        self.minimum, self.share, self.what = minimum, share, what
        self._recent: deque[bool] = deque(maxlen=window)
        self._lock = threading.Lock()

    def passed(self) -> None:
        """A record went through."""
        with self._lock:
            self._recent.append(False)

    def dead_lettered(self, reason: str) -> None:
        """A record is about to be dead-lettered; raises DeadLetterStorm if that makes a storm."""
        with self._lock:
            self._recent.append(True)
            rejects, window = sum(self._recent), len(self._recent)
        if rejects >= self.minimum and rejects > self.share * window:
            raise DeadLetterStorm(
                f"{rejects} of the last {window} {self.what} were dead-lettered (last: {reason}); "
                f"stopping instead of dead-lettering every one"
            )


__all__ = ["StormGuard"]
