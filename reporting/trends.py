"""Trends over a chosen time range: per school and period, activity and disengagement.

``GET /api/trends`` (reporting/README.md "The dashboard's API") and the network and school
pages' charts read these queries; a researcher gets the same figures with the same SQL.
Periods are event-time hours or days (UTC), as the rollups keep them:

- activity from ``engagement`` (FINAL: replayed records count once): learning statements,
  distinct active learners, active time and sessions started;
- disengagement from ``cohort_health``: per cohort its last snapshot in the period, summed
  over the school's cohorts (disengaged learners / learners).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from schemas.clickhouse.engine import ClickHouse

from .scope import IN_SCOPE, Scope

GRAINS = ("hour", "day")
# The longest range per grain: a chart of one school stays readable (≤ 31 × 24 or 366 points).
MAX_DAYS = {"hour": 31, "day": 366}
DEFAULT_DAYS = 7
RANGE_RULE = "dashboard.range"

# Bounds go as Unix seconds: every supported server compares DateTime with toDateTime(UInt32).
ACTIVITY_TREND_SQL = """
SELECT school, toUnixTimestamp(period_start) AS t, sum(statements), uniqExact(learner), sum(active_ms), sum(sessions)
FROM {db}.engagement_by_time FINAL
WHERE grain = {grain:String} AND {in_scope}
  AND period_start >= toDateTime({start:UInt32}) AND period_start < toDateTime({end:UInt32})
  AND ({school:String} = '' OR school = {school:String})
GROUP BY school, period_start
ORDER BY school, period_start
""".replace("{in_scope}", IN_SCOPE)

_HEALTH_TREND_SQL = """
SELECT school, t, sum(d), sum(n)
FROM (
    SELECT school, course, cohort, toUnixTimestamp({bucket}) AS t, argMax(disengaged, at) AS d,
           argMax(learners, at) AS n
    FROM {db}.cohort_health FINAL
    WHERE {in_scope} AND at >= toDateTime({start:UInt32}) AND at < toDateTime({end:UInt32})
      AND ({school:String} = '' OR school = {school:String})
    GROUP BY school, course, cohort, t
)
GROUP BY school, t
ORDER BY school, t
""".replace("{in_scope}", IN_SCOPE)
HEALTH_TREND_SQL = {
    "hour": _HEALTH_TREND_SQL.replace("{bucket}", "toStartOfHour(at)"),
    "day": _HEALTH_TREND_SQL.replace("{bucket}", "toStartOfDay(at)"),
}

# The newest event-time day the reader can see: the default range ends there, so a school
# replaying last term's statements gets a chart of last term, not of an empty week.
NEWEST_DAY_SQL = """
SELECT toUnixTimestamp(max(period_start)), count()
FROM {db}.engagement_by_time
WHERE grain = 'day' AND {in_scope} AND ({school:String} = '' OR school = {school:String})
""".replace("{in_scope}", IN_SCOPE)


@dataclass(frozen=True)
class TrendRange:
    """Days ``first`` to ``last`` (inclusive, UTC) in periods of ``grain``; ``None`` days: the newest week."""

    first: date | None = None
    last: date | None = None
    grain: str = "day"

    def bounds(self) -> tuple[int, int]:
        """[start, end) in Unix seconds."""
        assert self.first is not None and self.last is not None
        return day_bounds(self.first, self.last)

    def ending_on(self, last: date) -> TrendRange:
        days = DEFAULT_DAYS if self.grain == "day" else 1
        return TrendRange(last - timedelta(days=days - 1), last, self.grain)


def day_bounds(first: date, last: date) -> tuple[int, int]:
    """Days ``first`` to ``last`` (inclusive, UTC) as [start, end) in Unix seconds."""
    start = datetime.combine(first, datetime.min.time(), UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), UTC)
    return int(start.timestamp()), int(end.timestamp())


def parse_range(query: Mapping[str, str]) -> TrendRange:
    """``from``, ``to`` (YYYY-MM-DD, inclusive) and ``grain`` of a request; ValueError naming the rule."""
    grain = query.get("grain", "day")
    if grain not in GRAINS:
        raise ValueError(f"{RANGE_RULE}: grain must be one of {', '.join(GRAINS)}, got {grain[:20]!r}")
    first, last = parse_days(query)
    if first is not None and last is not None and (last - first).days + 1 > MAX_DAYS[grain]:
        raise ValueError(f"{RANGE_RULE}: at most {MAX_DAYS[grain]} days in periods of one {grain}")
    return TrendRange(first, last, grain)


def parse_days(query: Mapping[str, str]) -> tuple[date | None, date | None]:
    """``from`` and ``to`` (YYYY-MM-DD, inclusive): both or neither; ValueError naming the rule."""
    first, last = _day(query, "from"), _day(query, "to")
    if (first is None) != (last is None):
        raise ValueError(f"{RANGE_RULE}: give both from and to (YYYY-MM-DD), or neither for the newest days")
    if first is not None and last is not None and last < first:
        raise ValueError(f"{RANGE_RULE}: to ({last}) is before from ({first})")
    return first, last


def _day(query: Mapping[str, str], name: str) -> date | None:
    text = query.get(name, "")
    if not text:
        return None
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{RANGE_RULE}: {name} must be a day as YYYY-MM-DD, got {text[:20]!r}") from None


def resolved(ch: ClickHouse, scope: Scope, rng: TrendRange, school: str = "") -> TrendRange:
    """``rng`` with its days filled in: the newest days with data in scope (today when none)."""
    if rng.first is not None:
        return rng
    ((newest, rows),) = ch.query(NEWEST_DAY_SQL, {**scope.params(), "school": school})
    last = datetime.fromtimestamp(int(newest), UTC).date() if int(rows) else datetime.now(UTC).date()
    return rng.ending_on(last)


def school_trends(ch: ClickHouse, scope: Scope, rng: TrendRange, school: str = "") -> dict:
    """Per school (or only ``school``) in ``scope``: one point per period with activity or a snapshot."""
    rng = resolved(ch, scope, rng, school)
    start, end = rng.bounds()
    params = {**scope.params(), "grain": rng.grain, "start": start, "end": end, "school": school}
    points: dict[tuple[str, int], dict] = {}

    def point(school_name: str, t: int) -> dict:
        key = (school_name, int(t))
        if key not in points:
            at = datetime.fromtimestamp(int(t), UTC).isoformat().replace("+00:00", "Z")
            points[key] = {"school": school_name, "period": at, "statements": 0, "active_learners": 0,
                           "active_ms": 0, "sessions": 0, "disengaged": None, "learners": None, "share": None}  # fmt: skip
        return points[key]

    for name, t, statements, learners, active_ms, sessions in ch.query(ACTIVITY_TREND_SQL, params):
        point(name, t).update(statements=int(statements), active_learners=int(learners), active_ms=int(active_ms),
                              sessions=int(sessions))  # fmt: skip
    for name, t, disengaged, learners in ch.query(HEALTH_TREND_SQL[rng.grain], params):
        n = int(learners)
        point(name, t).update(disengaged=int(disengaged), learners=n, share=int(disengaged) / n if n else None)
    assert rng.first is not None and rng.last is not None
    return {
        "from": rng.first.isoformat(), "to": rng.last.isoformat(), "grain": rng.grain,
        "points": [points[k] for k in sorted(points)],
    }  # fmt: skip


TREND_CSV_COLUMNS = ("school", "period", "statements", "active_learners", "active_ms", "sessions", "disengaged",
                     "learners", "share")  # fmt: skip
