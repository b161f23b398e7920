"""The simulator: deterministic, valid cmi5/video/question statements, truth consistent with output."""

from __future__ import annotations

import collections
import itertools

import orjson
import pytest

from producers.simulator import (
    CMI5_CATEGORY,
    CMI5_SESSION,
    DAY_MS,
    VERB_ANSWERED,
    Simulation,
    SimulationConfig,
    day_name,
    format_ts,
    iso_duration,
    simulate,
)
from schemas.profile import COURSE_ACTIVITY_TYPE, DEFAULT_COHORT_EXTENSION, SKILL_EXTENSION, SchoolProfile
from schemas.truth import Truth
from schemas.xapi.duration import duration_ms
from schemas.xapi.timefmt import format_ms, parse_ms
from schemas.xapi.validate import validate_statement

SMALL = SimulationConfig(seed=11, schools=2, courses_per_school=2, learners_per_course=12, days=28)
CMI5_VERBS = {"launched", "initialized", "completed", "passed", "failed", "terminated"}


def _take(config: SimulationConfig, n: int):
    records = []
    sim = Simulation(config, on_truth=records.append)
    items = list(itertools.islice(sim, n))
    records.extend(sim.finish())
    return items, Truth.of(records)


def _run_days(config: SimulationConfig, days: int):
    records = []
    sim = Simulation(config, on_truth=records.append)
    end = config.start_ms + days * DAY_MS
    items = []
    it = iter(sim)
    while sim.next_ms is not None and sim.next_ms <= end:
        items.append(next(it))
    records.extend(sim.finish())
    return items, Truth.of(records)


@pytest.fixture(scope="module")
def term():
    """Four weeks of the small config, with truth."""
    return _run_days(SMALL, 28)


def test_producers_simulator_same_seed_gives_identical_bytes():
    a = [orjson.dumps(i.statement) for i in itertools.islice(simulate(SMALL), 3000)]
    b = [orjson.dumps(i.statement) for i in itertools.islice(simulate(SMALL), 3000)]
    assert a == b
    c = [orjson.dumps(i.statement) for i in itertools.islice(simulate(SimulationConfig(seed=12)), 3000)]
    assert a != c


def test_producers_simulator_statement_ids_unique_and_time_ordered(term):
    items, _ = term
    ids = [i.statement["id"] for i in items]
    assert len(set(ids)) == len(ids)
    times = [parse_ms(i.statement["timestamp"]) for i in items]
    assert times == sorted(times)


def test_producers_simulator_all_statements_valid_xapi(term):
    items, _ = term
    for item in items:
        validate_statement(item.statement, version="1.0.3")
    assert {i.statement["verb"]["display"]["en-US"] for i in items} >= CMI5_VERBS | {"answered", "experienced", "played"}


def test_producers_simulator_course_cohort_and_skills_as_profiles_expect(term):
    items, truth = term
    profile = SchoolProfile()
    cohorts = {(c.course, c.cohort) for c in truth.cohorts}
    skills = {s.skill for s in truth.skills}
    for item in items:
        stmt = item.statement
        course, cohort = profile.course_and_cohort(stmt)
        assert (course, cohort) in cohorts
        assert course.startswith(f"https://courses.learnpulse.dev/{item.school}/")
        grouping = stmt["context"]["contextActivities"]["grouping"]
        assert grouping[0]["definition"]["type"] == COURSE_ACTIVITY_TYPE
        assert stmt["context"]["extensions"][DEFAULT_COHORT_EXTENSION] == cohort
        assert stmt["actor"]["account"]["homePage"] == f"https://{item.school}.learnpulse.dev"
        if stmt["verb"]["id"] == VERB_ANSWERED:
            exercised = stmt["object"]["definition"]["extensions"][SKILL_EXTENSION]
            assert exercised and set(exercised) <= skills
            result = stmt["result"]
            assert isinstance(result["success"], bool) and result["score"]["scaled"] in (0.0, 1.0)
            assert result["response"] in [c["id"] for c in stmt["object"]["definition"]["choices"]]
            assert duration_ms(result["duration"]) > 0


