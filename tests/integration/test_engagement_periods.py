"""``engagement_periods`` (migration 0022) on both engines: the newest day and hour the
dashboard shows stay those of ``engagement`` under copies, older and newer versions, and
after ``forget-learner`` erases the only learner of the newest hour; so do the sparkline and
``engagement_hourly`` (migration 0023, recomputed here after each write as the engagement sink does).

Rows are written straight into ``statements`` (the summary lists schools with statements)
and ``engagement``; every figure is compared with the same figure computed here from the
engagement rows still there.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from learnpulse.pipeline import open_clickhouse
from learnpulse.settings import ClickHouseSettings, Settings
from reporting.dashboard import dashboard_state
from reporting.scope import EVERY_SCHOOL, Scope
from sinks.forget import forget_learners
from sinks.hourly import recompute_touched_hours
from sinks.totals import recompute_all

ADA, BOB = "a" * 64, "b" * 64
SCHOOL, COURSE, COHORT = "s-1", "https://c.example/1", "k1"
DAY = datetime(2026, 3, 2, tzinfo=UTC)
_ENGAGEMENT_COLUMNS = ["school", "course", "cohort", "learner", "grain", "period_start", "statements", "sessions",
                       "active_ms", "last_event", "version"]  # fmt: skip


def _activity(learner: str, at: datetime, n: int) -> list[tuple]:
    """A learner's hour and day engagement rows for ``n`` statements at ``at``."""
    day = at.replace(hour=0)
    return [(SCHOOL, COURSE, COHORT, learner, "hour", at, n, 1, 60_000 * n, at),
            (SCHOOL, COURSE, COHORT, learner, "day", day, n, 1, 60_000 * n, at)]  # fmt: skip


# Bob: the day before and 10:00; ada: 12:00 only, the school's newest hour.
ROWS = [*_activity(BOB, DAY - timedelta(hours=14), 3), *_activity(BOB, DAY + timedelta(hours=10), 2),
        *_activity(ADA, DAY + timedelta(hours=12), 5)]  # fmt: skip


def _write(ch, rows, version: int) -> None:
    ch.insert(f"{ch.database}.engagement", _ENGAGEMENT_COLUMNS, [*map(list, zip(*rows)), [version] * len(rows)])
    recompute_touched_hours(ch, {"engagement": [(*r, version) for r in rows]})  # as the engagement sink does


def _expected(rows) -> dict:
    """The card's engagement figures from ``rows`` (one version of each, as written here)."""
    hours = [r for r in rows if r[4] == "hour"]
    days = [r for r in rows if r[4] == "day"]
    newest_hour, newest_day = max(r[5] for r in hours), max(r[5] for r in days)
    today = [r for r in days if r[5] == newest_day]
    per_hour: dict[int, int] = {}
    for r in hours:
        if r[5] > newest_hour - timedelta(hours=24):
            per_hour[int(r[5].timestamp())] = per_hour.get(int(r[5].timestamp()), 0) + r[6]
    return {
        "active_last_hour": len({r[3] for r in hours if r[5] == newest_hour}),
        "learners_today": len({r[3] for r in today}), "active_ms_today": sum(r[8] for r in today),
        "learners_7d": len({r[3] for r in days if r[5] > newest_day - timedelta(days=7)}),
        "hourly": sorted([h, n] for h, n in per_hour.items()),
    }  # fmt: skip


def _card(ch, scope) -> dict:
    (card,) = dashboard_state(ch, scope)["schools"]
    return {k: card[k] for k in ("active_last_hour", "learners_today", "active_ms_today", "learners_7d", "hourly")}


def _periods(ch) -> set[tuple]:
    return set(ch.query("SELECT grain, school, toString(period_start) FROM {db}.engagement_periods"))


def _hourly(ch) -> list[tuple]:
    return ch.query("SELECT school, course, cohort, toString(period_start), statements, sessions, active_ms, learners"
                    " FROM {db}.engagement_hourly FINAL ORDER BY school, course, cohort, period_start")  # fmt: skip


def _hourly_of_engagement(ch) -> list[tuple]:
    return ch.query("SELECT school, course, cohort, toString(period_start), sum(statements), sum(sessions),"
                    " sum(active_ms), count() FROM {db}.engagement FINAL WHERE grain = 'hour'"
                    " GROUP BY school, course, cohort, period_start ORDER BY school, course, cohort, period_start")  # fmt: skip


def _periods_of_engagement(ch) -> set[tuple]:
    return set(ch.query("SELECT DISTINCT grain, school, toString(period_start) FROM {db}.engagement"))


@pytest.fixture
def ch(tmp_path, clickhouse_url):
    ch = open_clickhouse(Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url=clickhouse_url)))
    stmts = [(uuid.uuid4(), SCHOOL, COURSE, COHORT, r[3], r[9]) for r in ROWS if r[4] == "hour"]
    cols = list(zip(*stmts))
    ch.insert(f"{ch.database}.statements",
              ["statement_id", "school", "course", "cohort", "learner", "timestamp", "stored", "voided", "verb_id"],
              [*cols, list(cols[5]), [0] * len(stmts), ["http://adlnet.gov/expapi/verbs/experienced"] * len(stmts)])  # fmt: skip
    recompute_all(ch)
    _write(ch, ROWS, 1)
    yield ch
    ch.close()


SCOPES = [EVERY_SCHOOL, Scope.of_schools([SCHOOL]), Scope.of_cohorts([(SCHOOL, COURSE, COHORT)])]


def test_newest_periods_hold_under_copies_and_versions_and_follow_an_erasure(ch):
    assert _periods(ch) == _periods_of_engagement(ch) and len(_periods(ch)) == 5
    want = _expected(ROWS)
    assert want["active_last_hour"] == 1 and len(want["hourly"]) == 2
    assert [_card(ch, s) for s in SCOPES] == [want] * 3

    # A replay (same version), older versions and a newer version of ada's rows: the same
    # periods, and the newest hour is still ada's.
    _write(ch, ROWS, 1)
    _write(ch, [(*r[:6], r[6] + 9, r[7], r[8], r[9]) for r in ROWS], 0)
    newer = [(*r[:6], r[6] + 1, r[7], r[8] + 1000, r[9]) for r in ROWS if r[3] == ADA]
    _write(ch, newer, 2)
    assert _periods(ch) == _periods_of_engagement(ch) and len(_periods(ch)) == 5
    assert _hourly(ch) == _hourly_of_engagement(ch) and len(_hourly(ch)) == 3
    now = [r for r in ROWS if r[3] != ADA] + newer
    assert [_card(ch, s) for s in SCOPES] == [_expected(now)] * 3

    # Erasing ada takes her hour away: the newest hour is bob's 10:00 again, not an empty 12:00.
    forget_learners(ch, [ADA], settle_s=0)
    assert _periods(ch) == _periods_of_engagement(ch) and len(_periods(ch)) == 4
    # engagement_hourly (migration 0023): ada's hour is gone from it too, bob's hours unchanged.
    assert _hourly(ch) == _hourly_of_engagement(ch) and len(_hourly(ch)) == 2
    left = [r for r in ROWS if r[3] == BOB]
    assert _expected(left)["active_last_hour"] == 1
    assert [_card(ch, s) for s in SCOPES] == [_expected(left)] * 3
