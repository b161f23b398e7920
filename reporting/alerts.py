"""Disengagement alert episodes for the dashboard's alerts page, and their acknowledgements.

An episode (``alerts``, one ``alert_id`` per fired-to-resolved run, versions replacing
each other) is shown with its latest state; operators acknowledge it with a note
(``alert_acknowledgements``, migration 0017): who, when, what. Only episodes of cohorts in
the reader's scope are read, and only those may be acknowledged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.clickhouse.engine import ClickHouse
from schemas.clickhouse.tables import ALERT_ACK_COLUMNS, ALERT_ACKNOWLEDGEMENTS

from .names import names_of
from .scope import IN_SCOPE, Scope

MAX_NOTE = 1000
MAX_ALERTS = 500

# Each episode in scope, newest first: latest state, when it fired, when it last changed,
# the share at its latest version and the threshold it crossed. ``{only_open}`` = 1 keeps
# the episodes whose latest state is "fired".
ALERT_HISTORY_SQL = """
SELECT alert_id, school, course, cohort, argMax(state, version), toString(min(fired_at)), toString(max(at)),
       argMax(share, version), argMax(learners, version), argMax(disengaged, version), argMax(threshold, version),
       argMax(disengaged_learners, version)
FROM {db}.alerts
WHERE {in_scope}
GROUP BY alert_id, school, course, cohort
HAVING {only_open:UInt8} = 0 OR argMax(state, version) = 'fired'
ORDER BY min(fired_at) DESC, alert_id
LIMIT {limit:UInt32}
""".replace("{in_scope}", IN_SCOPE)

ACKS_SQL = (
    "SELECT alert_id, operator, note, toString(at) FROM {db}.alert_acknowledgements "
    "WHERE has(CAST({ids:Array(String)} AS Array(String)), alert_id) AND " + IN_SCOPE + " ORDER BY at"
)

# The cohort an episode belongs to (to check the reader may acknowledge it).
ALERT_COHORT_SQL = "SELECT any(school), any(course), any(cohort), count() FROM {db}.alerts WHERE alert_id = {id:String}"


def alert_history(ch: ClickHouse, scope: Scope, only_open: bool = False, limit: int = MAX_ALERTS) -> list[dict]:
    params = {**scope.params(), "only_open": 1 if only_open else 0, "limit": max(1, min(limit, MAX_ALERTS))}
    rows = ch.query(ALERT_HISTORY_SQL, params)
    acks: dict[str, list[dict]] = {}
    if rows:
        for alert_id, operator, note, at in ch.query(ACKS_SQL, {**scope.params(), "ids": [r[0] for r in rows]}):
            acks.setdefault(alert_id, []).append({"operator": operator, "note": note, "at": at})
    # The disengaged learners each episode names, with their names where the reader may see them.
    named: dict[str, set[str]] = {}
    for r in rows:
        named.setdefault(str(r[1]), set()).update(str(p) for p in r[11])
    names = {school: names_of(ch, scope, school, ps) for school, ps in named.items()}
    return [
        {"alert_id": r[0], "school": r[1], "course": r[2], "cohort": r[3], "state": r[4], "fired_at": r[5],
         "changed_at": r[6], "share": float(r[7]), "learners": int(r[8]), "disengaged": int(r[9]),
         "threshold": float(r[10]), "acknowledgements": acks.get(r[0], []),
         "disengaged_learners": [{"learner": str(p), "name": names[str(r[1])].get(str(p))} for p in r[11]]}
        for r in rows
    ]  # fmt: skip


def alert_cohort(ch: ClickHouse, alert_id: str) -> tuple[str, str, str] | None:
    ((school, course, cohort, n),) = ch.query(ALERT_COHORT_SQL, {"id": alert_id})
    return (school, course, cohort) if int(n) else None


def acknowledge(ch: ClickHouse, alert_id: str, cohort: tuple[str, str, str], operator: str, note: str) -> dict:
    """Record ``operator``'s acknowledgement (the caller checked the scope); returns it."""
    at = datetime.now(UTC)
    row = (alert_id, *cohort, operator, note[:MAX_NOTE], at)
    ch.insert(f"{ch.database}.{ALERT_ACKNOWLEDGEMENTS}", ALERT_ACK_COLUMNS, [[v] for v in row])
    return {"alert_id": alert_id, "operator": operator, "note": row[5], "at": at.isoformat(timespec="milliseconds")}
