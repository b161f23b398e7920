"""The dashboard's scoped queries on both engines (chDB and Debian's clickhouse-server).

Rows are written straight into the base and rollup tables (statements → activity_daily
and activity_learners through their materialized views, activity_totals recomputed as the
statements sink does; engagement, with engagement_hourly recomputed as the engagement sink
does; mastery, cohort_health, alerts), and every
figure each kind of scope gets is compared with the same figure computed here in Python
from the rows written. Names carry ':' '/' and non-ASCII letters, as course IRIs do.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest

# The sparkline as first defined (before engagement_hourly): FINAL over every learner's hour rows.
from benchmarks.bench_sparkline import FIRST_SQL as _FIRST_HOURLY_SQL
from learnpulse.pipeline import open_clickhouse
from learnpulse.settings import ClickHouseSettings, Settings
from reporting.dashboard import dashboard_state
from reporting.drilldown import FlagRules, cohort_learners, school_cohorts
from reporting.learner import learner_timeline
from reporting.scope import EVERY_SCHOOL, Scope
from reporting.summary import school_summaries
from sinks.hourly import recompute_touched_hours
from sinks.totals import recompute_all

SCHOOLS = ("s-a", "s-b")
COURSES = ("https://c.example/1:algèbre", "https://c.example/2")
COHORTS = ("k1", "k/2")
DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


def _learners(school, course, cohort):
    i = SCHOOLS.index(school) * 4 + COURSES.index(course) * 2 + COHORTS.index(cohort)
    return [f"{i}-learner-{n}" for n in range(2 + i % 3)]


_ENGAGEMENT_COLUMNS = ["school", "course", "cohort", "learner", "grain", "period_start", "statements", "sessions",
                       "active_ms", "last_event", "version"]  # fmt: skip


def _write_engagement(ch, rows, version: int) -> None:
    """One batch of engagement rows, as the engagement sink writes it (engagement_hourly recomputed after)."""
    ch.insert(f"{ch.database}.engagement", _ENGAGEMENT_COLUMNS, [*map(list, zip(*rows)), [version] * len(rows)])
    recompute_touched_hours(ch, {"engagement": [(*r, version) for r in rows]})


@pytest.fixture
def data(tmp_path, clickhouse_url):
    ch = open_clickhouse(Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url=clickhouse_url)))
    stmts, eng, mastery, health, alerts = [], [], [], [], []
    for school, course, cohort in itertools.product(SCHOOLS, COURSES, COHORTS):
        for n, learner in enumerate(_learners(school, course, cohort)):
            for day in range(10):
                if (day + n) % 3 == 0:  # active on some days only
                    continue
                at = DAY0 + timedelta(days=day, hours=n)
                for _ in range(1 + n):
                    stmts.append((uuid.uuid4(), school, course, cohort, learner, at))
                eng.append((school, course, cohort, learner, "day", at.replace(hour=0), 1 + n, 1, 60_000 * (day + n + 1), at))
                eng.append((school, course, cohort, learner, "hour", at, 1 + n, 1, 60_000 * (day + n + 1), at))
            mastery.append((school, course, learner, "skill-1", 0.1 + 0.2 * n, DAY0))
        health.append((school, course, cohort, DAY0, 10, 3, 0.3))
        if school == "s-a":
            alerts.append((f"{school}|{course}|{cohort}", school, course, cohort, "fired", DAY0, DAY0, 10, 3, 0.3, 0.25))
    cols = list(zip(*stmts))
    n = len(stmts)
    ch.insert(f"{ch.database}.statements",
              ["statement_id", "school", "course", "cohort", "learner", "timestamp", "stored", "voided", "verb_id"],
              [*cols, list(cols[5]), [0] * n, ["http://adlnet.gov/expapi/verbs/experienced"] * n])  # fmt: skip
    recompute_all(ch)  # as the statements sink does after its inserts
    _write_engagement(ch, eng, 1)
    cols = list(zip(*mastery))
    ch.insert(f"{ch.database}.mastery", ["school", "course", "learner", "skill", "p_mastery", "event_time",
                                         "observations", "correct", "version"],
              [*cols, [1] * len(mastery), [1] * len(mastery), [1] * len(mastery)])  # fmt: skip
    cols = list(zip(*health))
    ch.insert(f"{ch.database}.cohort_health", ["school", "course", "cohort", "at", "learners", "disengaged", "share",
                                               "median_active_ms_7d", "version"],
              [*cols, [0] * len(health), [1] * len(health)])  # fmt: skip
    cols = list(zip(*alerts))
    ch.insert(f"{ch.database}.alerts", ["alert_id", "school", "course", "cohort", "state", "at", "fired_at", "learners",
                                        "disengaged", "share", "threshold", "disengaged_learners", "version"],
              [*cols, [[]] * len(alerts), [1] * len(alerts)])  # fmt: skip
    yield ch, stmts, eng, mastery
    ch.close()


TEACHER = ("s-b", COURSES[1], COHORTS[0])
SCOPES = {
    "network": (EVERY_SCHOOL, lambda s, c, k: True),
    "school": (Scope.of_schools(["s-b"]), lambda s, c, k: s == "s-b"),
    "teacher": (Scope.of_cohorts([TEACHER]), lambda s, c, k: (s, c, k) == TEACHER),
}


@pytest.mark.parametrize("kind", list(SCOPES))
def test_each_scope_gets_exactly_its_rows_figures(data, kind):
    ch, stmts, eng, mastery = data
    scope, inside = SCOPES[kind]
    mine = [s for s in stmts if inside(s[1], s[2], s[3])]
    expected = {}
    for school in {s[1] for s in mine}:
        rows = [s for s in mine if s[1] == school]
        expected[school] = (len(rows), len({s[4] for s in rows}), len({(s[2]) for s in rows}))
    got = {r.school: (r.statements, r.learners, r.courses) for r in school_summaries(ch, scope)}
    assert got == expected

    state = dashboard_state(ch, scope)
    assert {s["school"]: s["statements"] for s in state["schools"]} == {k: v[0] for k, v in expected.items()}
    newest = {school: max(e[5] for e in eng if e[0] == school and e[4] == "day") for school in SCHOOLS}
    for card in state["schools"]:
        today = [e for e in eng if e[0] == card["school"] and e[4] == "day" and e[5] == newest[card["school"]]
                 and inside(*e[:3])]  # fmt: skip
        assert card["active_ms_today"] == sum(e[8] for e in today)
        week = {e[3] for e in eng if e[0] == card["school"] and e[4] == "day" and inside(*e[:3])
                and e[5] > max(x[5] for x in eng if x[4] == "day") - timedelta(days=7)}  # fmt: skip
        assert card["learners_7d"] == len(week) and card["learners_today"] == len({e[3] for e in today})
        learners = {s[4] for s in mine if s[1] == card["school"]}
        p = [m[4] for m in mastery if m[0] == card["school"] and m[2] in learners]
        assert card["mastery_mean"] == pytest.approx(sum(p) / len(p))
    assert {(c["school"], c["course"], c["cohort"]) for c in state["cohorts_at_risk"]} <= {
        (s[1], s[2], s[3]) for s in mine
    }
    assert {(a["school"], a["course"], a["cohort"]) for a in state["alerts"]} == {
        (s[1], s[2], s[3]) for s in mine if s[1] == "s-a"
    }

    cohorts = school_cohorts(ch, scope, "s-b")["cohorts"]
    want = sorted({(s[2], s[3]) for s in mine if s[1] == "s-b"})
    assert [(c["course"], c["cohort"]) for c in cohorts] == want
    for c in cohorts:
        rows = [s for s in mine if s[1:4] == ("s-b", c["course"], c["cohort"])]
        assert (c["statements"], c["learners"], c["share"], c["open_alerts"]) == (len(rows), len({s[4] for s in rows}), 0.3, 0)


@pytest.mark.parametrize("kind", list(SCOPES))
def test_cohort_learners_with_7_day_active_time_and_median(data, kind):
    ch, _stmts, eng, _mastery = data
    scope, inside = SCOPES[kind]
    answer = cohort_learners(ch, scope, *TEACHER)
    rows = [e for e in eng if e[:3] == TEACHER and e[4] == "day"]
    newest = max(e[5] for e in rows)
    learners = sorted({e[3] for e in rows})
    active = {x: sum(e[8] for e in rows if e[3] == x and e[5] > newest - timedelta(days=7)) for x in learners}
    assert [x["learner"] for x in answer["learners"]] == learners
    assert {x["learner"]: x["active_ms_7d"] for x in answer["learners"]} == active
    v = sorted(active.values())
    med = v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) // 2  # as the stream worker
    assert answer["median_active_ms_7d"] == med
    # Why each learner is flagged: idle days since the cohort's newest event, active time vs the median.
    newest_event = max(e[9] for e in rows)
    for x in answer["learners"]:
        seen = max(e[9] for e in rows if e[3] == x["learner"])
        idle = round((newest_event - seen).total_seconds() / 86400, 2)
        assert x["days_since_seen"] == idle
        expected = {"low_active_time"} if active[x["learner"]] < 0.25 * med else set()
        assert {f["rule"] for f in x["flags"]} == expected | ({"inactive"} if idle >= 7 else set())
    # With a lower inactivity threshold, the learners idle that long are flagged "inactive".
    strict = cohort_learners(ch, scope, *TEACHER, rules=FlagRules(inactive_days=0.5))
    idle = {x["learner"] for x in strict["learners"] if x["days_since_seen"] >= 0.5}
    assert idle and {x["learner"] for x in strict["learners"] if "inactive" in {f["rule"] for f in x["flags"]}} == idle
    # A cohort outside the scope gives nothing, even asked for directly (the HTTP layer answers 403 first).
    outside = cohort_learners(ch, scope, "s-a", COURSES[0], COHORTS[0])
    assert bool(outside["learners"]) == inside("s-a", COURSES[0], COHORTS[0])


def test_school_cohorts_search_and_pages(data):
    ch = data[0]
    every = school_cohorts(ch, EVERY_SCHOOL, "s-a")
    assert every["total"] == 4 and len(every["cohorts"]) == 4
    pairs = [(c["course"], c["cohort"]) for c in every["cohorts"]]
    pages = [school_cohorts(ch, EVERY_SCHOOL, "s-a", offset=o, limit=3) for o in (0, 3)]
    assert [p["total"] for p in pages] == [4, 4]
    assert [(c["course"], c["cohort"]) for p in pages for c in p["cohorts"]] == pairs
    found = school_cohorts(ch, EVERY_SCHOOL, "s-a", search="ALGÈBRE")  # any case, non-ASCII
    assert found["total"] == 2 and {c["course"] for c in found["cohorts"]} == {COURSES[0]}
    assert school_cohorts(ch, EVERY_SCHOOL, "s-a", search="k/2")["total"] == 2
    assert school_cohorts(ch, EVERY_SCHOOL, "s-a", search="nothing like it") == {
        "total": 0, "offset": 0, "limit": 500, "through_day": None, "cohorts": []}
    teacher = school_cohorts(ch, Scope.of_cohorts([TEACHER]), "s-b", search="k")
    assert teacher["total"] == 1


@pytest.mark.parametrize("kind", list(SCOPES))
def test_a_learners_timeline_in_its_cohort(data, kind):
    ch, stmts, eng, mastery = data
    scope, inside = SCOPES[kind]
    learner = _learners(*TEACHER)[1]
    got = learner_timeline(ch, scope, *TEACHER, learner)
    days = sorted((e for e in eng if e[:4] == (*TEACHER, learner) and e[4] == "day"), key=lambda e: e[5])
    assert [(d["day"], d["statements"], d["sessions"], d["active_ms"]) for d in got["days"]] == [
        (e[5].date().isoformat(), e[6], e[7], e[8]) for e in days
    ]
    mine = sorted((s for s in stmts if s[1:5] == (*TEACHER, learner)), key=lambda s: s[5], reverse=True)
    assert len(got["statements"]) == min(100, len(mine))
    assert got["statements"][0]["timestamp"].startswith(mine[0][5].strftime("%Y-%m-%d %H:%M:%S"))
    assert [m["p_mastery"] for m in got["mastery"]] == [m[4] for m in mastery if m[:3] == (TEACHER[0], TEACHER[1], learner)]
    # The same learner asked for through another cohort, or a learner of another cohort: nothing.
    assert learner_timeline(ch, scope, TEACHER[0], TEACHER[1], COHORTS[1], learner) is None
    other = _learners("s-a", COURSES[0], COHORTS[0])[0]
    seen = learner_timeline(ch, scope, "s-a", COURSES[0], COHORTS[0], other)
    assert (seen is not None) == inside("s-a", COURSES[0], COHORTS[0])


@pytest.mark.parametrize("kind", list(SCOPES))
def test_alert_history_and_acknowledgements_in_scope(data, kind):
    from reporting.alerts import AlertQuery, acknowledge, alert_cohort, alert_history

    ch = data[0]
    scope, inside = SCOPES[kind]
    # One s-b episode of the teacher's cohort that fired and resolved.
    ch.insert(f"{ch.database}.alerts", ["alert_id", "school", "course", "cohort", "state", "at", "fired_at", "learners",
                                        "disengaged", "share", "threshold", "disengaged_learners", "version"],
              [[x, x] for x in ("ep-b",)] + [[v, v] for v in TEACHER]
              + [["fired", "resolved"], [DAY0, DAY0 + timedelta(days=1)], [DAY0, DAY0], [10, 10], [5, 1], [0.5, 0.1],
                 [0.4, 0.4], [[], []], [1, 2]])  # fmt: skip
    every = alert_history(ch, scope)
    expected = {a for a in [(f"s-a|{c}|{k}", "s-a", c, k) for c in COURSES for k in COHORTS] + [("ep-b", *TEACHER)]
                if inside(*a[1:])}  # fmt: skip
    assert {(a["alert_id"], a["school"], a["course"], a["cohort"]) for a in every} == expected
    by_id = {a["alert_id"]: a for a in every}
    if "ep-b" in by_id:
        assert by_id["ep-b"]["state"] == "resolved" and by_id["ep-b"]["share"] == 0.1
    assert {a["alert_id"] for a in alert_history(ch, scope, AlertQuery(only_open=True))} == {x[0] for x in expected} - {"ep-b"}

    assert alert_cohort(ch, "ep-b") == TEACHER and alert_cohort(ch, "nope") is None
    acknowledge(ch, "ep-b", TEACHER, "tia", "called the tutor")
    acknowledge(ch, "s-a|" + COURSES[0] + "|" + COHORTS[0], ("s-a", COURSES[0], COHORTS[0]), "sam", "on it")
    got = {a["alert_id"]: [(k["operator"], k["note"]) for k in a["acknowledgements"]] for a in alert_history(ch, scope)}
    if inside(*TEACHER):
        assert got["ep-b"] == [("tia", "called the tutor")]
    assert all(alert_id in {x[0] for x in expected} for alert_id in got)


@pytest.mark.parametrize("kind", list(SCOPES))
def test_learner_names_only_within_the_scope(data, kind):
    """The staff directory (learner_names): each scope gets the newest name of exactly the learners
    it covers (a teacher: those seen in its cohort), on the cohort and learner answers too."""
    from reporting.names import names_of

    ch, _stmts, eng, _mastery = data
    scope, inside = SCOPES[kind]
    every = sorted({(e[0], e[3]) for e in eng})
    sid = uuid.UUID(int=1)
    # An older name then the newest (by version) for each learner; written newest first.
    rows = [(s, p, f"Name of {p} ü", 2_000, sid) for s, p in every] + [(s, p, "old name", 1_000, sid) for s, p in every]
    ch.insert(f"{ch.database}.learner_names", ["school", "learner", "name", "version", "statement_id"],
              [list(c) for c in zip(*rows)])  # fmt: skip
    covered = {(e[0], e[3]) for e in eng if inside(*e[:3])}
    for school in SCHOOLS:
        got = names_of(ch, scope, school, [p for s, p in every if s == school])
        assert got == {p: f"Name of {p} ü" for s, p in covered if s == school}
    answer = cohort_learners(ch, scope, *TEACHER)
    assert {x["learner"]: x["name"] for x in answer["learners"]} == {p: f"Name of {p} ü" for p in _learners(*TEACHER)}
    learner = _learners(*TEACHER)[0]
    assert learner_timeline(ch, scope, *TEACHER, learner)["name"] == f"Name of {learner} ü"
    # A learner of a cohort outside the scope: no name, even asked for by pseudonym.
    other = _learners("s-a", COURSES[0], COHORTS[0])[0]
    assert bool(names_of(ch, scope, "s-a", [other])) == inside("s-a", COURSES[0], COHORTS[0])


def _expected_trends(eng, health, inside, grain: str, first, last, school=""):
    """Per (school, period): activity summed from the engagement rows written, and the share from
    each cohort's last snapshot in the period, computed here from the rows written."""
    start, end = datetime.combine(first, datetime.min.time(), UTC), datetime.combine(last, datetime.min.time(), UTC)
    end += timedelta(days=1)
    out: dict[tuple[str, str], dict] = {}

    def at(school_name, t):
        return out.setdefault((school_name, t.isoformat().replace("+00:00", "Z")), {
            "statements": 0, "learners_seen": set(), "active_ms": 0, "sessions": 0, "last": {}})  # fmt: skip

    for s, c, k, learner, g, period, statements, sessions, active_ms, _last in eng:
        if g == grain and inside(s, c, k) and start <= period < end and school in ("", s):
            p = at(s, period)
            p["statements"] += statements
            p["sessions"] += sessions
            p["active_ms"] += active_ms
            p["learners_seen"].add(learner)
    for s, c, k, when, learners, disengaged in health:
        if inside(s, c, k) and start <= when < end and school in ("", s):
            bucket = when.replace(minute=0, second=0) if grain == "hour" else when.replace(hour=0, minute=0, second=0)
            cohorts = at(s, bucket)["last"]
            if (c, k) not in cohorts or cohorts[(c, k)][0] < when:
                cohorts[(c, k)] = (when, learners, disengaged)
    return {
        key: (p["statements"], len(p["learners_seen"]), p["active_ms"], p["sessions"],
              sum(x[2] for x in p["last"].values()) if p["last"] else None,
              sum(x[1] for x in p["last"].values()) if p["last"] else None)
        for key, p in out.items()
    }  # fmt: skip


