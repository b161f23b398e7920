"""The learner state as stored by the code before the named views (an in-place upgrade must read it).

The documents below were written by the learner logic of main at 134917b (before
``streams.learner.state``), for the envelopes built here: the state after envelopes 10 and
11, then after envelope 12, and envelope 12's records. The named views must read them, save
them byte for byte, and applying envelope 12 must give the same state and records.
"""

from __future__ import annotations

import uuid

import orjson

from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.profile import SKILL_EXTENSION
from schemas.xapi.timefmt import format_ms
from streams.config import StreamsConfig
from streams.learner.logic import LearnerLogic, Outputs, partition_watermark, statement_key
from streams.learner.state import ACTIVE, LAST, VERSION, CourseState, LearnerState, PartitionState
from streams.mastery.logic import VOIDED_VERB, MasteryModel

T0 = 1_767_225_600_000
M = 60_000
H = 60 * M

# Learner and partition documents after envelopes 10 and 11 (stored by the old code).
LEARNER_BEFORE = (
    '{"c":{"C":{"i":{"b9e24e77aa2e7c47":1767236400000},"sc":"s","co":"k1","n":4,"h":{"1767225600000":'
    '[3,1,300000,1767228600000,3],"1767236400000":[1,1,0,1767236400000,4]},"ev":[[1767236400000,17672'
    '36400000]],"end":1767236400000,"d":{"1767225600000":4},"new":1767236400000,"hz":1767232800000,"c'
    'b":{"1767236400000":[0,1767236400000,4]}},"D":{"i":{"3fe5949e5b759329":1767232800000},"sc":"s","'
    'co":"k1","n":1,"h":{"1767232800000":[1,1,0,1767232800000,1]},"ev":[[1767232800000,1767232800000]'
    '],"end":1767232800000,"d":{"1767225600000":1},"new":1767232800000,"hz":1767229200000,"cb":{"1767'
    '232800000":[0,1767232800000,1]}}},"k":{"k":{"l0":-1.3862943611198906,"l":3.764734539808316,"h":['
    '["4b0962fd2c056768",1,1767225600000],["b9e24e77aa2e7c47",1,1767236400000],["3fe5949e5b759329",1,'
    '1767232800000]],"n":3,"c":3,"v":5,"course":"D","ts":1767236400000,"tf":0,"sc":"s"},"j":{"l0":-1.'
    '3862943611198906,"l":0.4054651081081645,"h":[["607b75d4a2262906",1,1767228600000]],"n":1,"c":1,"'
    'v":1,"course":"C","ts":1767228600000,"tf":0,"sc":"s"}},"vx":["41bb0692822f503f","d61a8c747c367f4'
    '6"],"o":11}'
)
PARTITION_BEFORE = '{"mx":1767236520000,"vd":{"5ae6518298b4314f":1}}'
# After envelope 12 (offset 12).
LEARNER_AFTER = (
    '{"c":{"C":{"i":{"b6bbe712e2b93394":1767250800000},"sc":"s","co":"k1","n":7,"h":{"1767225600000":'
    '[3,1,300000,1767228600000,3],"1767236400000":[2,0,1800000,1767238200000,6],"1767232800000":[1,1,'
    '0,1767235200000,6],"1767250800000":[1,1,0,1767250800000,7]},"ev":[[1767250800000,1767250800000]]'
    ',"end":1767250800000,"d":{"1767225600000":7},"new":1767250800000,"hz":1767247200000,"cb":{"17672'
    '50800000":[0,1767250800000,7]}},"D":{"i":{"3fe5949e5b759329":1767232800000},"sc":"s","co":"k1","'
    'n":1,"h":{"1767232800000":[1,1,0,1767232800000,1]},"ev":[[1767232800000,1767232800000]],"end":17'
    '67232800000,"d":{"1767225600000":1},"new":1767232800000,"hz":1767229200000,"cb":{"1767232800000"'
    ':[0,1767232800000,1]}}},"k":{"k":{"l0":-1.3862943611198906,"l":3.5204153535091045,"h":[["4b0962f'
    'd2c056768",1,1767225600000],["b9e24e77aa2e7c47",1,1767236400000],["3fe5949e5b759329",1,176723280'
    '0000],["bea50e420621fbae",1,1767238200000],["a111420afd7231a3",0,1767235200000]],"n":5,"c":4,"v"'
    ':7,"course":"C","ts":1767238200000,"tf":0,"sc":"s"},"j":{"l0":-1.3862943611198906,"l":0.40546510'
    '81081645,"h":[["607b75d4a2262906",1,1767228600000]],"n":1,"c":1,"v":3,"course":"C","ts":17672286'
    '00000,"tf":0,"sc":"s"}},"vx":["41bb0692822f503f","d61a8c747c367f46","ed827ae743ba1e9b"],"o":12}'
)
PARTITION_AFTER = '{"mx":1767250860000,"vd":{"5ae6518298b4314f":1}}'
# Envelope 12's records (repr), and its counters [statements, late, duplicates].
RECORDS = '{"engagement": ["EngagementRecord(school=\'s\', course=\'C\', cohort=\'k1\', learner=\'aa01\', grain=\'day\', period_start_ms=1767225600000, statements=7, sessions=3, active_ms=2100000, last_event_ms=1767250800000, version=7)", "EngagementRecord(school=\'s\', course=\'C\', cohort=\'k1\', learner=\'aa01\', grain=\'hour\', period_start_ms=1767232800000, statements=1, sessions=1, active_ms=0, last_event_ms=1767235200000, version=6)", "EngagementRecord(school=\'s\', course=\'C\', cohort=\'k1\', learner=\'aa01\', grain=\'hour\', period_start_ms=1767236400000, statements=2, sessions=0, active_ms=1800000, last_event_ms=1767238200000, version=6)", "EngagementRecord(school=\'s\', course=\'C\', cohort=\'k1\', learner=\'aa01\', grain=\'hour\', period_start_ms=1767250800000, statements=1, sessions=1, active_ms=0, last_event_ms=1767250800000, version=7)"], "mastery": ["MasteryRecord(school=\'s\', course=\'C\', learner=\'aa01\', skill=\'j\', p_mastery=0.6, observations=1, correct=1, event_ms=1767228600000, version=3)", "MasteryRecord(school=\'s\', course=\'C\', learner=\'aa01\', skill=\'k\', p_mastery=0.971263099, observations=5, correct=4, event_ms=1767238200000, version=7)"], "cohort": ["((\'s|C|k1\', \'aa01\', 1767236400000), {\'school\': \'s\', \'course\': \'C\', \'cohort\': \'k1\', \'learner\': \'aa01\', \'hour\': 1767236400000, \'a\': 1800000, \'l\': 1767238200000, \'v\': 6})", "((\'s|C|k1\', \'aa01\', 1767250800000), {\'school\': \'s\', \'course\': \'C\', \'cohort\': \'k1\', \'learner\': \'aa01\', \'hour\': 1767250800000, \'a\': 0, \'l\': 1767250800000, \'v\': 7})"], "voids": [], "observed": [["bea50e420621fbae", "aa01", 1], ["a111420afd7231a3", "aa01", 1], ["b6bbe712e2b93394", "aa01", 1], ["b6bbe712e2b93394", "aa01", -1]], "counts": [5, 1, 1]}'


