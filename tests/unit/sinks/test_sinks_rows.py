"""Row builders are pure: same bytes, same rows (idempotent replays); bad records name the rule."""

from __future__ import annotations

import hashlib
import pickle
import uuid
from datetime import datetime

import orjson
import pytest

from schemas.clickhouse import tables as T
from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.errors import InvalidStatement
from schemas.identity import pseudonym
from schemas.records import AlertRecord, CohortHealthRecord, EngagementRecord, MasteryRecord
from schemas.xapi.canonical import canonicalize
from sinks.rows import (
    COLUMNS,
    MODERN_RANGE,
    OLD_SERVER_RANGE,
    VOIDED_VERB,
    alert_rows,
    builders,
    cohort_health_rows,
    engagement_rows,
    mastery_rows,
    statement_rows,
)

SECRET = b"test-secret"
AUTHORITY = {"objectType": "Agent", "account": {"homePage": "https://learnpulse.dev/schools", "name": "s-1"}}
LEARNER = {"objectType": "Agent", "mbox": "mailto:ada@example.org", "name": "Ada Lovelace"}
TEACHER = {"objectType": "Agent", "mbox": "mailto:teacher@example.org", "name": "Grace"}
COURSE = "https://courses.example/c1"


def stmt(**extra):
    s = {
        "id": str(uuid.uuid4()),
        "actor": LEARNER,
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": COURSE + "/q1", "definition": {"type": "http://adlnet.gov/expapi/activities/cmi.interaction"}},
        "timestamp": "2026-01-05T10:00:00.123Z",
        "result": {"success": True, "completion": False, "score": {"scaled": 0.8, "raw": 8}, "duration": "PT1M30S"},
        "context": {"registration": str(uuid.uuid4()), "instructor": TEACHER},
    }
    s.update(extra)
    return canonicalize(s, authority=AUTHORITY, stored_ms=1_767_607_200_456)


def envelope(*statements, learner_agent=LEARNER) -> bytes:
    return StatementEnvelope(
        "s-1", pseudonym(SECRET, learner_agent), 1_767_607_200_456,
        tuple(StatementEntry(COURSE, "cohort-a", s) for s in statements),
    ).encode()  # fmt: skip


def build(raw: bytes):
    return statement_rows(SECRET, MODERN_RANGE, raw)


def test_sinks_statement_rows_are_identical_for_the_same_bytes():
    raw = envelope(stmt(), stmt())
    assert build(raw) == build(raw) == build(bytes(raw))


def test_sinks_statement_rows_flatten_the_filter_columns():
    s = stmt()
    rows = build(envelope(s))
    (row,) = rows[T.STATEMENTS]
    r = dict(zip(T.STATEMENT_COLUMNS, row, strict=True))
    assert r["statement_id"] == uuid.UUID(s["id"])
    assert (r["school"], r["course"], r["cohort"]) == ("s-1", COURSE, "cohort-a")
    assert r["learner"] == pseudonym(SECRET, LEARNER)
    assert r["verb_id"] == "http://adlnet.gov/expapi/verbs/answered"
    assert (r["object_id"], r["object_type"]) == (COURSE + "/q1", "Activity")
    assert r["registration"] == uuid.UUID(s["context"]["registration"])
    assert (r["result_success"], r["result_completion"]) == (1, 0)
    assert (r["result_score_scaled"], r["result_score_raw"], r["result_duration_ms"]) == (0.8, 8.0, 90_000)
    assert r["timestamp"] == datetime(2026, 1, 5, 10, 0, 0, 123_000)
    assert r["voided"] == 0
    for table, table_rows in rows.items():
        for tr in table_rows:
            assert len(tr) == len(COLUMNS[table]), table


def test_sinks_statement_rows_hold_no_mail_address_outside_the_raw_json():
    s = stmt(object={"objectType": "Agent", "mbox": "mailto:friend@example.org"})
    rows = build(envelope(s))
    (row,) = rows[T.STATEMENTS]
    text = repr(row)
    assert "example.org" not in text and "Ada" not in text
    r = dict(zip(T.STATEMENT_COLUMNS, row, strict=True))
    assert r["object_type"] == "Agent"
    assert r["object_id"] == pseudonym(SECRET, {"mbox": "mailto:friend@example.org"})
    (raw_row,) = rows[T.STATEMENTS_RAW]
    assert "friend@example.org" in raw_row[T.RAW_COLUMNS.index("raw")]