@pytest.mark.parametrize("kind", list(SCOPES))
def test_trends_per_period_equal_the_rows_written_within_the_scope(data, kind):
    from reporting.trends import TrendRange, school_trends

    ch, _stmts, eng, _mastery = data
    scope, inside = SCOPES[kind]
    # Later snapshots, fewer disengaged last: in a day the last one counts (not the most), and a
    # replayed copy (higher version) replaces its first.
    health = [(s, c, k, DAY0, 10, 3) for s, c, k in itertools.product(SCHOOLS, COURSES, COHORTS)]
    later = [(s, c, k, DAY0 + timedelta(days=2, hours=h), 10 + h, 14 - h) for h in (5, 9)
             for s, c, k in itertools.product(SCHOOLS, COURSES[:1], COHORTS)]  # fmt: skip
    health += later
    cols = list(zip(*[x[:4] for x in later]))
    ch.insert(f"{ch.database}.cohort_health", ["school", "course", "cohort", "at", "learners", "disengaged", "share",
                                               "median_active_ms_7d", "version"],
              [*cols, [x[4] for x in later], [x[5] for x in later], [x[5] / x[4] for x in later], [0] * len(later),
               [1] * len(later)])  # fmt: skip
    replayed = later[0]
    ch.insert(f"{ch.database}.cohort_health", ["school", "course", "cohort", "at", "learners", "disengaged", "share",
                                               "median_active_ms_7d", "version"],
              [[replayed[0]], [replayed[1]], [replayed[2]], [replayed[3]], [40], [20], [0.5], [0], [2]])  # fmt: skip
    health[health.index(replayed)] = (*replayed[:4], 40, 20)

    for grain, first, last in (("day", DAY0.date(), DAY0.date() + timedelta(days=9)),
                               ("hour", DAY0.date() + timedelta(days=2), DAY0.date() + timedelta(days=3))):  # fmt: skip
        for school in ("", "s-b"):
            got = school_trends(ch, scope, TrendRange(first, last, grain), school)
            assert (got["from"], got["to"], got["grain"]) == (first.isoformat(), last.isoformat(), grain)
            want = _expected_trends(eng, health, inside, grain, first, last, school)
            assert want, "the range holds rows"
            assert {(p["school"], p["period"]): (p["statements"], p["active_learners"], p["active_ms"], p["sessions"],
                                                 p["disengaged"], p["learners"]) for p in got["points"]} == want  # fmt: skip
    # No days chosen: the newest 7 days with data in scope.
    newest = school_trends(ch, scope, TrendRange())
    newest_day = max(e[5] for e in eng if e[4] == "day" and inside(*e[:3])).date()
    assert (newest["from"], newest["to"]) == ((newest_day - timedelta(days=6)).isoformat(), newest_day.isoformat())


