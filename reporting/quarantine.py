"""What the quarantine holds (``quarantine`` table, schemas/quarantine.py): for people and re-drive.

Every reader asks for the latest version of each record (``FINAL``): a replay writes a
record again with its new state. Filters: school, rule (one of the record's rules),
state, and a ``received`` range in epoch ms (``since`` inclusive, ``until`` exclusive).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.clickhouse.engine import ClickHouse
from schemas.quarantine import QuarantineRecord

from .scope import EVERY_SCHOOL, SCHOOL_IN_SCOPE, Scope

_WHERE = """
WHERE (empty({school:String}) OR school = {school:String})
  AND (empty({rule:String}) OR has(rules, {rule:String}))
  AND (empty({state:String}) OR state = {state:String})
  AND received_ms >= {since:Int64}
  AND received_ms < {until:Int64}
"""
_FULL = ("school, received_ms, toString(record_id), credential, stage, xapi_version, state, "
         "rules, paths, messages, body, body_bytes, truncated, version")  # fmt: skip
LIST_SQL = (
    "SELECT toString(record_id), school, credential, stage, received_ms, state, rules, "
    "body_bytes FROM {db}.quarantine FINAL" + _WHERE + "ORDER BY received DESC, record_id LIMIT {limit:UInt32}"
)
SHOW_SQL = "SELECT " + _FULL + " FROM {db}.quarantine FINAL WHERE record_id = toUUID({id:String})"
REPLAY_SQL = (
    "SELECT " + _FULL + " FROM {db}.quarantine FINAL" + _WHERE
    + "AND state != 'accepted' AND truncated = 0 ORDER BY received, record_id LIMIT {limit:UInt32}"
)
BY_RULE_SQL = (
    "SELECT school, arrayJoin(rules) AS rule, uniqExact(record_id), uniqExactIf(record_id, state = 'accepted') "
    "FROM {db}.quarantine FINAL" + _WHERE + "GROUP BY school, rule ORDER BY school, uniqExact(record_id) DESC, rule"
)
BY_PRODUCER_SQL = (
    "SELECT school, credential, stage, count(), countIf(state = 'accepted'), "
    "max(received_ms) FROM {db}.quarantine FINAL" + _WHERE
    + "GROUP BY school, credential, stage ORDER BY school, count() DESC, credential, stage"
)
PER_SCHOOL_SQL = (
    "SELECT school, count(), countIf(state != 'accepted') FROM {db}.quarantine FINAL" + _WHERE
    + "AND " + SCHOOL_IN_SCOPE + " GROUP BY school ORDER BY school"
)
_FAR = 2**62


@dataclass(frozen=True)
class Filter:
    school: str = ""
    rule: str = ""
    state: str = ""
    since_ms: int = 0
    until_ms: int = _FAR

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"school": self.school, "rule": self.rule, "state": self.state, "since": self.since_ms,
                "until": self.until_ms, **extra}  # fmt: skip


@dataclass(frozen=True)
class QuarantineItem:
    record_id: str
    school: str
    credential: str
    stage: str
    received_ms: int
    state: str
    rules: tuple[str, ...]
    body_bytes: int


def list_items(ch: ClickHouse, f: Filter, limit: int = 50) -> list[QuarantineItem]:
    return [
        QuarantineItem(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), str(r[5]), tuple(r[6]), int(r[7]))
        for r in ch.query(LIST_SQL, f.params(limit=limit))
    ]


def _record(r: tuple[Any, ...]) -> QuarantineRecord:
    return QuarantineRecord(
        school=str(r[0]), received_ms=int(r[1]), record_id=str(r[2]), credential=str(r[3]), stage=str(r[4]),
        xapi_version=str(r[5]), state=str(r[6]), rules=tuple(r[7]), paths=tuple(r[8]), messages=tuple(r[9]),
        body=str(r[10]).encode("utf-8"), body_bytes=int(r[11]), truncated=bool(r[12]), version=int(r[13]),
    )  # fmt: skip


def show(ch: ClickHouse, record_id: str) -> QuarantineRecord | None:
    rows = ch.query(SHOW_SQL, {"id": record_id})
    return _record(rows[0]) if rows else None


def replayable(ch: ClickHouse, f: Filter, limit: int = 10_000) -> list[QuarantineRecord]:
    """Records not yet accepted (and whole: a cut body cannot be re-driven), oldest first."""
    return [_record(r) for r in ch.query(REPLAY_SQL, f.params(limit=limit))]


def stats_by_rule(ch: ClickHouse, f: Filter) -> list[tuple[str, str, int, int]]:
    """``(school, rule, records, of them accepted since)``."""
    return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in ch.query(BY_RULE_SQL, f.params())]


def stats_by_producer(ch: ClickHouse, f: Filter) -> list[tuple[str, str, str, int, int, int]]:
    """``(school, credential, stage, records, accepted since, latest received ms)``."""
    return [(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), int(r[5]))
            for r in ch.query(BY_PRODUCER_SQL, f.params())]  # fmt: skip


def refusals_per_school(
    ch: ClickHouse, since_ms: int = 0, scope: Scope = EVERY_SCHOOL
) -> dict[str, tuple[int, int]]:
    """``school → (records refused, of them still not accepted)`` for the schools ``scope`` holds whole."""
    params = Filter(since_ms=since_ms).params(**scope.params())
    return {str(r[0]): (int(r[1]), int(r[2])) for r in ch.query(PER_SCHOOL_SQL, params)}
