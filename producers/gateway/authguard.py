"""Who may even try: request rates, credential-guessing limits and lock-outs (429 + Retry-After).

Checking a secret costs one scrypt (~50 ms of a core, on purpose), so unchecked
guessing was a way to take the CPU from every school. Three defences, all in memory of
one gateway process and all answered 429 with ``Retry-After``:

- request rates: a token bucket per client address (every request) and per school key
  (requests that authenticated; counting failed ones would let anyone exhaust a
  school's budget by sending its key with a wrong secret);
- verification attempts: a pair that the verified-credential cache does not already
  know costs a scrypt; those are rate-limited per address and per key, and at most
  ``max_verifying`` wait for the hashing at once (the rest are refused at once);
- lock-out: ``lockout_failures`` failed attempts within ``lockout_window_s`` from one
  address, or for one key, stop further *verification* from that address / for that
  key for ``lockout_s``. A pair already verified and cached still works, so a lock-out
  caused by someone else never stops a school whose client already signed in.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from schemas import metrics

from .protocol import XapiError


@dataclass(frozen=True)
class AuthLimits:
    """Defaults fit a school's LMS posting hard from one address; 0 turns a rate limit off."""

    requests_per_s_per_address: float = 2_000.0
    requests_per_s_per_key: float = 2_000.0
    # Burst = this many seconds of the rate.
    burst_s: float = 2.0
    # Scrypt-costing verification attempts (cache misses).
    attempts_per_s: float = 2.0
    attempts_burst: int = 10
    max_verifying: int = 16
    lockout_failures: int = 10
    lockout_window_s: float = 60.0
    lockout_s: float = 300.0
    # How many addresses/keys are remembered (least recently seen forgotten first).
    max_tracked: int = 100_000


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


class _Buckets:
    """Token buckets by name; ``take`` returns 0 when allowed, else seconds until it would be."""

    def __init__(self, rate: float, burst: float, max_tracked: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_tracked = max_tracked
        self.clock = clock
        self._by_name: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, name: str) -> float:
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        b = self._by_name.get(name)
        if b is None:
            b = self._by_name[name] = _Bucket(self.burst, now)
            if len(self._by_name) > self.max_tracked:
                self._by_name.popitem(last=False)
        else:
            self._by_name.move_to_end(name)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate


class _Failures:
    """Recent failure times by name, and lock-outs that follow too many of them."""

    def __init__(self, limits: AuthLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked: dict[str, float] = {}

    def locked_for(self, name: str) -> float:
        until = self._locked.get(name)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._locked[name]
            return 0.0
        return left

    def failed(self, name: str) -> bool:
        """Count a failure; True if it starts a lock-out."""
        lim = self.limits
        now = self.clock()
        times = self._recent.get(name)
        if times is None:
            times = self._recent[name] = deque()
            if len(self._recent) > lim.max_tracked:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(name)
        times.append(now)
        while times and times[0] <= now - lim.lockout_window_s:
            times.popleft()
        if len(times) >= lim.lockout_failures and name not in self._locked:
            self._locked[name] = now + lim.lockout_s
            times.clear()
            if len(self._locked) > lim.max_tracked:
                self._locked.pop(next(iter(self._locked)))
            return True
        return False


def too_many(rule: str, message: str, retry_after_s: float) -> XapiError:
    seconds = max(1, math.ceil(retry_after_s))
    metrics.GATEWAY_REFUSALS.labels(rule).inc()
    return XapiError(429, rule, f"{message}; retry after {seconds} s", headers={"Retry-After": str(seconds)})


class AuthGuard:
    """The limits above for one gateway; called from its event loop only (not thread-safe)."""

    def __init__(self, limits: AuthLimits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = lim = limits or AuthLimits()
        self._requests_address = _Buckets(lim.requests_per_s_per_address, lim.requests_per_s_per_address * lim.burst_s,
                                          lim.max_tracked, clock)  # fmt: skip
        self._requests_key = _Buckets(lim.requests_per_s_per_key, lim.requests_per_s_per_key * lim.burst_s,
                                      lim.max_tracked, clock)  # fmt: skip
        self._attempts_address = _Buckets(lim.attempts_per_s, lim.attempts_burst, lim.max_tracked, clock)
        self._attempts_key = _Buckets(lim.attempts_per_s, lim.attempts_burst, lim.max_tracked, clock)
        self._failures = _Failures(lim, clock)
        self.verifying = 0

    def request(self, address: str) -> None:
        """Every request, before anything else is read of it."""
        wait = self._requests_address.take(address)
        if wait:
            raise too_many("rate.address", "too many requests from this address", wait)

    def authenticated(self, key: str) -> None:
        """A request whose credentials are valid."""
        wait = self._requests_key.take(key)
        if wait:
            raise too_many("rate.key", "too many requests with this key", wait)

    def attempt(self, address: str, key: str) -> None:
        """Before a verification that costs a scrypt (the pair is not in the verified cache)."""
        for name, what in ((f"a:{address}", "this address"), (f"k:{key}", "this key")):
            left = self._failures.locked_for(name)
            if left:
                raise too_many("auth.locked-out", f"too many failed sign-ins for {what}", left)
        if self.verifying >= self.limits.max_verifying:
            raise too_many("auth.busy", "too many sign-ins being checked at once", 1)
        wait = self._attempts_address.take(address)
        if wait:
            raise too_many("auth.rate.address", "too many sign-in attempts from this address", wait)
        wait = self._attempts_key.take(key)
        if wait:
            raise too_many("auth.rate.key", "too many sign-in attempts with this key", wait)

    def failed(self, address: str, key: str | None) -> None:
        """A request whose credentials were refused (missing, unknown key or wrong secret)."""
        for name in (f"a:{address}", f"k:{key}") if key is not None else (f"a:{address}",):
            if self._failures.failed(name):
                metrics.GATEWAY_REFUSALS.labels("auth.lockout-started").inc()
