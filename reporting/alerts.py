"""Disengagement alert episodes for the dashboard's alerts page, and their acknowledgements.

An episode (``alerts``, one ``alert_id`` per fired-to-resolved run, versions replacing
each other) is shown with its latest state; operators acknowledge it with a note
(``alert_acknowledgements``, migration 0017): who, when, what. Only episodes of cohorts in
the reader's scope are read, and only those may be acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from schemas.clickhouse.engine import ClickHouse
from schemas.clickhouse.tables import ALERT_ACK_COLUMNS, ALERT_ACKNOWLEDGEMENTS

from .names import names_of
from .scope import IN_SCOPE, Scope
from .trends import day_bounds

MAX_NOTE = 1000
MAX_ALERTS = 500

# Each episode in scope, newest first: latest state, when it fired, when it last changed,
# the share at its latest version and the threshold it crossed. ``{only_open}`` = 1 keeps
# the episodes whose latest state is "fired"; episodes that fired in [start, end) (Unix
# seconds; 0, 0: any time) and whose school, course or cohort holds ``q`` (any case).
_EPISODES = """
SELECT alert_id, school, course, cohort, argMax(state, version) AS latest_state, min(fired_at) AS first_fired,
       toString(max(at)) AS changed, argMax(share, version) AS latest_share, argMax(learners, version) AS latest_learners,
       argMax(disengaged, version) AS latest_disengaged, argMax(threshold, version) AS latest_threshold,
       argMax(disengaged_learners, version) AS named
FROM {db}.alerts
WHERE {in_scope}
  AND ({end:UInt32} = 0 OR (fired_at >= toDateTime({start:UInt32}) AND fired_at < toDateTime({end:UInt32})))
  AND (empty({q:String}) OR positionCaseInsensitiveUTF8(concat(school, ' ', course, ' ', cohort), {q:String}) > 0)
GROUP BY alert_id, school, course, cohort
HAVING {only_open:UInt8} = 0 OR latest_state = 'fired'
""".replace("{in_scope}", IN_SCOPE)
ALERT_HISTORY_SQL = (
    "SELECT alert_id, school, course, cohort, latest_state, toString(first_fired), changed, latest_share, "
    "latest_learners, latest_disengaged, latest_threshold, named FROM (" + _EPISODES + ") "
    "ORDER BY first_fired DESC, alert_id LIMIT {offset:UInt32}, {limit:UInt32}"
)
ALERT_COUNT_SQL = "SELECT count() FROM (" + _EPISODES + ")"

ACKS_SQL = (
    "SELECT alert_id, operator, note, toString(at) FROM {db}.alert_acknowledgements "
    "WHERE has(CAST({ids:Array(String)} AS Array(String)), alert_id) AND " + IN_SCOPE + " ORDER BY at"
)

# The cohort an episode belongs to (to check the reader may acknowledge it).
ALERT_COHORT_SQL = "SELECT any(school), any(course), any(cohort), count() FROM {db}.alerts WHERE alert_id = {id:String}"


@dataclass(frozen=True)
class AlertQuery:
    """Which episodes: open only, fired on days ``first``…``last`` (UTC; None: any), search text, page."""

    only_open: bool = False
    first: date | None = None
    last: date | None = None
    search: str = ""
    offset: int = 0
    limit: int = MAX_ALERTS

    def params(self) -> dict:
        start, end = (0, 0) if self.first is None or self.last is None else day_bounds(self.first, self.last)
        return {"only_open": 1 if self.only_open else 0, "start": start, "end": end, "q": self.search[:200],
                "offset": max(0, self.offset), "limit": max(1, min(self.limit, MAX_ALERTS))}  # fmt: skip


def alert_page(ch: ClickHouse, scope: Scope, which: AlertQuery = AlertQuery()) -> dict:
    """One page of :func:`alert_history` with ``total``: how many episodes ``which`` finds in ``scope``."""
    params = {**scope.params(), **which.params()}
    ((total,),) = ch.query(ALERT_COUNT_SQL, params)
    return {"total": int(total), "offset": params["offset"], "limit": params["limit"],
            "alerts": alert_history(ch, scope, which)}  # fmt: skip


def alert_history(ch: ClickHouse, scope: Scope, which: AlertQuery = AlertQuery()) -> list[dict]:
    """The episodes ``which`` asks for in ``scope``, newest first, with acknowledgements and named learners."""
    params = {**scope.params(), **which.params()}
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