@pytest.mark.parametrize("kind", list(SCOPES))
def test_school_page_cohorts_carry_their_trend_week_and_mastery(data, kind):
    ch, _stmts, eng, mastery = data
    scope, inside = SCOPES[kind]
    days = [e for e in eng if e[0] == "s-b" and e[4] == "day" and inside(*e[:3])]
    newest = max(e[5] for e in days)
    answer = school_cohorts(ch, scope, "s-b")
    assert answer["through_day"] == newest.date().isoformat()
    assert answer["cohorts"], "the scope holds cohorts of s-b"
    for c in answer["cohorts"]:
        mine = [e for e in days if e[1:3] == (c["course"], c["cohort"])]
        per_day: dict[datetime, set] = {}
        for e in mine:
            if e[5] > newest - timedelta(days=14):
                per_day.setdefault(e[5], set()).add(e[3])
        assert c["trend"] == [[int(d.timestamp()), len(ls)] for d, ls in sorted(per_day.items())]
        week = [e for e in mine if e[5] > newest - timedelta(days=7)]
        assert c["active_ms_7d"] == sum(e[8] for e in week)
        assert c["active_learners_7d"] == len({e[3] for e in week})
        learners = {e[3] for e in mine}
        p = [m[4] for m in mastery if m[0] == "s-b" and m[1] == c["course"] and m[2] in learners]
        assert c["mastery_mean"] == pytest.approx(sum(p) / len(p))


