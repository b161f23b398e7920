"""A statement accepted twice (a gateway killed between Kafka commit and confirm) is written once."""

from __future__ import annotations

import uuid

from schemas.clickhouse import tables as T
from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.identity import pseudonym
from schemas.xapi.canonical import canonicalize
from sinks.copies import FirstCopyFilter, keep_first_copies, stored_ms
from sinks.lrs_rows import LRS_ACTIVITIES, LRS_AGENTS, LRS_STATEMENT_IDS, LRS_STATEMENTS, LRS_VOIDS
from sinks.rows import COLUMNS, MODERN_RANGE, VOIDED_VERB, statement_rows

SECRET = b"test-secret"
AUTHORITY = {"objectType": "Agent", "account": {"homePage": "https://learnpulse.dev/schools", "name": "s-1"}}
LEARNER = {"objectType": "Agent", "mbox": "mailto:ada@example.org"}
FIRST, RETRY = 1_767_607_200_456, 1_767_607_260_000  # the retry is accepted a minute later


def offered(**extra) -> dict:
    # No timestamp: the LRS sets it from stored, so the copies differ in timestamp too.
    s = {"id": str(uuid.uuid4()), "actor": LEARNER, "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced"},
         "object": {"id": "https://courses.example/c1/p1"}}  # fmt: skip
    s.update(extra)
    return s


def rows_of(*copies: tuple[dict, int]):
    """The sink's rows of one batch holding these (statement as offered, stored ms) copies."""
    out: dict = {}
    for st, ms in copies:
        stored = canonicalize(st, authority=AUTHORITY, stored_ms=ms)
        env = StatementEnvelope("s-1", pseudonym(SECRET, LEARNER), ms, (StatementEntry("c1", "c1/a", stored),))
        for table, rs in statement_rows(SECRET, MODERN_RANGE, env.encode()).items():
            out.setdefault(table, []).extend(rs)
    return out


def stored_of(rows, table: str) -> list[int]:
    cols = COLUMNS[table]
    col = "stored" if "stored" in cols else "stored_ms"
    return sorted(stored_ms(r[cols.index(col)]) for r in rows[table])


def test_two_copies_in_one_batch_keep_the_first_stored_in_every_table():
    st = offered()
    kept = keep_first_copies(rows_of((st, RETRY), (st, FIRST)), COLUMNS, written={})
    for table in (T.STATEMENTS, T.STATEMENTS_RAW, LRS_STATEMENTS, LRS_STATEMENT_IDS):
        assert stored_of(kept, table) == [FIRST], table
    assert len(kept[LRS_AGENTS]) >= 1 and len(kept[LRS_ACTIVITIES]) >= 1  # written with the first copy


def test_a_copy_of_a_statement_an_earlier_batch_wrote_is_dropped_whole():
    st, other = offered(), offered()
    rows = rows_of((st, RETRY), (other, RETRY))
    kept = keep_first_copies(rows, COLUMNS, written={("s-1", st["id"].lower()): FIRST})
    ids = {str(r[COLUMNS[T.STATEMENTS_RAW].index("statement_id")]) for r in kept[T.STATEMENTS_RAW]}
    assert ids == {other["id"]}
    for table in (T.STATEMENTS, LRS_STATEMENTS, LRS_STATEMENT_IDS, LRS_AGENTS, LRS_ACTIVITIES):
        i = COLUMNS[table].index("statement_id")
        assert {str(r[i]) for r in kept[table]} == {other["id"]}, table


def test_a_replay_of_the_written_copy_is_written_again_unchanged():
    # Crash after some tables of the batch were written: the replay must complete the rest.
    st = offered()
    rows = rows_of((st, FIRST))
    assert keep_first_copies(rows, COLUMNS, written={("s-1", st["id"].lower()): FIRST}) == rows


def test_a_voiding_statement_accepted_twice_voids_once():
    target = str(uuid.uuid4())
    void = offered(verb={"id": VOIDED_VERB}, object={"objectType": "StatementRef", "id": target})
    kept = keep_first_copies(rows_of((void, FIRST), (void, RETRY)), COLUMNS, written={})
    assert stored_of(kept, T.STATEMENT_VOIDS) == [FIRST]
    assert stored_of(kept, LRS_VOIDS) == [FIRST]


class _Index:
    """lrs_statement_ids as the look-up query sees it."""

    database = "db"

    def __init__(self, rows):
        self.rows = rows
        self.asked: list[list[str]] = []

    def query(self, sql, params=None):
        ids = params["ids"].split(",")  # one text (sinks/idsets.py)
        self.asked.append(ids)
        return [r for r in self.rows if r[1] in ids]