def test_producers_simulator_cmi5_sessions_are_well_formed(term):
    items, _ = term
    sessions: dict[str, list[dict]] = collections.defaultdict(list)
    for item in items:
        sessions[item.statement["context"]["extensions"][CMI5_SESSION]].append(item.statement)
    complete = 0
    for stmts in sessions.values():
        verbs = [s["verb"]["display"]["en-US"] for s in stmts]
        assert verbs[0] == "launched"
        assert len({s["context"]["registration"] for s in stmts}) == 1
        assert len({orjson.dumps(s["actor"]) for s in stmts}) == 1
        for s, verb in zip(stmts, verbs):
            categories = [a["id"] for a in s["context"]["contextActivities"].get("category", [])]
            is_cmi5_defined = verb in CMI5_VERBS and s["object"]["id"] == stmts[0]["object"]["id"]
            assert (CMI5_CATEGORY in categories) == is_cmi5_defined, (verb, categories)
        if verbs[-1] != "terminated":
            continue  # the window ended inside this session
        complete += 1
        assert verbs[1] == "initialized"
        assert verbs.count("terminated") == 1
        if "passed" in verbs or "failed" in verbs:
            judged = next(s for s in stmts if s["verb"]["display"]["en-US"] in ("passed", "failed"))
            assert judged["result"]["success"] == (judged["verb"]["display"]["en-US"] == "passed")
            assert 0 <= judged["result"]["score"]["scaled"] <= 1
    assert complete > 100


def test_producers_simulator_gaps_fit_session_and_idle_rules(term):
    """Inside a session gaps stay under 30 min; sessions of a learner are ≥ 45 min apart."""
    items, _ = term
    last: dict[str, tuple[int, str]] = {}
    inside, between = [], []
    for item in items:
        s = item.statement
        who = s["actor"]["account"]["name"] + item.school
        ts, session = parse_ms(s["timestamp"]), s["context"]["extensions"][CMI5_SESSION]
        if who in last:
            prev_ts, prev_session = last[who]
            (inside if session == prev_session else between).append(ts - prev_ts)
        last[who] = (ts, session)
    assert max(inside) < 30 * 60_000
    assert min(between) >= 45 * 60_000
    assert sum(g > 15 * 60_000 for g in inside) > 0  # some in-session breaks exist


def test_producers_simulator_truth_counts_match_emitted(term):
    items, truth = term
    assert truth.run is not None and truth.run.statements == len(items)
    answered = collections.Counter()
    per_learner = collections.Counter()
    per_skill = collections.Counter()
    correct_per_skill = collections.Counter()
    for item in items:
        s = item.statement
        key = (item.school, s["actor"]["account"]["name"])
        per_learner[key] += 1
        if s["verb"]["id"] == VERB_ANSWERED:
            answered[key] += 1
            (skill,) = s["object"]["definition"]["extensions"][SKILL_EXTENSION]
            per_skill[key + (skill,)] += 1
            correct_per_skill[key + (skill,)] += s["result"]["success"]
    assert truth.run.answered == sum(answered.values())
    assert len(truth.learners) == SMALL.learners
    for ln in truth.learners:
        assert ln.statements == per_learner[(ln.school, ln.name)]
        assert ln.answered == answered[(ln.school, ln.name)]
    for m in truth.mastery:
        assert m.opportunities == per_skill[(m.school, m.name, m.skill)]
        assert m.correct == correct_per_skill[(m.school, m.name, m.skill)]
        assert not (m.initially_known and m.learned_ms is not None)
    assert sum(a.statements for a in truth.active) == len(items)


def test_producers_simulator_truth_active_time_bounded_by_gaps(term):
    """True active time lies between the in-session gaps under the 15-min cutoff and all in-session gaps."""
    items, truth = term
    short, total = collections.Counter(), collections.Counter()
    last: dict[tuple, tuple[int, str]] = {}
    for item in items:
        s = item.statement
        key = (item.school, s["actor"]["account"]["name"])
        ts, session = parse_ms(s["timestamp"]), s["context"]["extensions"][CMI5_SESSION]
        if key in last and last[key][1] == session:
            gap = ts - last[key][0]
            total[key] += gap
            short[key] += gap if gap <= 15 * 60_000 else 0
        last[key] = (ts, session)
    true_active = collections.Counter()
    for a in truth.active:
        true_active[(a.school, a.name)] += a.active_ms
    assert sum(true_active.values()) > 0
    for key in set(total) | set(true_active):
        assert short[key] <= true_active[key] <= total[key], key


def test_producers_simulator_bkt_truth_shows_learning(term):
    """Answers on known skills are mostly right, on unknown ones mostly wrong (slip ≤ 0.15, guess ≤ 0.3)."""
    items, truth = term
    mastery = {(m.school, m.name, m.skill): m for m in truth.mastery}
    right = collections.Counter()
    seen = collections.Counter()
    for item in items:
        s = item.statement
        if s["verb"]["id"] != VERB_ANSWERED:
            continue
        (skill,) = s["object"]["definition"]["extensions"][SKILL_EXTENSION]
        known = mastery[(item.school, s["actor"]["account"]["name"], skill)].known_before(parse_ms(s["timestamp"]))
        seen[known] += 1
        right[known] += s["result"]["success"]
    assert seen[True] > 200 and seen[False] > 200
    assert right[True] / seen[True] > 0.8
    assert right[False] / seen[False] < 0.35
    learned = sum(m.learned_ms is not None for m in truth.mastery)
    assert learned > 0