@pytest.mark.parametrize("kind", list(SCOPES))
def test_alert_pages_by_fired_day_search_and_offset(data, kind):
    from reporting.alerts import AlertQuery, alert_page

    ch = data[0]
    scope, inside = SCOPES[kind]
    later = [(f"late-{i}", *cohort, DAY0 + timedelta(days=2 + i)) for i, cohort in
             enumerate([TEACHER, ("s-a", COURSES[1], COHORTS[1]), ("s-b", COURSES[0], COHORTS[1])])]  # fmt: skip
    n = len(later)
    ch.insert(f"{ch.database}.alerts", ["alert_id", "school", "course", "cohort", "state", "at", "fired_at", "learners",
                                        "disengaged", "share", "threshold", "disengaged_learners", "version"],
              [[x[0] for x in later], [x[1] for x in later], [x[2] for x in later], [x[3] for x in later], ["fired"] * n,
               [x[4] for x in later], [x[4] for x in later], [10] * n, [5] * n, [0.5] * n, [0.4] * n, [[]] * n, [1] * n])  # fmt: skip
    everything = [(f"s-a|{c}|{k}", "s-a", c, k, DAY0) for c in COURSES for k in COHORTS] + later
    mine = [a for a in everything if inside(*a[1:4])]

    def ids(which: AlertQuery) -> list[str]:
        return [a["alert_id"] for a in alert_page(ch, scope, which)["alerts"]]

    day2, day4 = (DAY0 + timedelta(days=2)).date(), (DAY0 + timedelta(days=4)).date()
    in_range = sorted((a for a in mine if day2 <= a[4].date() <= day4), key=lambda a: (-a[4].timestamp(), a[0]))
    assert ids(AlertQuery(first=day2, last=day4)) == [a[0] for a in in_range]
    newest_first = sorted(mine, key=lambda a: (-a[4].timestamp(), a[0]))
    page = alert_page(ch, scope, AlertQuery(offset=1, limit=2))
    assert page["total"] == len(mine) and [a["alert_id"] for a in page["alerts"]] == [a[0] for a in newest_first[1:3]]
    assert ids(AlertQuery(search="K/2")) == [a[0] for a in newest_first if a[3] == "k/2"]
    assert alert_page(ch, scope, AlertQuery(search="no such cohort"))["total"] == 0


