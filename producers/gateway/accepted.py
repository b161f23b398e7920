"""Statement ids the gateway accepted but ClickHouse may not show yet.

Conflict detection (same id, different content → 409; same content → no-op) must see
every statement already accepted, but a statement reaches ClickHouse only after Kafka →
sink → insert (about a second). Without this registry two requests with the same id a
moment apart would both be accepted, and the later one could replace the first in the
ReplacingMergeTree: a silent change of an immutable statement.

So each accepted statement is kept here from the moment its request is checked (pending,
before Kafka) until the sink's committed progress (``X-Experience-API-Consistent-Through``)
has passed its ``stored`` time, after which the ClickHouse lookup finds it. The check
and the reservation happen without an ``await`` between them, so on one event loop no
two requests can both reserve an id. Guarantee and limits:

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
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from schemas import metrics


@dataclass
class Entry:
    statement: dict[str, Any]  # as stored (canonical)
    stored_ms: int
    voiding: bool
    # Resolves True (committed to Kafka) or False (not); None once committed.
    settled: asyncio.Future | None


class AcceptedIds:
    """``(school, lower-case id) → Entry``; single-threaded (the event loop's)."""

    def __init__(self, max_entries: int = 200_000, margin_ms: int = 1_000) -> None:
        self.max_entries = max_entries
        self.margin_ms = margin_ms
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._pending_stored: dict[int, int] = {}  # id(future) -> stored_ms of in-flight requests

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, school: str, sid: str) -> Entry | None:
        return self._entries.get((school, sid))

    def reserve(
        self, school: str, items: list[tuple[str, dict[str, Any], bool]], stored_ms: int, settled: asyncio.Future
    ) -> None:
        """Record ``(id, stored statement, is_voiding)`` of one request as pending."""
        for sid, statement, voiding in items:
            self._entries[(school, sid)] = Entry(statement, stored_ms, voiding, settled)
        self._pending_stored[id(settled)] = stored_ms
        self._evict()

    def settle(self, school: str, sids: list[str], settled: asyncio.Future, committed: bool) -> None:
        """The request's outcome is known: keep its ids as accepted, or forget them."""
        self._pending_stored.pop(id(settled), None)
        for sid in sids:
            e = self._entries.get((school, sid))
            if e is None or e.settled is not settled:
                continue
            if committed:
                e.settled = None
            else:
                del self._entries[(school, sid)]

    def oldest_pending_ms(self) -> int | None:
        """``stored`` of the oldest request not yet confirmed by Kafka (caps consistent-through)."""
        return min(self._pending_stored.values(), default=None)

    def prune(self, consistent_through_ms: int | None) -> int:
        """Drop accepted entries ClickHouse now answers for; returns how many were dropped."""
        if consistent_through_ms is None:
            return 0
        limit = consistent_through_ms - self.margin_ms
        dropped = 0
        # Entries are in arrival order, which is stored order within this process.
        while self._entries:
            key, e = next(iter(self._entries.items()))
            if e.settled is not None or e.stored_ms >= limit:
                break
            del self._entries[key]
            dropped += 1
        return dropped

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            key, e = next(iter(self._entries.items()))
            if e.settled is not None:
                # The oldest is still in flight: everything behind it is newer; keep all
                # rather than forget a pending reservation.
                return
            del self._entries[key]
            metrics.GATEWAY_ACCEPTED_EVICTED.inc()