def stmt(i: int, ts: int, success: bool | None = None, duration: str | None = None, voids: str | None = None,
         skill: str = "k") -> dict:
    s = {"id": str(uuid.UUID(int=i)), "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
         "timestamp": format_ms(ts),
         "object": {"objectType": "Activity", "id": "https://a/1",
                    "definition": {"extensions": {SKILL_EXTENSION: [skill]}}}}
    result: dict = {}
    if success is not None:
        result["success"] = success
    if duration:
        result["duration"] = duration
    if result:
        s["result"] = result
    if voids:
        s["verb"] = {"id": VOIDED_VERB}
        s["object"] = {"objectType": "StatementRef", "id": voids}
    return s


def envelope_12() -> StatementEnvelope:
    stmts = (stmt(8, T0 + 3 * H + 30 * M, True, "PT20M"), stmt(9, T0 + 2 * H + 40 * M, False), stmt(1, T0, True, "PT2M"),
             stmt(10, T0 + 7 * H, True, skill="j"), stmt(11, T0 + 7 * H + M, voids=str(uuid.UUID(int=10))))
    return StatementEnvelope("s", "aa01", T0, tuple(StatementEntry("C", "k1", x) for x in stmts))


def test_learner_state_views_name_the_stored_fields_and_save_them_byte_for_byte():
    doc, part = orjson.loads(LEARNER_BEFORE), orjson.loads(PARTITION_BEFORE)
    learner, partition = LearnerState(doc), PartitionState(part)
    assert learner.offset == 11 and learner.partition is None
    assert set(learner.known_courses) == {"C", "D"} and set(learner.known_skills) == {"k", "j"}
    course = CourseState(learner.known_courses["C"])
    assert (course.school, course.cohort, course.placed) == ("s", "k1", True)
    assert course.horizon == T0 + 2 * H and course.sequence == 4
    bucket = course.feed_buckets[str(T0 + 3 * H)]
    assert (bucket[ACTIVE], bucket[LAST], bucket[VERSION]) == (0, T0 + 3 * H, 4)
    assert statement_key(str(uuid.UUID(int=4))) in course.applied_keys
    assert partition.newest == T0 + 3 * H + 2 * M and partition.offset == -1
    assert partition.pending_voids == {statement_key(str(uuid.UUID(int=99))): 1}
    assert partition_watermark(part, 600_000) == T0 + 3 * H + 2 * M - 600_000
    assert orjson.dumps(learner.doc) == LEARNER_BEFORE.encode()
    assert orjson.dumps(partition.doc) == PARTITION_BEFORE.encode()


def test_learner_state_stored_by_the_old_code_takes_the_next_envelope_as_the_old_code_did():
    doc, part = orjson.loads(LEARNER_BEFORE), orjson.loads(PARTITION_BEFORE)
    out = Outputs()
    assert LearnerLogic(StreamsConfig(), MasteryModel()).apply(doc, part, envelope_12(), 12, out)
    assert orjson.dumps(doc) == LEARNER_AFTER.encode()
    assert orjson.dumps(part) == PARTITION_AFTER.encode()
    expected = orjson.loads(RECORDS)
    assert sorted(repr(r) for r in out.engagement.values()) == expected["engagement"]
    assert sorted(repr(r) for r in out.mastery.values()) == expected["mastery"]
    assert sorted(repr(kv) for kv in out.cohort.items()) == expected["cohort"]
    assert [list(o) for o in out.observed] == expected["observed"] and out.voids == expected["voids"]
    assert [out.statements, out.late, out.duplicates] == expected["counts"]


def test_learner_state_redelivered_envelope_changes_no_stored_byte():
    doc, part = orjson.loads(LEARNER_AFTER), orjson.loads(PARTITION_AFTER)
    out = Outputs()
    assert not LearnerLogic(StreamsConfig(), MasteryModel()).apply(doc, part, envelope_12(), 12, out)
    assert orjson.dumps(doc) == LEARNER_AFTER.encode() and orjson.dumps(part) == PARTITION_AFTER.encode()
    assert out.mastery and out.engagement