def _history_world(ch) -> dict[str, list[tuple[int, float]]]:
    """Estimates of skill-2 over time for the learners of two cohorts of one course: the first
    learner of each cohort flat over the last 6 attempts (stalled), the second rising. Returns
    each learner's (minutes after the start, P) points."""
    start = DAY0 + timedelta(days=9)
    series = {}
    for cohort in COHORTS:
        for n, learner in enumerate(_learners(TEACHER[0], TEACHER[1], cohort)[:2]):
            ps = [0.3, 0.42, 0.41, 0.4, 0.42, 0.41, 0.42] if n == 0 else [0.3 + 0.05 * i for i in range(7)]
            series[learner] = list(enumerate(ps))
    rows = [(TEACHER[0], TEACHER[1], learner, "skill-2", p, i + 1, i, start + timedelta(minutes=i), i + 1)
            for learner, points in series.items() for i, p in points]  # fmt: skip
    ch.insert(f"{ch.database}.mastery_history", ["school", "course", "learner", "skill", "p_mastery", "observations",
                                                 "correct", "event_time", "version"], [list(c) for c in zip(*rows)])  # fmt: skip
    return series


def _not_risen(points: list[tuple[int, float]], attempts: int) -> bool:
    return len(points) > attempts and points[-1][1] <= points[-1 - attempts][1] and points[-1][1] < 0.95