def test_sinks_raw_row_lists_everyone_the_statement_names():
    s = stmt(object={"objectType": "Agent", "mbox": "mailto:friend@example.org"})
    (raw_row,) = build(envelope(s))[T.STATEMENTS_RAW]
    learners = set(raw_row[T.RAW_COLUMNS.index("learners")])
    expected = {pseudonym(SECRET, a) for a in (LEARNER, TEACHER, {"mbox": "mailto:friend@example.org"}, AUTHORITY)}
    assert expected <= learners
    assert orjson.loads(raw_row[T.RAW_COLUMNS.index("raw")]) == s


def test_sinks_voiding_statement_gives_a_void_row():
    target = str(uuid.uuid4())
    v = stmt(verb={"id": VOIDED_VERB}, object={"objectType": "StatementRef", "id": target}, result=None)
    del v["result"]
    rows = build(envelope(v))
    assert rows[T.STATEMENT_VOIDS] == [
        ("s-1", uuid.UUID(target), uuid.UUID(v["id"]), datetime(2026, 1, 5, 10, 0, 0, 456_000))
    ]
    # A StatementRef without the voided verb is not a void.
    other = stmt(object={"objectType": "StatementRef", "id": target})
    assert build(envelope(other))[T.STATEMENT_VOIDS] == []


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"timestamp": "1850-01-01T00:00:00Z"}, "statement.time_range"),
        ({"context": {"registration": "not-a-uuid"}}, "statement.canonical"),
        ({"result": {"success": "yes"}}, "statement.canonical"),
        ({"result": {"duration": "90 seconds"}}, "result.duration"),
        ({"verb": {}}, "statement.canonical"),
    ],
)
def test_sinks_statement_rows_reject_what_clickhouse_cannot_store(change, rule):
    s = stmt()
    s.update(change)
    with pytest.raises(InvalidStatement) as err:
        build(envelope(s))
    assert err.value.rule == rule


def test_sinks_old_server_range_rejects_times_before_1970():
    s = stmt(timestamp="1969-12-31T23:59:59Z")
    assert build(envelope(s))[T.STATEMENTS]  # fine on current ClickHouse
    with pytest.raises(InvalidStatement, match="time_range"):
        statement_rows(SECRET, OLD_SERVER_RANGE, envelope(s))


def test_sinks_undecodable_envelope_names_the_rule():
    with pytest.raises(InvalidStatement) as err:
        build(b"{not json")
    assert err.value.rule == "envelope.json"


def test_sinks_derived_rows_are_pure_and_keyed():
    e = EngagementRecord("s-1", "c", "k", "l", "day", 1_767_225_600_000, 5, 2, 600_000, 1_767_229_200_000, 7)
    m = MasteryRecord("s-1", "c", "l", "skill-1", 0.42, 3, 2, 1_767_229_200_000, 3)
    h = CohortHealthRecord("s-1", "c", "k", 1_767_229_200_000, 30, 6, 0.2, 900_000, 11)
    a = AlertRecord("a-1", "s-1", "c", "k", "fired", 1_767_229_200_000, 1_767_229_200_000, 30, 12, 0.4, 0.3, ["l"], 4)
    for build_rows, record, table in (
        (engagement_rows, e, T.ENGAGEMENT),
        (mastery_rows, m, T.MASTERY),
        (cohort_health_rows, h, T.COHORT_HEALTH),
        (alert_rows, a, T.ALERTS),
    ):
        raw = record.encode()
        rows = build_rows(MODERN_RANGE, raw)
        assert rows == build_rows(MODERN_RANGE, raw)
        (row,) = rows[table]
        assert len(row) == len(COLUMNS[table])
        assert row[COLUMNS[table].index("version")] == record.version


