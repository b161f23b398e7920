"""The persisted changelog offset of the worker's tables (``streams.faustutil.OffsetCoalescingTable``).

Faust 0.15 writes a table partition's persisted changelog offset to RocksDB once per
acknowledged changelog record (``Collection._on_changelog_sent``): one RocksDB put per table
write. Only the highest acknowledged offset per changelog partition matters (recovery reads
the changelog from there), so the worker's tables write it once per partition for the
acknowledgements that arrive together (one event-loop step), at a rebalance and at stop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import RecordMetadata

from streams.app import TABLES, StreamsParameters, create_app


class Acked:
    """A delivered changelog record as Faust hands it to the table's callback (``FutureMessage``)."""

    def __init__(self, tp: TP, offset: int) -> None:
        self.metadata = RecordMetadata(tp.topic, tp.partition, tp, offset)

    def result(self) -> RecordMetadata:
        return self.metadata


@pytest.fixture
def app(tmp_path):
    return create_app(StreamsParameters(
        bootstrap="127.0.0.1:9", topic_prefix="t.", app_id="changelog-offsets", datadir=tmp_path, web_port=6066,
    ))


def recorded_puts(table: Any) -> list[tuple[TP, int]]:
    """Replace the table's store's ``set_persisted_offset`` (a RocksDB put) with a recorder."""
    puts: list[tuple[TP, int]] = []
    table.data.set_persisted_offset = lambda tp, offset: puts.append((tp, offset))
    return puts


async def produce_response(table: Any, tps: list[TP], first: int, count: int) -> None:
    """``count`` changelog records acknowledged by one produce response, as Faust 0.15 sees them:
    the producer resolves each record's future at once; each future's done callback (Faust's
    ``Topic._on_published``, scheduled by asyncio) calls the table's ``_on_changelog_sent``."""
    loop = asyncio.get_running_loop()
    futures = []
    for i in range(count):
        fut = loop.create_future()
        tp, offset = tps[i % len(tps)], first + i
        fut.add_done_callback(lambda _f, tp=tp, offset=offset: table._on_changelog_sent(Acked(tp, offset)))
        futures.append(fut)
    for fut in futures:
        fut.set_result(None)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_every_table_of_the_worker_writes_its_changelog_offset_once_per_partition_per_produce_response(app):
    tables = list(app.tables.values())
    assert sorted(t.name for t in tables) == sorted(TABLES)

    async def scenario(table: Any) -> list[tuple[TP, int]]:
        puts = recorded_puts(table)
        tps = [TP(table.changelog_topic_name, p) for p in range(2)]
        await produce_response(table, tps, 100, 500)
        await settle()
        assert sorted(puts) == [(tps[0], 598), (tps[1], 599)], f"{table.name}: {len(puts)} puts for 500 records"
        await produce_response(table, tps, 600, 3)
        await settle()
        return puts[2:]

    for table in tables:
        tps = [TP(table.changelog_topic_name, p) for p in range(2)]
        assert sorted(asyncio.run(scenario(table))) == [(tps[0], 602), (tps[1], 601)]


def test_a_late_acknowledgement_never_lowers_the_offset_and_a_rebalance_saves_first(app):
    table = next(iter(app.tables.values()))
    puts = recorded_puts(table)
    tp = TP(table.changelog_topic_name, 3)

    async def scenario() -> None:
        table._on_changelog_sent(Acked(tp, 50))
        table._on_changelog_sent(Acked(tp, 40))  # an earlier record's acknowledgement, late
        # A rebalance (the store closes revoked partitions, recovery reads the offsets) saves first.
        await table.on_rebalance(set(), set(), set())
        assert puts == [(tp, 50)]
        await settle()  # the save scheduled by the first acknowledgement has nothing left
        assert puts == [(tp, 50)]

    asyncio.run(scenario())


def test_the_stop_saves_the_offsets_and_nothing_is_written_after_it(app):
    table = next(iter(app.tables.values()))
    puts = recorded_puts(table)
    tp = TP(table.changelog_topic_name, 0)

    async def scenario() -> None:
        table._on_changelog_sent(Acked(tp, 8))
        await table.on_stop()
        assert puts == [(tp, 8)]
        # An acknowledgement after the store closed: not written (a put would reopen the RocksDB).
        table._on_changelog_sent(Acked(tp, 9))
        await settle()
        assert puts == [(tp, 8)]

    asyncio.run(scenario())
