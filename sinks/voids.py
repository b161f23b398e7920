"""Marks voided statements: ``statements.voided = 1`` for every statement a stored voiding
statement names (xAPI 1.0.3 Data §2.3.2), whatever the order they arrive in.

A voiding statement and its target usually have different actors, hence different
learner keys, partitions and possibly sink instances. Both sides therefore *write, then
read* (the after-insert step of the statements sink, before its commit):

- after inserting a batch (its statements and its ``statement_voids`` rows), look up
  voids naming any statement of the batch and re-insert those rows with ``voided = 1``;
- for every void in the batch, re-insert its target with ``voided = 1`` if the target is
  already stored (server-side ``INSERT ... SELECT``).

If the target's sink read before the void was written, the void's sink reads after its
own write and finds the target, and vice versa: one of the two always marks it. The
table is ``ReplacingMergeTree(voided)``, so the marked row wins over every copy, and the
rollup counts the id in its ``voided`` set. Re-running the step (after a crash) is a no-op
by key. Voids match by school and id: a school can only void its own statements.
"""

from __future__ import annotations

from typing import Any

from schemas.clickhouse import tables as T
from schemas.clickhouse.engine import ClickHouse

from .idsets import IDS_IN, ids_text

Rows = dict[str, list[tuple[Any, ...]]]

_ID = T.STATEMENT_ID_INDEX
_SCHOOL = T.STATEMENT_COLUMNS.index("school")
_VOIDED = T.STATEMENT_VOIDED_INDEX
_IDS = "(SELECT toUUID(arrayJoin({ids:Array(String)})))"

# Asked with every statement of every batch: the ids as one text (sinks/idsets.py).
_VOIDED_AMONG_SQL = (
    "SELECT DISTINCT school, toString(voided_statement_id) FROM {db}.statement_voids"
    " WHERE voided_statement_id IN " + IDS_IN
)
_COLUMNS_BUT_VOIDED = ", ".join(c for c in T.STATEMENT_COLUMNS if c != "voided")
_MARK_STORED_SQL = (
    f"INSERT INTO {{db}}.statements ({_COLUMNS_BUT_VOIDED}, voided)"
    f" SELECT {_COLUMNS_BUT_VOIDED}, toUInt8(1) FROM {{db}}.statements"
    " WHERE school = {school:String} AND statement_id IN " + _IDS + " AND voided = 0"
    " AND (school, statement_id) IN (SELECT school, voided_statement_id FROM {db}.statement_voids"
    " WHERE school = {school:String} AND voided_statement_id IN " + _IDS + ")"
    " LIMIT 1 BY statement_id"
)
# Ids per query: keeps the parameter text (and the IN set) bounded.
CHUNK = 5_000


def mark_voided(ch: ClickHouse, rows: Rows) -> None:
    """After-insert step of the statements sink (idempotent; see module docstring)."""
    statements = rows.get(T.STATEMENTS) or []
    voids = rows.get(T.STATEMENT_VOIDS) or []
    if statements:
        by_key = {(r[_SCHOOL], str(r[_ID])): r for r in statements}
        ids = sorted({key[1] for key in by_key})
        marked = []
        for i in range(0, len(ids), CHUNK):
            for school, sid in ch.query(_VOIDED_AMONG_SQL, {"ids": ids_text(ids[i : i + CHUNK])}):
                row = by_key.get((str(school), str(sid)))
                if row is not None and not row[_VOIDED]:
                    marked.append(row[:_VOIDED] + (1,) + row[_VOIDED + 1 :])
        if marked:
            ch.insert(f"{ch.database}.{T.STATEMENTS}", T.STATEMENT_COLUMNS, [list(c) for c in zip(*marked)])
    targets: dict[str, set[str]] = {}
    for school, voided_id, _voiding_id, _stored in voids:
        targets.setdefault(school, set()).add(str(voided_id))
    for school, ids_set in sorted(targets.items()):
        ids = sorted(ids_set)
        for i in range(0, len(ids), CHUNK):
            ch.execute(_MARK_STORED_SQL, {"school": school, "ids": ids[i : i + CHUNK]})