@pytest.mark.parametrize(
    ("record", "build_rows", "rule"),
    [
        (EngagementRecord("s", "c", "k", "l", "week", 0, 1, 1, 1, 0, 1), engagement_rows, "engagement.grain"),
        (EngagementRecord("s", "c", "k", "l", "day", 0, -1, 1, 1, 0, 1), engagement_rows, "engagement.negative"),
        (MasteryRecord("s", "c", "l", "k", 1.5, 1, 1, 0, 1), mastery_rows, "mastery.probability"),
        (AlertRecord("a", "s", "c", "k", "maybe", 0, 0, 1, 1, 0.1, 0.1, [], 1), alert_rows, "alert.state"),
    ],
)
def test_sinks_derived_rows_reject_values_outside_the_contract(record, build_rows, rule):
    with pytest.raises(InvalidStatement) as err:
        build_rows(MODERN_RANGE, record.encode())
    assert err.value.rule == rule


def test_sinks_builders_are_picklable_partials():
    import pickle

    b = builders(SECRET, MODERN_RANGE)
    assert set(b) == {"statements", "engagement", "mastery", "cohort_health", "alerts", "quarantine"}
    raw = envelope(stmt())
    assert pickle.loads(pickle.dumps(b["statements"]))(raw) == b["statements"](raw)


def test_sinks_mbox_sha1_learner_gets_a_different_pseudonym_than_mbox():
    # Documented consequence for erasure: both forms are looked up (sinks.forget.pseudonyms_for).
    sha = hashlib.sha1(b"mailto:ada@example.org").hexdigest()
    assert pseudonym(SECRET, {"mbox_sha1sum": sha}) != pseudonym(SECRET, LEARNER)


def test_sinks_tolerated_statement_keeps_its_rule_ids_and_raw_form():
    """Envelope v2 (issue 14): violations per entry reach statements.violations; raw unchanged."""
    s = stmt(object={"objectType": "GroupActivity", "id": COURSE + "/p1"},
             result={"score": {"min": 0, "max": 0, "raw": 0}})  # fmt: skip
    plain = stmt()
    env = StatementEnvelope(
        "s-1", pseudonym(SECRET, LEARNER), 1_767_607_200_456,
        (StatementEntry(COURSE, "c", s, ("objectType.value", "result.score.min-max.equal")),
         StatementEntry(COURSE, "c", plain)),
    )  # fmt: skip
    raw = env.encode()
    assert orjson.loads(raw)["v"] == 2 and StatementEnvelope.decode(raw) == env
    rows = build(raw)
    got = [dict(zip(T.STATEMENT_COLUMNS, row, strict=True)) for row in rows[T.STATEMENTS]]
    assert [r["violations"] for r in got] == [["objectType.value", "result.score.min-max.equal"], []]
    assert got[0]["object_type"] == "GroupActivity" and got[0]["object_id"] == COURSE + "/p1"
    assert orjson.loads(rows[T.STATEMENTS_RAW][0][-1]) == s


def test_sinks_envelope_violations_must_be_rule_ids():
    doc = orjson.loads(envelope(stmt()))
    doc["v"], doc["statements"][0]["violations"] = 2, [3]
    with pytest.raises(InvalidStatement) as err:
        StatementEnvelope.decode(orjson.dumps(doc))
    assert err.value.rule == "envelope.entry.violations"
    doc["v"] = 3
    with pytest.raises(InvalidStatement):
        StatementEnvelope.decode(orjson.dumps(doc))


