"""Statement ids the gateway accepted but ClickHouse may not show yet.

Conflict detection (same id, different content → 409; same content → no-op) must see
every statement already accepted, but a statement reaches ClickHouse only after Kafka →
sink → insert (about a second). Without this registry two requests with the same id a
moment apart would both be accepted, and the later one could replace the first in the
ReplacingMergeTree: a silent change of an immutable statement.

So each accepted statement is kept here from the moment its request is checked (pending,
before Kafka) until the sink's committed progress has passed the moment Kafka confirmed
it (the sink's ``caught_up_at``: every record acknowledged before it is written), after
which the ClickHouse lookup finds it. The check and the reservation happen without an
``await`` between them, so on one event loop no two requests can both reserve an id.

The same bookkeeping bounds ``X-Experience-API-Consistent-Through``: a statement stamped
``stored`` here may reach Kafka later than the sink's progress says, so the header never
passes the ``stored`` of the oldest statement still held here. Guarantee and limits:

- exact within one gateway process as long as the sink lags less than the registry holds
  (``max_entries``; evictions of entries the sink has not yet committed are counted in
  ``learnpulse_gateway_accepted_evicted_unsunk_total``);
- not across gateway processes: two gateways receiving the same id within the sink lag
  may both accept it (run one gateway per school, or accept that ClickHouse keeps one);
- a restarted gateway starts empty: a re-post of a statement accepted just before the
  restart and not yet sunk is accepted again (same id: the tables keep one row).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from schemas import metrics


class Entry(NamedTuple):
    """One accepted id. Only atoms inside, so the garbage collector stops tracking it."""

    # The statement as stored is the ``position``-th of the encoded envelope ``envelope``
    # (bytes, shared by its statements): tens of thousands of entries as nested dicts
    # made every full collection walk millions of objects. Decoded only when a re-sent
    # id must be compared.
    envelope: bytes
    position: int
    stored_ms: int
    voiding: bool
    # Token of the request that reserved it while Kafka has not confirmed; 0 afterwards.
    request: int
    # When Kafka confirmed it (epoch ms, this host's clock); 0 while pending.
    acked_ms: int = 0
    # A read found it in ClickHouse: it no longer holds Consistent-Through back.
    in_store: bool = False

    @property
    def statement(self) -> dict[str, Any]:
        return orjson.loads(self.envelope)["statements"][self.position]["statement"]


class AcceptedIds:
    """``(school, lower-case id) → Entry``; single-threaded (the event loop's)."""

    def __init__(
        self,
        max_entries: int = 200_000,
        margin_ms: int = 1_000,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.max_entries = max_entries
        # Allowance for clock skew between this host and the sink's.
        self.margin_ms = margin_ms
        self.clock_ms = clock_ms
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        # In-flight requests: token -> (future resolving True/False when Kafka decided, stored_ms).
        self._requests: dict[int, tuple[asyncio.Future, int]] = {}
        self._tokens = itertools.count(1)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, school: str, sid: str) -> Entry | None:
        return self._entries.get((school, sid))

    def pending(self, entry: Entry) -> asyncio.Future | None:
        """The future of the in-flight request holding ``entry``, or None once committed."""
        if not entry.request:
            return None
        found = self._requests.get(entry.request)
        return found[0] if found is not None else None

    def reserve(
        self, school: str, items: list[tuple[str, tuple[bytes, int], bool]], stored_ms: int, settled: asyncio.Future
    ) -> int:
        """Record ``(id, (encoded envelope, position), is_voiding)`` of one request as pending; returns its token."""
        token = next(self._tokens)
        self._requests[token] = (settled, stored_ms)
        for sid, (envelope, position), voiding in items:
            self._entries[(school, sid)] = Entry(envelope, position, stored_ms, voiding, token)
        self._evict()
        return token

    def settle(self, school: str, sids: list[str], token: int, committed: bool) -> None:
        """The request's outcome is known: keep its ids as accepted, or forget them."""
        self._requests.pop(token, None)
        now = self.clock_ms()
        for sid in sids:
            key = (school, sid)
            e = self._entries.get(key)
            if e is None or e.request != token:
                continue
            if committed:
                self._entries[key] = e._replace(request=0, acked_ms=now)  # keeps its place in arrival order
            else:
                del self._entries[key]

    def confirm(self, school: str, sids: list[str]) -> None:
        """A read of ClickHouse returned these statements: they are readable there."""
        for sid in sids:
            key = (school, sid)
            e = self._entries.get(key)
            if e is not None and not e.request and not e.in_store:
                self._entries[key] = e._replace(in_store=True)  # keeps its place in arrival order

    def oldest_stored_ms(self) -> int | None:
        """``stored`` of the oldest statement held (pending, or not yet known to be in ClickHouse).

        Entries are in arrival order, and ``stored`` is stamped just before reserving, so
        the first entry not yet seen in ClickHouse is the oldest.
        """
        for e in self._entries.values():
            if not e.in_store:
                return e.stored_ms
        return None

    def prune(self, consistent_through_ms: int | None) -> int:
        """Drop entries ClickHouse now answers for (Kafka confirmed them before the sink's
        progress, less the skew margin); returns how many were dropped."""
        if consistent_through_ms is None:
            return 0
        limit = consistent_through_ms - self.margin_ms
        dropped = 0
        while self._entries:
            key, e = next(iter(self._entries.items()))
            if e.request or e.acked_ms >= limit:
                break
            del self._entries[key]
            dropped += 1
        return dropped

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            key, e = next(iter(self._entries.items()))
            if e.request:
                # The oldest is still in flight: everything behind it is newer; keep all
                # rather than forget a pending reservation.
                return
            del self._entries[key]
            metrics.GATEWAY_ACCEPTED_EVICTED.inc()
