"""A sink's recompute that read the rollups before an erasure and writes after it.

``activity_totals`` and ``engagement_hourly`` are only recomputed (sinks/totals.py,
sinks/hourly.py). A sink's recompute that read its sets before ``forget-learner`` erased a
learner, but whose INSERT lands after the erasure deleted the groups' rows, writes the
learner's figures back. Where the group still has other rows the erasure's own recompute
wins (a later version); a group the erasure left empty has no later row, so the stale one
would stay, counting a learner who was erased.

On clickhouse-server a mutation runs after its ALTER returns: a recompute in that window
reads the rows not yet erased. The first test makes the window wide (merges, which run
mutations, stopped on ``activity_daily``) and runs the sink's real recompute in it. chDB runs
one query at a time and its mutations within their ALTER, so it has no such window; the
sweep itself is tested on both engines with a late row written by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import uuid

import pytest

from schemas.clickhouse import tables as T
from schemas.clickhouse.migrate import migrate
from sinks.engines import engine_from_url
from sinks.forget import forget_learners
from sinks.hourly import HOUR_KEY, recompute_all_hours
from sinks.totals import recompute_all
from tests.integration.test_sinks_totals import HOURLY_OF_ENGAGEMENT_SQL, HOURLY_SQL, assert_totals_exact

ERASED, KEPT = hashlib.sha256(b"erased").hexdigest(), hashlib.sha256(b"kept").hexdigest()
DAY = dt.datetime(2026, 1, 5, 10)
PASSED, EXPERIENCED = "http://adlnet.gov/expapi/verbs/passed", "http://adlnet.gov/expapi/verbs/experienced"
OTHER_SCHOOLS = 3


def _statement(n: int, school: str, course: str, learner: str, verb: str, at: dt.datetime) -> list[list]:
    row = dict.fromkeys(T.STATEMENT_COLUMNS)
    row.update(
        statement_id=uuid.UUID(int=n), school=school, course=course, cohort="cohort-1", learner=learner,
        verb_id=verb, object_id="https://a.example/1", object_type="Activity", timestamp=at, stored=at, voided=0,
        violations=[],
    )  # fmt: skip
    return [[row[c]] for c in T.STATEMENT_COLUMNS]


def _engagement(school: str, course: str, learner: str, hour: dt.datetime) -> list[list]:
    row = dict(
        school=school, course=course, cohort="cohort-1", learner=learner, grain="hour", period_start=hour,
        statements=3, sessions=1, active_ms=60_000, last_event=hour, version=1,
    )  # fmt: skip
    return [[row[c]] for c in T.ENGAGEMENT_COLUMNS]


def _world(ch) -> None:
    """The erased learner alone in one totals group (passed) and one hour (course-2), and
    beside another learner in others; other schools the erasure must not touch."""
    rows = [
        ("school-1", "course-1", ERASED, PASSED),
        ("school-1", "course-1", ERASED, EXPERIENCED),
        ("school-1", "course-1", KEPT, EXPERIENCED),
    ] + [(f"school-{i}", "course-1", KEPT, EXPERIENCED) for i in range(2, 2 + OTHER_SCHOOLS)]
    for n, (school, course, learner, verb) in enumerate(rows, 1):
        row = _statement(n, school, course, learner, verb, DAY)
        ch.insert(f"{ch.database}.{T.STATEMENTS}", T.STATEMENT_COLUMNS, row)
    hours = [("school-1", "course-2", ERASED), ("school-1", "course-1", ERASED), ("school-1", "course-1", KEPT)]
    hours += [(f"school-{i}", "course-1", KEPT) for i in range(2, 2 + OTHER_SCHOOLS)]
    for school, course, learner in hours:
        ch.insert(f"{ch.database}.{T.ENGAGEMENT}", T.ENGAGEMENT_COLUMNS, _engagement(school, course, learner, DAY))
    recompute_all(ch)
    recompute_all_hours(ch)


def _mutation_seen(ch, table: str) -> bool:
    rows = ch.query(
        "SELECT count() FROM system.mutations WHERE database = {d:String} AND table = {t:String}",
        {"d": ch.database, "t": table},
    )
    return int(rows[0][0]) > 0


def _recompute_in_the_mutation_window(url: str) -> tuple[threading.Thread, list[BaseException]]:
    """As a statements sink would: once the erasure has deleted the groups' totals (its ALTER
    is registered), recompute every group while ``activity_daily``'s rebuild has not run."""
    errors: list[BaseException] = []

    def run() -> None:
        ch = engine_from_url(url)
        try:
            deadline = time.monotonic() + 120
            while not _mutation_seen(ch, T.ACTIVITY_TOTALS):
                assert time.monotonic() < deadline, "the erasure never deleted the totals"
                time.sleep(0.05)
            recompute_all(ch)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            errors.append(err)
        finally:
            ch.execute(f"SYSTEM START MERGES {ch.database}.{T.ACTIVITY_DAILY}")
            ch.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _assert_erased_group_gone_and_totals_exact(ch) -> None:
    emptied = ch.query(
        "SELECT count() FROM {db}.activity_totals FINAL WHERE school = 'school-1' AND verb_id = {v:String}",
        {"v": PASSED},
    )
    assert int(emptied[0][0]) == 0, "the group only the erased learner was in came back"
    assert_totals_exact(ch)


