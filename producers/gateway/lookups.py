"""Coalesced statement-id look-ups: one store query for every request waiting at that moment.

Each write with client-assigned ids asks ClickHouse whether those ids exist (conflict
check). A query costs milliseconds of CPU whatever its size, so one query per request
would cap single-statement POSTs at a few hundred per second. Requests therefore add
their ids to the next round; one worker runs that round's query (per school, in chunks
of ``max_ids``) while the following round accumulates, as group commit does for Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Lookup = Callable[[str, Sequence[str]], dict[str, bytes]]


@dataclass
class _Round:
    done: asyncio.Future
    ids: dict[str, set[str]] = field(default_factory=dict)  # school -> ids


class LookupBatcher:
    """``await lookup(school, ids)``: stored JSON of the ids that exist; the store call runs in a thread."""

    def __init__(self, lookup: Lookup, max_ids: int = 5_000) -> None:
        self._lookup = lookup
        self.max_ids = max_ids
        self._next: _Round | None = None
        self._worker: asyncio.Task | None = None

    async def lookup(self, school: str, ids: Sequence[str]) -> dict[str, bytes]:
        if not ids:
            return {}
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = _Round(loop.create_future())
        rnd = self._next
        rnd.ids.setdefault(school, set()).update(ids)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        found: dict[str, dict[str, bytes]] = await asyncio.shield(rnd.done)
        mine = found.get(school, {})
        return {sid: mine[sid] for sid in ids if sid in mine}

    async def _drain(self) -> None:
        while self._next is not None:
            rnd, self._next = self._next, None
            try:
                result: dict[str, dict[str, bytes]] = {}
                for school, ids in rnd.ids.items():
                    ordered = sorted(ids)
                    found: dict[str, bytes] = {}
                    for i in range(0, len(ordered), self.max_ids):
                        found.update(await asyncio.to_thread(self._lookup, school, ordered[i : i + self.max_ids]))
                    result[school] = found
            except Exception as err:  # noqa: BLE001 - every request of this round gets the store's error
                rnd.done.set_exception(err)
            else:
                rnd.done.set_result(result)
