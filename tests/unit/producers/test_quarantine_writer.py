"""QuarantineWriter: refused bodies kept with every reason, bounded, never blocking the caller."""

from __future__ import annotations

import threading

import orjson

from schemas.errors import InvalidStatement
from schemas.quarantine import QuarantineRecord
from tests.openedx_shapes import fresh
from producers.quarantine import QuarantineWriter, all_violations


class _Sent:
    def __init__(self, block: threading.Event | None = None) -> None:
        self.records: list[QuarantineRecord] = []
        self.block = block

    def __call__(self, key: bytes, value: bytes):
        if self.block is not None:
            self.block.wait(10)
        record = QuarantineRecord.decode(value)
        assert key == record.school.encode()
        self.records.append(record)


def test_quarantine_record_holds_raw_body_and_every_violation():
    sent = _Sent()
    w = QuarantineWriter(sent, "gateway")
    batch = [fresh("group_and_zero_weight"), fresh("bare_guid_grouping")]
    body = orjson.dumps(batch)
    first = InvalidStatement("objectType.value", "…", "$[0].object.objectType")
    assert w.keep("s-1", "lp_k", "1.0.3", body, first, received_ms=1_767_607_200_000)
    assert w.drain()
    [r] = sent.records
    assert r.body == body and (r.school, r.credential, r.stage, r.state) == ("s-1", "lp_k", "gateway", "refused")
    assert list(zip(r.rules, r.paths)) == [
        ("objectType.value", "$[0].object.objectType"),
        ("result.score.min-max.equal", "$[0].result.score.min"),
        ("activity.id.iri", "$[1].context.contextActivities.grouping[0].id"),
    ]
    w.close()


def test_quarantine_unparseable_body_and_batch_rule_keep_the_first_reason():
    assert [v.rule for v in all_violations(b"{nope", "1.0.3", None)] == ["json.parse"]
    dup = InvalidStatement("statements.id.duplicate", "…", "$[1].id")
    st = fresh("group_object")
    st["object"]["objectType"] = "Activity"
    assert all_violations(orjson.dumps([st, st]), "1.0.3", dup) == [dup]


def test_quarantine_keep_never_blocks_and_bounds_queue_and_school_rate():
    gate = threading.Event()
    sent = _Sent(block=gate)
    w = QuarantineWriter(sent, "gateway", max_queue=3, per_school_per_minute=5)
    kept = [w.keep("s-1", "k", "1.0.3", b"{}", None, received_ms=60_000) for _ in range(10)]
    # Three queued (plus one, if the thread already took it into the blocked send); the
    # rest dropped at once, without waiting for Kafka.
    assert 3 <= kept.count(True) <= 4 and kept == sorted(kept, reverse=True)
    assert w.keep("s-2", "k", "1.0.3", b"{}", None, received_ms=60_000) is False  # queue still full
    gate.set()
    assert w.drain()
    n = len(sent.records)
    kept = [w.keep("s-1", "k", "1.0.3", b"{}", None, received_ms=60_500) for _ in range(10)]
    assert kept.count(True) == 5 - n  # the school's minute allowance
    assert w.keep("s-1", "k", "1.0.3", b"{}", None, received_ms=120_000)  # a new minute
    assert w.drain()
    assert w.keep("s-3", "k", "1.0.3", b"{}", None, received_ms=120_100)  # other schools unaffected
    w.close()