@pytest.mark.clickhouse_server
def test_forget_learner_leaves_no_totals_written_by_a_recompute_that_read_before_the_rebuild(server_url):
    ch = engine_from_url(server_url)
    try:
        migrate(ch)
        _world(ch)
        ch.execute(f"SYSTEM STOP MERGES {ch.database}.{T.ACTIVITY_DAILY}")
        thread, errors = _recompute_in_the_mutation_window(server_url)
        report = forget_learners(ch, [ERASED], settle_s=0)
        thread.join(120)
        assert not thread.is_alive() and not errors, errors
        assert report.remaining == 0
        _assert_erased_group_gone_and_totals_exact(ch)
    finally:
        ch.close()


@pytest.mark.kafka
@pytest.mark.parametrize("table", [T.ACTIVITY_TOTALS, T.ENGAGEMENT_HOURLY])
def test_the_sweep_deletes_rows_versioned_before_the_erasure_and_keeps_the_others(clickhouse_url, table):
    """A row written late (an old clock: it read before the erasure) in a group the erasure
    emptied goes; every group with a row of the erasure's clock keeps its figures."""
    from sinks.forget import sweep_late_recomputes
    from sinks.hourly import recompute_forgotten_hours
    from sinks.totals import recompute_rebuilt

    ch = engine_from_url(clickhouse_url)
    try:
        migrate(ch)
        _world(ch)
        before = int(ch.query("SELECT toUInt64(now()) - 5")[0][0])
        stale = ch.query(f"SELECT * FROM {{db}}.{table} FINAL WHERE school = 'school-1'")
        forget_learners(ch, [ERASED], settle_s=0)
        columns = [str(r[0]) for r in ch.query(f"DESCRIBE TABLE {{db}}.{table}")]
        v = columns.index("version")
        late = [[(before << 32) + int(x) % (1 << 32) if i == v else x for i, x in enumerate(r)] for r in stale]
        assert late, "no rows to write late"
        ch.insert(f"{ch.database}.{table}", columns, [list(col) for col in zip(*late, strict=True)])
        if table == T.ACTIVITY_TOTALS:
            hashes = [int(h) for (h,) in ch.query(
                "SELECT DISTINCT cityHash64(school, course, cohort, toString(day)) FROM {db}.activity_totals"
                " WHERE school = 'school-1'")]  # fmt: skip
            clock = recompute_rebuilt(ch, hashes)
            sweep_late_recomputes(ch, T.ACTIVITY_TOTALS, hashes, clock)
            _assert_erased_group_gone_and_totals_exact(ch)
        else:
            keys = [str(k) for (k,) in ch.query(
                f"SELECT DISTINCT {HOUR_KEY} FROM {{db}}.engagement_hourly WHERE school = 'school-1'")]  # fmt: skip
            clock = recompute_forgotten_hours(ch, keys)
            sweep_late_recomputes(ch, T.ENGAGEMENT_HOURLY, keys, clock)
            emptied = ch.query("SELECT count() FROM {db}.engagement_hourly FINAL WHERE course = 'course-2'")
            assert int(emptied[0][0]) == 0, "the hour only the erased learner had came back"
            assert ch.query(HOURLY_SQL) == ch.query(HOURLY_OF_ENGAGEMENT_SQL)
    finally:
        ch.close()


@pytest.mark.clickhouse_server
def test_the_sweep_waits_for_a_write_into_the_table_that_is_running_when_it_starts(server_url):
    """A recompute already running when the sweep starts may have read before the erasure:
    the sweep deletes only after it has ended (newer servers run an ALTER beside it)."""
    from sinks.forget import running_writes, wait_for_running_writes

    ch = engine_from_url(server_url)
    try:
        migrate(ch)
        done = threading.Event()

        def slow_write() -> None:
            other = engine_from_url(server_url)
            try:  # writes nothing: each of 20 rows is filtered out after a second's sleep
                other.execute(f"INSERT INTO {{db}}.{T.ACTIVITY_TOTALS} (school) SELECT toString(number)"
                              " FROM numbers(20) WHERE sleepEachRow(1) = 1 SETTINGS max_block_size = 1")  # fmt: skip
            finally:
                done.set()
                other.close()

        threading.Thread(target=slow_write, daemon=True).start()
        deadline = time.monotonic() + 60
        while not running_writes(ch, T.ACTIVITY_TOTALS):
            assert not done.is_set() and time.monotonic() < deadline, "the write was never seen running"
            time.sleep(0.02)
        wait_for_running_writes(ch, T.ACTIVITY_TOTALS, poll_s=0.05)
        # The write had ~20 s to go when it was seen: had the sweep not waited, it would not end
        # within 10 s (a margin for a client thread starved on a busy machine).
        assert done.wait(10), "the sweep went on while the write was still running"
        wait_for_running_writes(ch, T.ENGAGEMENT_HOURLY)  # nothing running: returns
    finally:
        ch.close()

