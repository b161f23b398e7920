"""A batch's table writes straight to the store and the producer (``streams.faustutil.ChangelogWrites``).

Faust's per-key path (``table[key] = value``) queued every changelog record in its producer
buffer, whose conductor stops handing records to every agent while more than 100 wait: with a
record per learner per batch, the worker's offset commits were held up 3-12 s. What Faust did
per key must still happen: the value in the store of the event's partition, the record in the
changelog partition of that event, the persisted offset noted once acknowledged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from faust.streams import _current_event
from faust.types import TP

from streams.faustutil import ChangelogWrites

from .fakes import Event, Message


@dataclass
class Metadata:
    offset: int


class Store(dict):
    """Keeps each value under the partition of Faust's current event, as RocksDB's store does."""

    def __setitem__(self, key: bytes, value: bytes) -> None:
        super().__setitem__((_current_event.get()().message.partition, key), value)


class Table:
    def __init__(self) -> None:
        self.data = Store()
        self.noted: list[tuple[TP, int]] = []
        self.changelog_topic = type("T", (), {"get_topic_name": staticmethod(lambda: "app-state-changelog")})()

    def note_changelog_offset(self, tp: TP, offset: int) -> None:
        self.noted.append((tp, offset))


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, int]] = []
        self.deliveries: list[asyncio.Future] = []

    async def send(self, topic: str, key: bytes, value: bytes, partition: int, _ts: Any, _headers: Any) -> asyncio.Future:
        self.sent.append((topic, key, value, partition))
        delivery = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery


def event(partition: int) -> Event:
    return Event(Message("src", partition, 0, b"k", b"v"))


def test_changelog_writes_put_each_key_in_its_partition_send_its_record_and_note_the_last_offset():
    table, producer = Table(), Producer()
    app = type("App", (), {"producer": producer})()
    writes = [(event(3), b"a", b"1"), (event(5), b"b", b"2"), (event(3), b"c", b"3")]

    async def scenario() -> None:
        await ChangelogWrites(app, table).write(writes)
        assert table.noted == [], "nothing is noted before Kafka acknowledged it"
        for n, delivery in enumerate(producer.deliveries):
            delivery.set_result(Metadata(100 + n))
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert table.data == {(3, b"a"): b"1", (5, b"b"): b"2", (3, b"c"): b"3"}
    assert producer.sent == [("app-state-changelog", b"a", b"1", 3), ("app-state-changelog", b"b", b"2", 5),
                             ("app-state-changelog", b"c", b"3", 3)]
    # Each partition's last record stands for the ones before it (acknowledged in order).
    assert sorted(table.noted) == [(TP("app-state-changelog", 3), 102), (TP("app-state-changelog", 5), 101)]


def test_changelog_writes_note_no_offset_for_a_failed_delivery():
    table, producer = Table(), Producer()
    app = type("App", (), {"producer": producer})()

    async def scenario() -> None:
        await ChangelogWrites(app, table).write([(event(1), b"a", b"1")])
        producer.deliveries[0].set_exception(RuntimeError("broker gone"))
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert table.noted == []


class RocksStore:
    """The parts of Faust's RocksDB store (faust.stores.rocksdb.Store, rocksdict) the batched
    path uses: a real rocksdict database per partition and the key index."""

    use_rocksdict = True

    def __init__(self, root) -> None:
        self.root = root
        self._dbs: dict[int, Any] = {}
        self._key_index: dict[bytes, int] = {}
        self.writes_per_partition: dict[int, int] = {}

    def _db_for_partition(self, partition: int):
        import rocksdict

        if partition not in self._dbs:
            opts = rocksdict.Options(raw_mode=True)
            opts.create_if_missing(True)
            db = rocksdict.Rdict(str(self.root / str(partition)), options=opts)
            self._dbs[partition] = _CountingDb(db, partition, self.writes_per_partition)
        return self._dbs[partition]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        raise AssertionError("a RocksDB store is written in batches, not key by key")


class _CountingDb:
    def __init__(self, db, partition: int, counts: dict[int, int]) -> None:
        self.db, self.partition, self.counts = db, partition, counts

    def write(self, batch) -> None:
        self.counts[self.partition] = self.counts.get(self.partition, 0) + 1
        self.db.write(batch)

    def get(self, key: bytes):
        return self.db.get(key)


def test_a_rocksdb_store_gets_each_partitions_values_in_one_write_batch(tmp_path):
    # One put per key made RocksDB write its log once per key (~11 µs for a 2 KB value against
    # ~4 µs a key in a batch); a partition's batch is also atomic, so a kill keeps the order
    # the stages' saves rely on (streams.health.stored) within each partition.
    table, producer = Table(), Producer()
    table.data = RocksStore(tmp_path)
    app = type("App", (), {"producer": producer})()
    writes = [(event(3), b"a", b"1"), (event(5), b"b", b"2"), (event(3), b"c", b"3"), (event(3), b"a", b"4")]

    asyncio.run(ChangelogWrites(app, table).write(writes))
    store = table.data
    assert store.writes_per_partition == {3: 1, 5: 1}
    assert (store._dbs[3].get(b"a"), store._dbs[3].get(b"c"), store._dbs[5].get(b"b")) == (b"4", b"3", b"2")
    assert store._dbs[5].get(b"a") is None and store._dbs[3].get(b"b") is None
    assert store._key_index == {b"a": 3, b"b": 5, b"c": 3}
    # Every write still goes to its changelog partition, in order.
    assert [(k, v, p) for _t, k, v, p in producer.sent] == [(b"a", b"1", 3), (b"b", b"2", 5), (b"c", b"3", 3),
                                                           (b"a", b"4", 3)]  # fmt: skip