def test_producers_simulator_planted_cohorts_go_quiet():
    config = SimulationConfig(seed=5, schools=2, courses_per_school=2, learners_per_course=20, days=56)
    items, truth = _run_days(config, 56)
    planted = [c for c in truth.cohorts if c.disengaging]
    assert planted and any(not c.disengaging for c in truth.cohorts)
    week = 7 * DAY_MS
    by_learner = collections.defaultdict(list)
    by_cohort = collections.defaultdict(list)
    for item in items:
        s = item.statement
        ts = parse_ms(s["timestamp"])
        by_learner[(item.school, s["actor"]["account"]["name"])].append(ts)
        by_cohort[s["context"]["extensions"][DEFAULT_COHORT_EXTENSION]].append(ts)

    def window(times, start, end):
        return sum(start <= t < end for t in times)

    # Learners hit by their cohort's planted decay: a week after it starts, almost silent.
    affected = [ln for ln in truth.learners if ln.planted]
    assert len(affected) == sum(c.affected for c in planted) > 0
    before = sum(window(by_learner[(ln.school, ln.name)], ln.disengaged_from_ms - week, ln.disengaged_from_ms)
                 for ln in affected)  # fmt: skip
    after = sum(window(by_learner[(ln.school, ln.name)], ln.disengaged_from_ms + week, ln.disengaged_from_ms + 2 * week)
                for ln in affected)  # fmt: skip
    assert before > 200 and after < 0.1 * before, (before, after)
    # The cohort as a whole drops clearly (its unaffected ~15% carry on).
    for cohort in planted:
        times = by_cohort[cohort.cohort]
        before = window(times, cohort.onset_ms - week, cohort.onset_ms)
        after = window(times, cohort.onset_ms + 2 * week, cohort.onset_ms + 3 * week)
        assert before > 50 and after < 0.6 * before, (cohort.cohort, before, after)
    # Healthy cohorts do not go quiet over the same span.
    healthy = [c for c in truth.cohorts if not c.disengaging]
    onset = min(c.onset_ms for c in planted)
    for cohort in healthy:
        times = by_cohort[cohort.cohort]
        assert window(times, onset + 2 * week, onset + 3 * week) > 0.5 * window(times, onset - week, onset)


def test_producers_simulator_truth_stops_at_emitted_count():
    items, truth = _take(SMALL, 777)
    assert truth.run.statements == 777
    assert sum(ln.statements for ln in truth.learners) == 777
    assert sum(a.statements for a in truth.active) == 777
    assert truth.run.ended_ms == parse_ms(items[-1].statement["timestamp"])


def test_producers_simulator_time_helpers_match_schemas():
    for ms in (0, 1_767_225_600_000, 1_767_225_600_000 + 86_399_999, 951_782_400_123, 4_102_444_800_000):
        assert format_ts(ms) == format_ms(ms)
        assert day_name(ms // DAY_MS) == format_ms(ms)[:10]
    for ms in (0, 1, 999, 1_000, 61_500, 3_600_000, 3_723_450, 86_400_000):
        text = iso_duration(ms)
        assert duration_ms(text) == ms, text


def test_producers_simulator_config_rejects_nonsense():
    with pytest.raises(ValueError):
        SimulationConfig(schools=0)
    with pytest.raises(ValueError):
        SimulationConfig(disengaging_share=1.5)


def test_producers_simulator_forgetting_learners_lose_skills_and_the_truth_says_so():
    base = SimulationConfig(seed=13, schools=1, courses_per_school=2, learners_per_course=20, days=28,
                            skills_per_course=2, sessions_per_day=2.0, disengaging_share=0.0, dropout_share=0.0)
    forgetting = SimulationConfig(**{**base.__dict__, "forgetting_share": 0.5})
    n = 12_000
    plain_items, plain = _take(base, n)
    items, truth = _take(forgetting, n)
    forgets = {(ln.school, ln.name) for ln in truth.learners if ln.forgets}
    assert 0.25 * len(truth.learners) < len(forgets) < 0.75 * len(truth.learners)
    assert not any(ln.forgets for ln in plain.learners)
    assert all(0 < s.forget <= 0.06 for s in truth.skills)
    lost = [m for m in truth.mastery if m.forgotten]
    assert lost, "forgetting learners forgot something"
    assert all((m.school, m.name) in forgets for m in lost)
    assert all(m.forgotten_ms is not None for m in lost)
    # Learners who do not forget are simulated exactly as in a run without forgetting.
    def of_others(its):
        return [orjson.dumps(i.statement) for i in its
                if (i.school, i.statement["actor"]["account"]["name"]) not in forgets]
    others, plain_others = of_others(items), of_others(plain_items)
    k = min(len(others), len(plain_others)) - 200  # the two runs stop at different points
    assert k > 1000 and others[:k] == plain_others[:k]
