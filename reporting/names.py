"""Learners' display names for staff: the per-school directory (``learner_names``, migration 0018).

The pipeline stores learners under a pseudonym; a school's staff need to know who to call.
The statements sink keeps, per (school, pseudonym), the display name of the learner's newest
statement (``schemas.identity.display_name``). Only the operators' app reads it, and only
for learners in the reader's scope (:data:`~reporting.scope.NAME_IN_SCOPE`: the whole school,
or for a teacher the learners seen in its cohorts). It is not a research table: researchers'
SQL is refused on it (``reporting/README.md``, "Names").
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.clickhouse.engine import ClickHouse

from .scope import NAME_IN_SCOPE, Scope

# The newest name of each listed learner of one school, in scope (argMax over versions: no
# trust in merges having collapsed older names).
NAMES_SQL = (
    "SELECT learner, argMax(name, version) FROM {db}.learner_names "
    "WHERE school = {school:String} AND has(CAST({learners:Array(String)} AS Array(String)), learner) AND "
    + NAME_IN_SCOPE + " GROUP BY learner"
)
CHUNK = 2_000


def names_of(ch: ClickHouse, scope: Scope, school: str, learners: Iterable[str]) -> dict[str, str]:
    """``{pseudonym: display name}`` for those of ``learners`` of ``school`` with a name the reader may see."""
    wanted = sorted(set(learners))
    out: dict[str, str] = {}
    for i in range(0, len(wanted), CHUNK):
        params = {**scope.params(), "school": school, "learners": wanted[i : i + CHUNK]}
        out.update((str(p), str(n)) for p, n in ch.query(NAMES_SQL, params) if n)
    return out