@pytest.mark.parametrize("kind", list(SCOPES))
def test_cohort_mastery_heatmap_and_stalled_flags_in_scope(data, kind):
    ch, _stmts, _eng, mastery = data
    scope, inside = SCOPES[kind]
    series = _history_world(ch)
    answer = cohort_learners(ch, scope, *TEACHER, rules=FlagRules(stalled_attempts=5, stalled_within_days=7))
    # The heatmap's cells: the current estimate (`mastery FINAL`) of each learner of the cohort.
    want = {m[2]: {m[3]: m[4]} for m in mastery if m[:2] == TEACHER[:2] and m[2] in _learners(*TEACHER)}
    assert {x["learner"]: x["mastery"] for x in answer["learners"]} == want
    assert answer["skills"] == ["skill-1"]
    stalled = {x["learner"]: [f for f in x["flags"] if f["rule"] == "mastery_stalled"] for x in answer["learners"]}
    for learner, flags in stalled.items():
        expected = _not_risen(series.get(learner, []), 5)
        assert bool(flags) == expected, learner
        if expected:
            (skill,) = flags[0]["skills"]
            assert skill == {"skill": "skill-2", "p_mastery": series[learner][-1][1], "was": series[learner][-6][1],
                             "attempts_since": 5}  # fmt: skip
    assert any(stalled.values())
    # Stricter: over 6 attempts the first learner's mastery did rise (0.3 -> 0.42).
    wider = cohort_learners(ch, scope, *TEACHER, rules=FlagRules(stalled_attempts=6, stalled_within_days=7))
    assert not any(f["rule"] == "mastery_stalled" for x in wider["learners"] for f in x["flags"])
    # A practice older than the window is not "still practising".
    short = cohort_learners(ch, scope, *TEACHER, rules=FlagRules(stalled_within_days=0.01))
    assert not any(f["rule"] == "mastery_stalled" for x in short["learners"] for f in x["flags"])
    # The learner page's mastery over time: every point of the history, in event-time order.
    learner = _learners(*TEACHER)[0]
    got = learner_timeline(ch, scope, *TEACHER, learner)["mastery_history"]
    assert [(h["skill"], [(p["observations"], p["p_mastery"]) for p in h["points"]]) for h in got] == [
        ("skill-2", [(i + 1, p) for i, p in series[learner]])]
    # Outside the scope: another cohort's learners get no history through a cohort they are not in.
    other = _learners(TEACHER[0], TEACHER[1], COHORTS[1])[0]
    assert learner_timeline(ch, scope, *TEACHER, other) is None


def _engagement_figures(ch, scope) -> dict:
    """Every figure the dashboard reads from engagement (newest day/hour, 7 days, 24 hours, trends, school page)."""
    from reporting.trends import TrendRange, school_trends

    state = dashboard_state(ch, scope)
    figures = {("card", s["school"]): (s["active_ms_today"], s["sessions_today"], s["learners_today"],
                                       s["learners_7d"], s["active_last_hour"], tuple(map(tuple, s["hourly"])))
               for s in state["schools"]}  # fmt: skip
    for grain, first, last in (("day", None, None), ("hour", DAY0.date() + timedelta(days=9), DAY0.date() + timedelta(days=9))):
        for p in school_trends(ch, scope, TrendRange(first, last, grain))["points"]:
            figures[(grain, p["school"], p["period"])] = (p["statements"], p["active_learners"], p["active_ms"], p["sessions"])
    for c in school_cohorts(ch, scope, "s-b")["cohorts"]:
        figures[("cohort", c["course"], c["cohort"])] = (tuple(map(tuple, c["trend"])), c["active_ms_7d"],
                                                         c["active_learners_7d"], c["mastery_mean"])  # fmt: skip
    return figures


@pytest.mark.parametrize("kind", list(SCOPES))
def test_engagement_copies_and_older_versions_never_count_a_newer_version_wins(data, kind):
    """A replayed engagement row (same version) or an older version of it changes no figure; a newer one replaces it."""
    ch, _stmts, eng, _mastery = data
    scope, _inside = SCOPES[kind]
    before = _engagement_figures(ch, scope)
    # The teacher's cohort's newest day (the school's newest day too) and hour of one learner.
    day = max((e for e in eng if e[:3] == TEACHER and e[4] == "day"), key=lambda e: (e[5], e[3]))
    assert day[5] == max(e[5] for e in eng if e[0] == "s-b" and e[4] == "day")
    hour = next(e for e in eng if e[3] == day[3] and e[4] == "hour" and e[5] == day[9])
    _write_engagement(ch, eng, 1)  # every row again, as a replay writes it
    _write_engagement(ch, [(*e[:6], 100 * e[6], e[7] + 5, 100 * e[8], e[9]) for e in eng], 0)  # older versions
    assert _engagement_figures(ch, scope) == before

    # A newer version of both rows: 7 more statements, one more session, 1000 ms more active time.
    _write_engagement(ch, [(*e[:6], e[6] + 7, e[7] + 1, e[8] + 1000, e[9]) for e in (day, hour)], 2)
    want = dict(before)
    ms, sessions, learners, week, last_hour, hourly = want[("card", "s-b")]
    t = int(hour[5].timestamp())
    assert t in dict(hourly), "the changed hour is on the sparkline"
    want[("card", "s-b")] = (ms + 1000, sessions + 1, learners, week, last_hour,
                             tuple((h, n + 7 if h == t else n) for h, n in hourly))  # fmt: skip
    for grain, e in (("day", day), ("hour", hour)):
        key = (grain, "s-b", e[5].isoformat().replace("+00:00", "Z"))
        n, active, ms_, sess = want[key]
        want[key] = (n + 7, active, ms_ + 1000, sess + 1)
    trend, ms7, learners7, mastery = want[("cohort", *TEACHER[1:])]
    want[("cohort", *TEACHER[1:])] = (trend, ms7 + 1000, learners7, mastery)
    assert _engagement_figures(ch, scope) == want


