"""Which offset the worker commits: past transaction markers at once, never past unprocessed records.

The gateway writes each request in a Kafka transaction, so a browser's single-statement
POSTs leave a commit marker after every record (records at even offsets, markers at odd).
faust-streaming 0.15 commits only the first run of consecutive acknowledged offsets, and
its gap bookkeeping puts each record's offset in twice: a commit moved one marker at a time,
so the group's committed offset fell further behind with every request (measured: ~1 per
partition per commit interval) while the bookkeeping lists grew without end.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from intervaltree import IntervalTree

from streams.transport import ReadCommittedConsumer

TP0 = TP("xapi.statements", 0)


@dataclass(eq=False)
class Msg:
    tp: TP
    offset: int
    acked: bool = False


class Bookkeeping:
    """The attributes Faust's consumer keeps per partition, fed as its fetch loop and acks do."""

    # Faust's own helpers, for the consumer classes' methods that call them.
    _new_offset = FaustConsumer._new_offset
    _should_commit = FaustConsumer._should_commit
    commits_stopped = None

    def __init__(self, committed: int | None = None) -> None:
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._gap = defaultdict(IntervalTree)
        self._committed_offset = defaultdict(lambda: None)
        self._committed_offset[TP0] = committed
        self._unacked_messages: set[Msg] = set()
        self._read_offset: dict[TP, int | None] = defaultdict(lambda: committed)

    def deliver(self, offset: int, add_gap=FaustConsumer._add_gap) -> Msg:
        """Faust's fetch loop (gap between read offsets, recorded by ``add_gap``: Faust's, or the
        worker consumer's) and the stream's tracking of the message."""
        r_offset = self._read_offset[TP0]
        if r_offset is None or offset >= r_offset:
            if offset - (r_offset or 0) > 1 and r_offset:
                asyncio.run(add_gap(self, TP0, r_offset + 1, offset))
            self._read_offset[TP0] = offset
        msg = Msg(TP0, offset)
        self._unacked_messages.add(msg)
        return msg

    def ack(self, msg: Msg) -> None:
        msg.acked = True
        committed = self._committed_offset[TP0]
        if (committed is None or msg.offset >= committed) and msg.offset not in self._acked_index[TP0]:
            self._unacked_messages.discard(msg)
            self._acked_index[TP0].add(msg.offset)
            self._acked[TP0].append(msg.offset)

    def commit(self, consumer_class=ReadCommittedConsumer) -> int | None:
        offsets = consumer_class._filter_committable_offsets(self, [TP0])
        if TP0 in offsets:
            self._committed_offset[TP0] = offsets[TP0]
        return offsets.get(TP0)


def single_statement_transactions(book: Bookkeeping, first: int, count: int) -> None:
    for i in range(count):
        book.ack(book.deliver(first + 2 * i))  # a record, then its transaction's marker


def test_one_commit_passes_every_marker_after_processed_records():
    book = Bookkeeping()
    single_statement_transactions(book, 0, 200)
    assert book.commit() == 399  # the last record is 398; only its marker lies beyond
    # Bookkeeping below the committed offset is gone (it grew without end before).
    assert not book._acked[TP0] and not book._acked_index[TP0]
    assert not book._gap[TP0].overlap(0, 399)


def test_after_a_restart_at_a_marker_the_next_commit_moves_on():
    # The previous process committed 11: offset 11 is a marker, the next record 12.
    book = Bookkeeping(committed=11)
    single_statement_transactions(book, 12, 50)
    assert book.commit() == 12 + 2 * 49 + 1


def test_an_aborted_transaction_right_after_the_first_record_does_not_stop_commits():
    # 0 committed record, 1-2 aborted records, 3 abort marker, 4 record, 5 marker. Faust
    # records no gap after an offset of 0 (``if gap > 1 and r_offset``).
    book = Bookkeeping()
    book.ack(book.deliver(0))
    book.ack(book.deliver(4))
    assert book.commit() == 5


def test_never_commits_past_a_record_still_being_processed():
    book = Bookkeeping()
    single_statement_transactions(book, 0, 5)  # records 0..8
    pending = book.deliver(10)
    later = book.deliver(12)
    assert book.commit() == 9
    book.ack(later)  # acknowledged out of order: 10 is still open
    assert book.commit() is None
    book.ack(pending)
    assert book.commit() == 13


def test_nothing_new_is_nothing_to_commit():
    book = Bookkeeping(committed=40)
    assert book.commit() is None
    book.ack(book.deliver(40))
    assert book.commit() == 41
    assert book.commit() is None


def test_faust_own_rule_moves_a_few_markers_per_commit():
    """The defect itself, on Faust's own method: why ``ReadCommittedConsumer`` replaces it."""
    book = Bookkeeping()
    single_statement_transactions(book, 0, 200)
    assert [book.commit(FaustConsumer) for _ in range(3)] == [1, 5, 7]


def test_after_a_batch_failed_nothing_more_is_committed():
    """An agent whose batch raised is restarted by Faust and goes on with later records; the
    failed batch's messages may be gone from the in-flight set (it holds them weakly). No
    commit may pass them: the worker stops committing until a restart re-reads from the last
    commit."""
    book = Bookkeeping()
    single_statement_transactions(book, 0, 5)
    assert book.commit() == 9
    ReadCommittedConsumer.stop_commits(book, RuntimeError("delivery failed"))
    single_statement_transactions(book, 10, 5)
    assert book.commit() is None


class _App:
    def __init__(self) -> None:
        self.consumer = Bookkeeping()
        self.stopped: list[BaseException] = []
        self.consumer.stop_commits = self.stopped.append


def test_a_batch_that_raises_stops_commits_and_a_cancelled_one_does_not():
    import pytest

    from streams.faustutil import process_or_stop_commits

    async def fails(_events):
        raise RuntimeError("Kafka did not acknowledge")

    async def cancelled(_events):
        raise asyncio.CancelledError

    app = _App()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(process_or_stop_commits(app, cancelled, []))
    assert app.stopped == []
    with pytest.raises(RuntimeError):
        asyncio.run(process_or_stop_commits(app, fails, []))
    assert [str(e) for e in app.stopped] == ["Kafka did not acknowledge"]


def test_the_worker_keeps_no_gap_list_behind_markers():
    """Faust's gap list serves only its own commit rule, which the worker replaces: its fetch
    loop's ``_add_gap`` (a tree insert and an event-loop round per record behind a marker) keeps nothing."""
    book = Bookkeeping()
    asyncio.run(ReadCommittedConsumer._add_gap(book, TP0, 1, 1))
    asyncio.run(ReadCommittedConsumer._add_gap(book, TP0, 3, 3))
    assert not book._gap[TP0]
    # The commit rule never needed it: records at even offsets, markers at odd, as Faust's loop delivers them.
    for offset in range(0, 20, 2):
        book.ack(book.deliver(offset, ReadCommittedConsumer._add_gap))
    assert book.commit() == 19
