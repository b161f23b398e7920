"""Coalesced id look-ups (producers.gateway.lookups)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from producers.gateway.lookups import LookupBatcher


def test_lookup_batcher_one_query_per_round_for_concurrent_requests():
    calls = []
    release = threading.Event()
    stored = {"a": {"1": b"one", "3": b"three"}, "b": {"1": b"b-one"}}

    def lookup(school, ids):
        calls.append((school, list(ids)))
        release.wait(5)
        return {i: stored[school][i] for i in ids if i in stored[school]}

    async def main():
        lb = LookupBatcher(lookup)
        first = asyncio.create_task(lb.lookup("a", ["9"]))
        await asyncio.sleep(0.05)  # the first round is now running
        waiting = [asyncio.create_task(lb.lookup("a", [str(i)])) for i in range(5)]
        waiting.append(asyncio.create_task(lb.lookup("b", ["1", "2"])))
        await asyncio.sleep(0.05)
        release.set()
        return await first, await asyncio.gather(*waiting)

    first, rest = asyncio.run(main())
    assert first == {}
    assert rest == [{}, {"1": b"one"}, {}, {"3": b"three"}, {}, {"1": b"b-one"}]
    # Round 1: the first request alone; round 2: everything that queued meanwhile, per school.
    assert calls == [("a", ["9"]), ("a", ["0", "1", "2", "3", "4"]), ("b", ["1", "2"])]


def test_lookup_batcher_store_error_reaches_every_waiter_and_next_round_works():
    fail = [True]

    def lookup(school, ids):
        if fail[0]:
            raise ConnectionError("ClickHouse down")
        return {i: b"x" for i in ids}

    async def main():
        lb = LookupBatcher(lookup)
        results = await asyncio.gather(lb.lookup("a", ["1"]), lb.lookup("a", ["2"]), return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)
        fail[0] = False
        return await lb.lookup("a", ["3"])

    assert asyncio.run(main()) == {"3": b"x"}


def test_lookup_batcher_chunks_large_rounds():
    sizes = []

    def lookup(school, ids):
        sizes.append(len(ids))
        return {}

    asyncio.run(LookupBatcher(lookup, max_ids=4).lookup("a", [str(i) for i in range(10)]))
    assert sizes == [4, 4, 2]


@pytest.mark.parametrize("ids", [[], ()])
def test_lookup_batcher_no_ids_no_query(ids):
    asyncio.run(LookupBatcher(lambda *_: pytest.fail("queried")).lookup("a", ids))
