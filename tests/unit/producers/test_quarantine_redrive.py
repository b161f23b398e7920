"""Re-drive of quarantined records: policy as it is now, derived ids, stored ids skipped, state written back."""

from __future__ import annotations

import orjson

from producers.quarantine_redrive import redrive
from schemas.policy import OPENEDX_RULES, STRICT_POLICY, IngestPolicy
from schemas.quarantine import QuarantineRecord, redrive_statement_id
from tests.openedx_shapes import fresh

TOLERANT = IngestPolicy("tolerant", OPENEDX_RULES)


class _Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict, tuple]] = []
        self.flushes = 0

    def publish(self, school, statement, received_ms=None, violations=()):
        self.sent.append((school, statement, violations))

    def flush(self):
        self.flushes += 1


def _record(body) -> QuarantineRecord:
    return QuarantineRecord.new("edx", "lp_k", "gateway", 1_767_607_200_000, "1.0.3", orjson.dumps(body))


def _run(records, policy, stored=frozenset()):
    pub, back = _Publisher(), []
    counts = redrive(records, lambda r: policy, pub, lambda school, ids: {i for i in ids if i in stored},
                     back.append, lambda: 1_767_700_000_000)  # fmt: skip
    return counts, pub, back


def test_redrive_under_strict_refuses_again_with_reasons_and_sends_nothing():
    rec = _record(fresh("group_object"))
    counts, pub, back = _run([rec], STRICT_POLICY)
    assert (counts.records, counts.still_refused, counts.sent) == (1, 1, 0) and pub.sent == []
    [again] = back
    assert (again.record_id, again.state, again.rules) == (rec.record_id, "refused-again", ("objectType.value",))
    assert again.version == 1_767_700_000_000 and again.body == rec.body


def test_redrive_after_policy_change_sends_unchanged_with_rules_and_derived_ids():
    no_id = fresh("object_without_id")
    del no_id["id"]
    batch = [fresh("zero_weight_score"), no_id]
    rec = _record(batch)
    counts, pub, back = _run([rec], TOLERANT)
    assert (counts.accepted_records, counts.sent) == (1, 2) and back[0].state == "accepted"
    (_, first, v1), (_, second, v2) = pub.sent
    assert first == batch[0] and v1 == ("result.score.min-max.equal",)
    assert second == {**no_id, "id": redrive_statement_id(rec.record_id, 1)} and v2 == ("activity.id.required",)
    # Replayed again (say the state write-back was not read yet): same ids, and stored ones skipped.
    stored = {first["id"].lower(), second["id"].lower()}
    counts2, pub2, _ = _run([rec], TOLERANT, stored)
    assert (counts2.sent, counts2.already_stored, counts2.accepted_records) == (0, 2, 1) and pub2.sent == []


def test_redrive_partly_valid_batch_stores_what_passes_and_keeps_the_rest():
    good, bad = fresh("group_object"), fresh("group_object")
    bad["timestamp"] = "yesterday"
    counts, pub, back = _run([_record([good, bad])], TOLERANT)
    assert [s["id"] for _, s, _ in pub.sent] == [good["id"]]
    assert back[0].state == "refused-again" and back[0].rules == ("timestamp.format",) and back[0].paths == ("$[1].timestamp",)
    bad_json = QuarantineRecord.new("edx", "k", "replay", 1, "1.0.3", b"{not json")
    counts, pub, back = _run([bad_json], TOLERANT)
    assert back[0].rules == ("json.parse",) and pub.sent == []
