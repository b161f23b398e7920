"""What a sink drops for erased learners, and which pseudonyms an identifier stands for."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from schemas.clickhouse import tables as T
from schemas.identity import pseudonym
from sinks.forget import ForgottenFilter, drop_forgotten, pseudonyms_for
from sinks.rows import COLUMNS

SECRET = b"k"
GONE = "a" * 64
KEPT = "b" * 64


def _statement(learner: str, sid: uuid.UUID) -> tuple:
    row = dict.fromkeys(T.STATEMENT_COLUMNS)
    row.update(statement_id=sid, learner=learner, voided=0)
    return tuple(row[c] for c in T.STATEMENT_COLUMNS)


def _raw(learner: str, sid: uuid.UUID, mentions: list[str]) -> tuple:
    row = dict.fromkeys(T.RAW_COLUMNS)
    row.update(statement_id=sid, learner=learner, learners=mentions, raw="{}")
    return tuple(row[c] for c in T.RAW_COLUMNS)


def test_sinks_forgotten_learner_rows_and_statements_naming_them_are_dropped():
    own, about, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    rows = {
        T.STATEMENTS: [_statement(GONE, own), _statement(KEPT, about), _statement(KEPT, other)],
        T.STATEMENTS_RAW: [_raw(GONE, own, [GONE]), _raw(KEPT, about, [KEPT, GONE]), _raw(KEPT, other, [KEPT])],
        T.STATEMENT_VOIDS: [("s", own, other, None), ("s", other, uuid.uuid4(), None)],
    }
    out = drop_forgotten(frozenset({GONE}), COLUMNS, rows)
    assert [r[0] for r in out[T.STATEMENTS]] == [other]
    assert [r[1] for r in out[T.STATEMENTS_RAW]] == [other]
    assert [r[1] for r in out[T.STATEMENT_VOIDS]] == [other]


def test_sinks_forgotten_learner_removed_from_alert_lists_only():
    alert = ("a1", "s", "c", "k", "fired", None, None, 3, 2, 0.6, 0.3, [GONE, KEPT], 1)
    out = drop_forgotten(frozenset({GONE}), COLUMNS, {T.ALERTS: [alert]})
    (row,) = out[T.ALERTS]
    assert row[T.ALERT_COLUMNS.index("disengaged_learners")] == [KEPT]
    assert row[:11] == alert[:11]


def test_sinks_nothing_forgotten_returns_rows_unchanged():
    rows = {T.STATEMENTS: [_statement(KEPT, uuid.uuid4())]}
    assert drop_forgotten(frozenset(), COLUMNS, rows) is rows


def test_sinks_forgotten_filter_rereads_the_ledger_after_refresh():
    class Engine:
        database = "db"

        def __init__(self) -> None:
            self.answers = [[], [(GONE,)]]

        def query(self, sql, params=None):
            return self.answers.pop(0) if self.answers else [(GONE,)]

    now = [0.0]
    f = ForgottenFilter(Engine(), COLUMNS, refresh_s=2.0, clock=lambda: now[0])
    assert f.current() == frozenset()
    now[0] = 1.0
    assert f.current() == frozenset()  # cached
    now[0] = 2.5
    assert f.current() == frozenset({GONE})


def test_sinks_mailto_stands_for_the_mbox_and_its_sha1_forms():
    got = pseudonyms_for("mailto:Ada@Example.org", SECRET)
    assert got[0] == pseudonym(SECRET, {"mbox": "mailto:Ada@Example.org"})
    assert pseudonym(SECRET, {"mbox_sha1sum": hashlib.sha1(b"mailto:Ada@Example.org").hexdigest()}) in got
    assert pseudonym(SECRET, {"mbox_sha1sum": hashlib.sha1(b"mailto:Ada@example.org").hexdigest()}) in got


@pytest.mark.parametrize(
    ("identifier", "agent"),
    [
        ("https://openid.example/ada", {"openid": "https://openid.example/ada"}),
        ("account:https://lms.example|ada", {"account": {"homePage": "https://lms.example", "name": "ada"}}),
        ('{"account": {"homePage": "https://lms.example", "name": "ada"}}',
         {"account": {"homePage": "https://lms.example", "name": "ada"}}),
        ("0" * 40, {"mbox_sha1sum": "0" * 40}),
    ],
)  # fmt: skip
def test_sinks_identifier_forms_map_to_the_pipelines_pseudonym(identifier, agent):
    assert pseudonyms_for(identifier, SECRET)[0] == pseudonym(SECRET, agent)


def test_sinks_pseudonym_is_taken_as_is_and_garbage_is_refused():
    assert pseudonyms_for("C" * 64, SECRET) == ["c" * 64]
    with pytest.raises(ValueError, match="give a pseudonym"):
        pseudonyms_for("ada", SECRET)