def test_sinks_quarantine_record_becomes_one_row_and_round_trips():
    from schemas.quarantine import QuarantineRecord, redrive_statement_id

    err = InvalidStatement("objectType.value", "xAPI 1.0.3 Data §2.2: …", "$.object.objectType")
    rec = QuarantineRecord.new("s-1", "lp_k", "gateway", 1_767_607_200_456, "1.0.3", b'{"actor": 1}', [err])
    assert QuarantineRecord.decode(rec.encode()) == rec
    binary = QuarantineRecord.new("s-1", "lp_k", "replay", 1_767_607_200_456, "1.0.3", b"\xff\xfe{", [])
    assert QuarantineRecord.decode(binary.encode()).body == b"\xff\xfe{"
    big = QuarantineRecord.new("s-1", "k", "gateway", 1_767_607_200_456, "1.0.3", b"x" * 300_000, [])
    assert big.truncated and len(big.body) == 256 * 1024 and big.body_bytes == 300_000
    rows = builders(SECRET, MODERN_RANGE)["quarantine"](rec.encode())
    (row,) = rows[T.QUARANTINE]
    r = dict(zip(T.QUARANTINE_COLUMNS, row, strict=True))
    assert (r["school"], r["credential"], r["stage"], r["state"]) == ("s-1", "lp_k", "gateway", "refused")
    assert (r["rules"], r["paths"], r["body"]) == (["objectType.value"], ["$.object.objectType"], '{"actor": 1}')
    assert r["record_id"] == uuid.UUID(rec.record_id) and r["version"] == 1_767_607_200_456
    assert redrive_statement_id(rec.record_id, 0) == redrive_statement_id(rec.record_id.upper(), 0)
    assert redrive_statement_id(rec.record_id, 0) != redrive_statement_id(rec.record_id, 1)
    with pytest.raises(InvalidStatement):
        builders(SECRET, MODERN_RANGE)["quarantine"](b'{"v": 1, "id": "nope"}')


def test_sinks_quarantine_row_lists_everyone_the_refused_body_names():
    from schemas.identity import pseudonym
    from schemas.quarantine import QuarantineRecord

    ada = {"mbox": "mailto:ada@example.org", "name": "Ada"}
    dan = {"account": {"homePage": "https://sso.example.org", "name": "dan-1"}}
    # Wrong anywhere: a batch whose object is a malformed agent, a member deep in a team.
    body = orjson.dumps([{"actor": ada, "verb": {"id": "x"}, "object": {**dan, "objectType": "Agnt"},
                          "context": {"team": {"objectType": "Group", "member": [{"openid": "https://id.example/c"}]}}},
                         {"actor": {"mbox": "not-an-iri"}}])  # fmt: skip
    rec = QuarantineRecord.new("s-1", "k", "gateway", 1_767_607_200_456, "1.0.3", body, [])
    (row,) = builders(SECRET, MODERN_RANGE)["quarantine"](rec.encode())[T.QUARANTINE]
    learners = dict(zip(T.QUARANTINE_COLUMNS, row, strict=True))["learners"]
    # An identifier the validator refuses still names someone as written: kept too.
    named = (ada, dan, {"openid": "https://id.example/c"}, {"mbox": "not-an-iri"})
    assert learners == sorted(pseudonym(SECRET, a) for a in named)
    for unreadable in (b"\xff{", b'{"actor": ' * 3000):
        rec = QuarantineRecord.new("s-1", "k", "gateway", 1_767_607_200_456, "1.0.3", unreadable, [])
        (row,) = builders(SECRET, MODERN_RANGE)["quarantine"](rec.encode())[T.QUARANTINE]
        assert dict(zip(T.QUARANTINE_COLUMNS, row, strict=True))["learners"] == []


# -- the per-school directory of names (learner_names, issue 17 part 3) -----------------
def _name_row(rows):
    (row,) = rows[T.LEARNER_NAMES]
    return dict(zip(T.LEARNER_NAME_COLUMNS, row, strict=True))


def test_sinks_statement_rows_name_the_learner_from_the_newest_statement_of_the_envelope():
    older = stmt(timestamp="2026-01-05T09:00:00.000Z", actor={**LEARNER, "name": "Ada L."})
    newer = stmt(timestamp="2026-01-05T11:00:00.000Z", actor={**LEARNER, "name": "Ada King"})
    for order in ((older, newer), (newer, older)):
        r = _name_row(build(envelope(*order)))
        assert (r["school"], r["learner"], r["name"]) == ("s-1", pseudonym(SECRET, LEARNER), "Ada King")
        assert r["statement_id"] == uuid.UUID(newer["id"])
    assert _name_row(build(envelope(newer)))["version"] > _name_row(build(envelope(older)))["version"]


def test_sinks_name_versions_order_every_storable_time():
    from sinks.rows import name_version

    sid = uuid.UUID(int=0)
    times = [MODERN_RANGE.min_ms, -1, 0, 1_767_607_200_456, MODERN_RANGE.max_ms]
    versions = [name_version(t, sid) for t in times]
    assert versions == sorted(set(versions)) and versions[-1] < 2**64