# The school page's trend and week figures as first defined (reporting/cohort_figures.py before
# issue 17): the newest day as a max over every day row in scope, then one query per figure.
_FIRST_DAYS_SQL = """
SELECT course, cohort, toUnixTimestamp(period_start), uniqExact(learner), sum(active_ms)
FROM {db}.engagement_by_time FINAL
WHERE school = {school:String} AND grain = 'day' AND {in_scope} AND {on_page}
  AND period_start >= toDateTime({since:UInt32})
GROUP BY course, cohort, period_start
"""
_FIRST_WEEK_LEARNERS_SQL = """
SELECT course, cohort, uniqExact(learner)
FROM {db}.engagement_by_time
WHERE school = {school:String} AND grain = 'day' AND {in_scope} AND {on_page}
  AND period_start >= toDateTime({since:UInt32})
GROUP BY course, cohort
"""


def _first_definition_figures(ch, scope, school: str, cohorts: list[tuple[str, str]]) -> tuple[str, dict]:
    """(newest day, {(course, cohort): (trend, active_ms_7d, active_learners_7d)}) by the first definition."""
    from reporting.cohort_figures import _ON_PAGE
    from reporting.scope import IN_SCOPE, cohort_key
    from reporting.trends import NEWEST_DAY_SQL

    ((newest, rows),) = ch.query(NEWEST_DAY_SQL, {**scope.params(), "school": school})
    assert int(rows)
    week = int(newest) - 6 * 86_400
    params = {**scope.params(), "school": school, "since": int(newest) - 13 * 86_400,
              "page": sorted(cohort_key(school, *c) for c in cohorts)}  # fmt: skip

    def first(sql: str, p: dict) -> list:
        return ch.query(sql.replace("{in_scope}", IN_SCOPE).replace("{on_page}", _ON_PAGE), p)

    figures = {c: ([], 0, 0) for c in cohorts}
    for course, cohort, day, learners, active_ms in first(_FIRST_DAYS_SQL, params):
        trend, ms, n = figures[(course, cohort)]
        figures[(course, cohort)] = (sorted([*trend, [int(day), int(learners)]]),
                                     ms + (int(active_ms) if int(day) >= week else 0), n)  # fmt: skip
    for course, cohort, learners in first(_FIRST_WEEK_LEARNERS_SQL, {**params, "since": week}):
        trend, ms, _n = figures[(course, cohort)]
        figures[(course, cohort)] = (trend, ms, int(learners))
    return datetime.fromtimestamp(int(newest), UTC).date().isoformat(), figures


@pytest.mark.parametrize("kind", list(SCOPES))
def test_school_page_figures_equal_their_first_definition_with_copies_replays_and_voids(data, kind):
    """The school page's newest day, trend and week figures, however the queries read them, are
    exactly the first definition's, on every kind of page, after replays, copies, older and newer
    versions, voids, and a newer day outside a teacher's cohort."""
    ch, stmts, eng, _mastery = data
    scope, _inside = SCOPES[kind]
    _write_engagement(ch, eng, 1)  # every row again, as a replay writes it
    _write_engagement(ch, [(*e[:6], 100 * e[6], e[7] + 5, 100 * e[8], e[9]) for e in eng], 0)  # older versions
    newer = [e for e in eng if e[0] == "s-b" and e[4] == "day"][::3]
    _write_engagement(ch, [(*e[:6], e[6] + 2, e[7], e[8] + 777, e[9]) for e in newer], 2)
    # The school's newest day lies in another cohort than the teacher's: a teacher's trend ends earlier.
    late = DAY0 + timedelta(days=12)
    _write_engagement(ch, [("s-b", COURSES[0], COHORTS[0], "late-learner", "day", late, 1, 1, 5_000, late)], 1)
    voided = stmts[::5]  # voided statements, written again with voided = 1 as the sink does
    ch.insert(f"{ch.database}.statements",
              ["statement_id", "school", "course", "cohort", "learner", "timestamp", "stored", "voided", "verb_id"],
              [*map(list, zip(*voided)), [s[5] for s in voided], [1] * len(voided),
               ["http://adlnet.gov/expapi/verbs/experienced"] * len(voided)])  # fmt: skip
    recompute_all(ch)
    total = school_cohorts(ch, scope, "s-b")["total"]
    for offset, limit in {(0, 500), (min(1, total - 1), 2), (total - 1, 1)}:  # every page kind the scope has
        answer = school_cohorts(ch, scope, "s-b", offset=offset, limit=limit)
        cohorts = [(c["course"], c["cohort"]) for c in answer["cohorts"]]
        assert cohorts, "the page holds cohorts"
        through, want = _first_definition_figures(ch, scope, "s-b", cohorts)
        assert answer["through_day"] == through
        got = {(c["course"], c["cohort"]): (c["trend"], c["active_ms_7d"], c["active_learners_7d"])
               for c in answer["cohorts"]}  # fmt: skip
        assert got == want
    if kind == "teacher":
        assert through < late.date().isoformat()
    else:
        assert through == late.date().isoformat()


