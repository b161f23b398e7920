"""The gateway's side of the accepted-id index: group commit onto the store's transactions.

Every write reserves its ids before its Kafka transaction and confirms them after it
(``producers.lrsstore.statement_index`` documents the protocol and its crash windows).
A store transaction costs a commit (an fsync on SQLite, a round trip on PostgreSQL)
whatever its size, so the requests that arrive while one is in flight go together in
the next, as the Kafka sender groups transactions: one index transaction per group of
requests, not per request. Store calls run in worker threads; reads use a connection of
their own so that they never queue behind a write transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

from schemas.lrs_store import AcceptedStatement, Claim, Holder, IndexEntry, StatementIndex

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")


class _GroupCommit(Generic[I, R]):
    """``await submit(item)``: runs ``run(items)`` in a thread for every item queued meanwhile."""

    def __init__(self, run: Callable[[list[I]], list[R]]) -> None:
        self._run = run
        self._queued: list[tuple[I, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None

    async def submit(self, item: I) -> R:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._queued.append((item, done))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        # Not shielded: a waiter cancelled cancels only its own future, which the drain
        # then skips (``done()``); the group's transaction is not affected either way.
        return await done

    async def _drain(self) -> None:
        while self._queued:
            group, self._queued = self._queued, []
            try:
                results = await asyncio.to_thread(self._run, [item for item, _ in group])
            except Exception as err:  # noqa: BLE001 - every request of the group gets the store's error
                for _, done in group:
                    if not done.done():
                        done.set_exception(err)
            else:
                for (_, done), result in zip(group, results, strict=True):
                    if not done.done():
                        done.set_result(result)


# A group's write items: ("reserve", (claim, now_ms, stale_before_ms)) or
# ("confirm", (school, holder, statements, acked_ms)).
_Write = tuple[str, tuple]


class IndexClient:
    """Async, grouped access to a :class:`StatementIndex` (``reader`` for reads: may be the same).

    Reservations and confirmations queue together: the requests' confirms and the next
    requests' reserves that arrive while a transaction runs share the next one. Two
    queues each with its own transaction took turns on the store's single writer, a
    commit each, and every request waited for both turns twice (reserving, confirming).
    """

    def __init__(self, index: StatementIndex, reader: StatementIndex | None = None) -> None:
        self.index = index
        self.reader = reader or index
        self._writes = _GroupCommit[_Write, dict[str, IndexEntry] | None](self._run_writes)
        self._release = _GroupCommit[tuple[str, Holder, Sequence[str]], None](self._run_release)

    def _run_writes(self, items: list[_Write]) -> list[dict[str, IndexEntry] | None]:
        reserves = [args for kind, args in items if kind == "reserve"]
        confirms = [args for kind, args in items if kind == "confirm"]
        confirmed = [(school, h, sts) for school, h, sts, _ in confirms]
        acked_ms = max((a for *_, a in confirms), default=0)
        if reserves:
            # One clock for the group: the latest "now" and the earliest stale limit asked.
            claims = [c for c, _, _ in reserves]
            now = max(n for _, n, _ in reserves)
            stale_before = min(s for _, _, s in reserves)
            if confirms:
                reserved = self.index.confirm_and_reserve(confirmed, acked_ms, claims, now, stale_before)
            else:
                reserved = self.index.reserve(claims, now, stale_before)
        else:
            self.index.confirm(confirmed, acked_ms)
            reserved = []
        answers = iter(reserved)
        return [next(answers) if kind == "reserve" else None for kind, _ in items]

    def _run_release(self, items: list[tuple[str, Holder, Sequence[str]]]) -> list[None]:
        self.index.release(items)
        return [None] * len(items)

    async def reserve(self, claim: Claim, now_ms: int, stale_before_ms: int) -> dict[str, IndexEntry]:
        """The entries of the claim's ids not reserved for it (empty: every id is NEW)."""
        return cast(dict[str, IndexEntry], await self._writes.submit(("reserve", (claim, now_ms, stale_before_ms))))

    async def confirm(self, school: str, holder: Holder, statements: Sequence[AcceptedStatement], acked_ms: int) -> None:
        await self._writes.submit(("confirm", (school, holder, statements, acked_ms)))

    async def release(self, school: str, holder: Holder, ids: Sequence[str]) -> None:
        if ids:
            await self._release.submit((school, holder, ids))

    async def get(self, school: str, ids: Sequence[str]) -> dict[str, IndexEntry]:
        return await asyncio.to_thread(self.reader.get, school, ids)

    async def read_one(self, school: str, statement_id: str) -> tuple[IndexEntry | None, bool]:
        return await asyncio.to_thread(self.reader.read_one, school, statement_id)

    async def oldest_unsunk_ms(self, sunk_through_ms: int) -> int | None:
        return await asyncio.to_thread(self.reader.oldest_unsunk_ms, sunk_through_ms)

    async def prune(self, acked_before_ms: int, limit: int) -> int:
        return await asyncio.to_thread(self.index.prune, acked_before_ms, limit)

    async def release_orphans(self, gateway: str, incarnation: str) -> int:
        return await asyncio.to_thread(self.index.release_orphans, gateway, incarnation)