def test_sinks_name_versions_of_one_millisecond_still_order_by_statement_id():
    a, b = (stmt(timestamp="2026-01-05T09:00:00.000Z", id=i) for i in (
        "00000000-0000-4000-8000-000000000001", "ffffffff-0000-4000-8000-000000000001"))  # fmt: skip
    assert _name_row(build(envelope(b)))["version"] > _name_row(build(envelope(a)))["version"]
    assert _name_row(build(envelope(a, b)))["statement_id"] == uuid.UUID(b["id"])


def test_sinks_no_name_row_when_the_actor_has_nothing_readable():
    hashed = {"objectType": "Agent", "mbox_sha1sum": "ebd31e95054c018b10727ccffd2ef2ec3a016ee9"}
    rows = build(envelope(stmt(actor=hashed), learner_agent=hashed))
    assert rows[T.LEARNER_NAMES] == []


_UUID_FORMS = [
    "50c20a1c-2b52-48ce-bfa8-3afc5d7e227c", "50C20A1C-2B52-48CE-BFA8-3AFC5D7E227C",
    "{50c20a1c-2b52-48ce-bfa8-3afc5d7e227c}", "urn:uuid:50c20a1c-2b52-48ce-bfa8-3afc5d7e227c",
    "50c20a1c2b5248cebfa83afc5d7e227c", "50c20a1c-2b52-48ce-bfa8-3afc5d7e2-7c",  # hyphen moved: 36 chars
    "50c20a1c-2b52-48ce-bfa8-3afc5d7e227g", "50c20a1c-2b52-48ce-bfa8-3afc5d7e227",
    "+0c20a1c-2b52-48ce-bfa8-3afc5d7e227c", "50c2_a1c-2b52-48ce-bfa8-3afc5d7e227c",
    " 0c20a1c-2b52-48ce-bfa8-3afc5d7e227c", "----------------------------------44",
    "５0c20a1c-2b52-48ce-bfa8-3afc5d7e227c",  # a full-width digit
]  # fmt: skip


@pytest.mark.parametrize("value", _UUID_FORMS)
def test_sinks_statement_ids_read_as_uuid_reads_them(value):
    # sinks.rows reads the usual form its own way: the same UUID (and pickle) or the same refusal.
    from sinks.rows import _uuid

    try:
        expected = uuid.UUID(value)
    except ValueError:
        with pytest.raises(InvalidStatement):
            _uuid(value, "$.id")
        return
    got = _uuid(value, "$.id")
    assert (got, got.is_safe, type(got)) == (expected, expected.is_safe, uuid.UUID)
    assert pickle.dumps(got) == pickle.dumps(expected) and str(got) == str(expected)


@pytest.mark.parametrize(
    "value",
    ["2026-01-05T10:00:00.123Z", "1900-01-01T00:00:00.000Z", "1899-12-31T23:59:59.999Z",
     "2299-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z", "2016-12-31T23:59:60.000Z",
     "2026-02-30T10:00:00.123Z", "2026-01-05T10+01:00.123Z", "2026-W02-1T10:00:00.123Z",
     "2026-01-05T10:00:00.12Z", "2026-01-05T10:00:00.123+01:00", "2026-01-05 10:00:00.123Z"],
)  # fmt: skip
def test_sinks_statement_times_read_as_the_full_parser_reads_them(value):
    # The fast path for the usual form gives parse_ms's milliseconds and ms_to_datetime's datetime, or its refusal.
    from schemas.xapi.timefmt import parse_ms
    from sinks.rows import _checked_time, ms_to_datetime

    try:
        ms = MODERN_RANGE.check(parse_ms(value, "$.timestamp"), "statement.time_range", "$")
    except InvalidStatement as err:
        with pytest.raises(InvalidStatement) as got_err:
            _checked_time(MODERN_RANGE, value, "$", ".timestamp", {})
        assert got_err.value.rule == err.rule
        return
    got = _checked_time(MODERN_RANGE, value, "$", ".timestamp", {})
    assert got == (ms, ms_to_datetime(ms)) and got[1].tzinfo is None
    assert pickle.dumps(got[1]) == pickle.dumps(ms_to_datetime(ms))