def test_the_filter_looks_up_only_the_batch_ids_and_keeps_other_schools_apart():
    st = offered()
    sid = st["id"].lower()
    # The same id in another school is another statement (ids are private to a school).
    index = _Index([("s-2", sid, FIRST - 5)])
    kept = FirstCopyFilter(index, COLUMNS)(rows_of((st, RETRY)))
    assert index.asked == [[sid]]
    assert stored_of(kept, T.STATEMENTS_RAW) == [RETRY]
    index = _Index([("s-1", sid, FIRST)])
    assert FirstCopyFilter(index, COLUMNS)(rows_of((st, RETRY)))[T.STATEMENTS_RAW] == []


class _AllCopies(_Index):
    def query(self, sql, params=None):
        assert "DISTINCT" in sql
        return super().query(sql, params)


def test_statements_written_whole_are_not_inserted_again_but_others_are():
    done, fresh = offered(), offered()
    rows = rows_of((done, FIRST), (fresh, FIRST))
    index = _AllCopies([("s-1", done["id"].lower(), FIRST)])
    left = FirstCopyFilter(index, COLUMNS).unwritten(rows)
    for table, rs in left.items():
        cols = COLUMNS[table]
        for col in ("statement_id", "voiding_statement_id", "voiding_id"):
            if col in cols:
                assert done["id"] not in {str(r[cols.index(col)]) for r in rs}, table
    assert {str(r[COLUMNS[T.STATEMENTS_RAW].index("statement_id")]) for r in left[T.STATEMENTS_RAW]} == {fresh["id"]}
    assert len(left[LRS_AGENTS]) == len(rows[LRS_AGENTS]) // 2


def test_a_copy_with_another_stored_is_not_taken_for_the_written_one():
    st = offered()
    rows = rows_of((st, FIRST))
    index = _AllCopies([("s-1", st["id"].lower(), FIRST - 1)])  # some other copy was written
    assert FirstCopyFilter(index, COLUMNS).unwritten(rows) == rows


def test_a_batch_of_first_copies_is_kept_whole_and_identical_copies_stay():
    a, b = offered(), offered()
    rows = rows_of((a, FIRST), (b, FIRST))
    assert keep_first_copies(rows, COLUMNS, {}) == rows
    twice = rows_of((a, FIRST), (a, FIRST))  # a replay of the same copy in one batch
    assert keep_first_copies(twice, COLUMNS, {}) == twice
    later = rows_of((a, RETRY), (b, FIRST), (a, FIRST))  # the retry came first in the batch
    kept = keep_first_copies(later, COLUMNS, {})
    assert stored_of(kept, T.STATEMENTS_RAW) == [FIRST, FIRST]
    assert keep_first_copies(rows, COLUMNS, {("s-1", a["id"].lower()): FIRST - 1})[T.STATEMENTS_RAW] == [
        r for r in rows[T.STATEMENTS_RAW] if str(r[COLUMNS[T.STATEMENTS_RAW].index("statement_id")]) == b["id"]
    ]


def test_the_insert_filter_reuses_the_row_filters_look_up_once_and_only_for_its_ids():
    done, fresh = offered(), offered()
    index = _Index([("s-1", done["id"].lower(), FIRST)])
    f = FirstCopyFilter(index, COLUMNS)
    rows = f(rows_of((done, FIRST), (fresh, FIRST)))
    left = f.unwritten(rows)
    assert len(index.asked) == 1  # one look-up for both filters
    assert {str(r[1]) for r in left[LRS_STATEMENT_IDS]} == {fresh["id"]}
    f.unwritten(rows)  # used once: read again
    assert len(index.asked) == 2
    f(rows_of((fresh, FIRST)))
    f.unwritten(rows)  # asks for an id the row filter did not: read again
    assert len(index.asked) == 4


def test_the_insert_filter_takes_the_row_filters_copies_only_when_it_kept_every_copy(monkeypatch):
    import sinks.copies as copies

    walked = []
    real = copies.batch_copies
    monkeypatch.setattr(copies, "batch_copies", lambda rows: walked.append(1) or real(rows))
    done, fresh = offered(), offered()
    f = FirstCopyFilter(_Index([("s-1", done["id"].lower(), FIRST)]), COLUMNS)
    left = f.unwritten(f(rows_of((done, FIRST), (fresh, FIRST))))
    assert len(walked) == 1  # the batch's copies are found once for both filters
    assert {str(r[1]) for r in left[LRS_STATEMENT_IDS]} == {fresh["id"]}
    # A copy dropped by the row filter: the insert filter finds the copies of what is left.
    walked.clear()
    f = FirstCopyFilter(_Index([("s-1", done["id"].lower(), FIRST)]), COLUMNS)
    kept = f(rows_of((done, RETRY), (fresh, FIRST)))
    left = f.unwritten(kept)
    assert len(walked) == 2
    assert {str(r[1]) for r in left[LRS_STATEMENT_IDS]} == {fresh["id"]}
