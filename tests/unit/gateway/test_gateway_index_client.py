"""The gateway's grouped access to the accepted-id index, on a real SQLite store."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager

from producers.gateway.idindex import IndexClient
from producers.lrsstore.statement_index import SqlStatementIndex
from schemas.lrs_store import AcceptedStatement, Claim, Holder

A = Holder("gw", "run-1", 1)
B = Holder("gw", "run-1", 2)


def _counting_transactions(index: SqlStatementIndex) -> list[bool]:
    """Every write transaction the store runs from now on appends to the list returned."""
    opened: list[bool] = []
    real = index.db.transaction

    @contextmanager
    def transaction(read_only: bool = False):
        opened.append(read_only)
        with real(read_only) as cur:
            yield cur

    index.db.transaction = transaction  # type: ignore[method-assign]
    return opened


def test_gateway_index_client_confirms_and_reserves_queued_together_in_one_transaction(tmp_path):
    index = SqlStatementIndex.open(f"sqlite:///{tmp_path / 'store.db'}")
    client = IndexClient(index)

    async def scenario() -> dict:
        assert await client.reserve(Claim("s", A, ["a1", "a2"]), 1_000, 0) == {}
        opened = _counting_transactions(index)
        accepted = [AcceptedStatement(sid, b'{"id":"%s"}' % sid.encode(), 1_000, "l1") for sid in ("a1", "a2")]
        confirmed, reserved = await asyncio.gather(
            client.confirm("s", A, accepted, 1_005), client.reserve(Claim("s", B, ["a1", "b1"]), 1_006, 0)
        )
        assert confirmed is None
        assert opened == [False]  # one write transaction for both (one commit, not two)
        return reserved

    try:
        reserved = asyncio.run(scenario())
        # The confirm went first: B finds a1 accepted, and b1 is B's.
        assert set(reserved) == {"a1"} and reserved["a1"].accepted
        assert index.get("s", ["b1"])["b1"].holder == B
    finally:
        index.close()


def test_gateway_index_client_reserves_alone_and_confirms_alone(tmp_path):
    index = SqlStatementIndex.open(f"sqlite:///{tmp_path / 'store.db'}")
    client = IndexClient(index)

    async def scenario() -> None:
        assert await client.reserve(Claim("s", A, ["x"]), 1_000, 0) == {}
        await client.confirm("s", A, [AcceptedStatement("x", b"{}", 1_000, "l1")], 1_002)
        again = await client.reserve(Claim("s", B, ["x"]), 1_003, 0)
        assert again["x"].accepted and again["x"].acked_ms == 1_002

    try:
        asyncio.run(scenario())
    finally:
        index.close()