# Every group of engagement_hourly as engagement FINAL holds it now.
_HOURLY_OF_ENGAGEMENT_SQL = """
SELECT school, course, cohort, toString(period_start), sum(statements), sum(sessions), sum(active_ms), count()
FROM {db}.engagement FINAL WHERE grain = 'hour'
GROUP BY school, course, cohort, period_start ORDER BY school, course, cohort, period_start
"""
_HOURLY_SQL = """
SELECT school, course, cohort, toString(period_start), statements, sessions, active_ms, learners
FROM {db}.engagement_hourly FINAL ORDER BY school, course, cohort, period_start
"""


def _sparklines(ch, scope) -> tuple[dict, dict]:
    """(the page's sparklines, the first definition's) per school."""
    from reporting.scope import IN_SCOPE

    page = {s["school"]: [tuple(p) for p in s["hourly"]] for s in dashboard_state(ch, scope)["schools"]}
    first: dict[str, list] = {s: [] for s in page}
    for school, hour, n in ch.query(_FIRST_HOURLY_SQL.replace("{in_scope}", IN_SCOPE), scope.params()):
        first.setdefault(school, []).append((int(hour), int(n)))
    return page, first


@pytest.mark.parametrize("kind", list(SCOPES))
def test_sparkline_equals_its_first_definition_with_copies_replays_versions_and_voids(data, kind):
    """The sparkline from engagement_hourly equals the FINAL over every learner's hour rows, and each
    engagement_hourly group equals engagement FINAL, after replays, older and newer versions, voids
    and a stale recompute of the same second (erasures: test_engagement_periods.py)."""
    from schemas.clickhouse.rollups import hourly_select
    from sinks.hourly import HOUR_KEY, hour_key

    ch, stmts, eng, _mastery = data
    scope, _inside = SCOPES[kind]

    def check():
        page, first = _sparklines(ch, scope)
        assert page == first and any(page.values())
        assert ch.query(_HOURLY_SQL) == ch.query(_HOURLY_OF_ENGAGEMENT_SQL)

    check()
    _write_engagement(ch, eng, 1)  # every row again, as a replay writes it
    _write_engagement(ch, [(*e[:6], 100 * e[6], e[7] + 5, 100 * e[8], e[9]) for e in eng], 0)  # older versions
    hours = [e for e in eng if e[4] == "hour"]
    newest = max(e[5] for e in hours)
    recent = [e for e in hours if e[5] > newest - timedelta(hours=24)]
    assert recent, "rows on the sparkline"
    # A stale view of the recent groups, taken before their newer versions arrive, written with the
    # same clock as the recompute after them (one second): the view that saw more must win.
    clock = int(ch.query("SELECT toUInt64(now())")[0][0])
    keys = sorted({hour_key((*e[:3], e[5])) for e in recent})
    where = f"has(CAST({{groups:Array(String)}} AS Array(String)), {HOUR_KEY})"
    stale_sql = hourly_select("{clock:UInt64}", where)
    stale = ch.query(stale_sql, {"clock": clock, "groups": keys})
    assert stale
    newer = recent[::2]
    ch.insert(f"{ch.database}.engagement", _ENGAGEMENT_COLUMNS,
              [*map(list, zip(*[(*e[:6], e[6] + 3, e[7] + 1, e[8] + 500, e[9]) for e in newer])), [2] * len(newer)])  # fmt: skip
    ch.execute(f"INSERT INTO {{db}}.engagement_hourly {stale_sql}", {"clock": clock, "groups": keys})
    ch.execute(f"INSERT INTO {{db}}.engagement_hourly {stale_sql}", {"clock": clock, "groups": keys})
    # ... then the stale rows again, inserted last (a slower recompute of the same second).
    ch.insert(f"{ch.database}.engagement_hourly",
              ["school", "course", "cohort", "period_start", "statements", "sessions", "active_ms", "learners", "version"],
              [list(c) for c in zip(*stale)])  # fmt: skip
    page, _first = _sparklines(ch, EVERY_SCHOOL)
    assert sum(n for points in page.values() for _h, n in points) == (
        sum(e[6] for e in recent) + 3 * len(newer)
    ), "the newer versions count on the sparkline"
    check()
    # Voids change statements, never engagement (the stream counts what was accepted).
    voided = stmts[::5]
    ch.insert(f"{ch.database}.statements",
              ["statement_id", "school", "course", "cohort", "learner", "timestamp", "stored", "voided", "verb_id"],
              [*map(list, zip(*voided)), [s[5] for s in voided], [1] * len(voided),
               ["http://adlnet.gov/expapi/verbs/experienced"] * len(voided)])  # fmt: skip
    recompute_all(ch)
    check()
