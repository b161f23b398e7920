"""Operators sign in and see exactly their scope, against a running pipeline with data in it.

simulator → Kafka → Faust worker → sinks → chDB, then the web app of the ClickHouse-owning
process (learnpulse.web.make_app) on a loopback port. Every figure an operator gets is
compared with a direct ClickHouse query over the statements (or engagement) table, written
here independently of reporting/.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests

from learnpulse.operators import set_password
from learnpulse.operators import operators_path
from learnpulse.pipeline import open_clickhouse, run_simulator, start_sinks
from learnpulse.settings import ClickHouseSettings, OperatorSettings, Settings
from learnpulse.topics import ensure_topics
from learnpulse.web import make_app, start_web_thread
from producers.simulator import SimulationConfig
from tests.conftest import Proc, free_port, free_port_block, wait_for
from tests.operators_support import make_operator, sign_in_attempt, signed_in

pytestmark = pytest.mark.kafka
N = 3_000


class Served:
    def __init__(self, settings, ch, base, passwords, cohort):
        self.settings, self.ch, self.base, self.passwords, self.cohort = settings, ch, base, passwords, cohort

    def session(self, name: str) -> requests.Session:
        return signed_in(self.base, name, self.passwords[name])


@pytest.fixture(scope="module")
def served(tmp_path_factory, kafka_settings, chdb_path):
    tmp = tmp_path_factory.mktemp("operators")
    kafka = kafka_settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}."})
    ensure_topics(kafka.bootstrap_servers, kafka.topic_prefix, kafka.topic_replication)
    settings = Settings(
        home=tmp / "home", kafka=kafka,
        clickhouse=ClickHouseSettings(url=f"chdb://{chdb_path}?database=t_{uuid.uuid4().hex[:10]}"),
        metrics_port_base=free_port_block(16), web_port=free_port(), streams_web_port=free_port(), log_level="WARNING",
    )  # fmt: skip
    worker = Proc(["worker"], settings, tmp / "worker.log")
    ch = open_clickhouse(settings)
    sinks = start_sinks(settings, ch)
    web = None
    try:
        assert run_simulator(settings, SimulationConfig(seed=11, schools=3), count=N, rate=None) == N

        def written():
            if worker.popen.poll() is not None:
                pytest.fail(f"worker exited {worker.popen.returncode}:\n{worker.tail()}")
            (row,) = ch.query(
                "SELECT (SELECT count() FROM {db}.statements FINAL),"
                " (SELECT sum(statements) FROM {db}.engagement FINAL WHERE grain = 'day')"
            )
            return tuple(int(x or 0) for x in row)

        wait_for(lambda: written() == (N, N), 300, f"{N} statements and their daily engagement in ClickHouse")
        # The teacher's cohort: the first cohort of school-002 (by name).
        (cohort,) = ch.query("SELECT school, course, cohort FROM {db}.statements FINAL WHERE school = 'school-002' "
                             "GROUP BY school, course, cohort ORDER BY course, cohort LIMIT 1")  # fmt: skip
        cohort = tuple(cohort)
        passwords = {
            "net": make_operator(settings.home, "net", "network"),
            "sch": make_operator(settings.home, "sch", "school", schools=["school-001"]),
            "sch2": make_operator(settings.home, "sch2", "school", schools=["school-002"]),
            "tch": make_operator(settings.home, "tch", "teacher", cohorts=[cohort]),
            "victim": make_operator(settings.home, "victim", "network"),
            "changing": make_operator(settings.home, "changing", "network"),
        }
        web = start_web_thread(make_app(ch, settings), settings.web_port)
        yield Served(settings, ch, f"http://127.0.0.1:{settings.web_port}", passwords, cohort)
    finally:
        if web is not None:
            web.stop()
        worker.stop()
        sinks.join()
        ch.close()


def direct_counts(ch, where: str = "1", params=None) -> dict[str, tuple[int, int]]:
    """school → (statements, learners) straight from the statements table."""
    rows = ch.query(f"SELECT school, count(), uniqExact(learner) FROM {{db}}.statements FINAL WHERE {where} "
                    "GROUP BY school", params or {})  # fmt: skip
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def summary_of(http: requests.Session, base: str) -> dict[str, tuple[int, int]]:
    answer = http.get(f"{base}/api/summary", timeout=60)
    assert answer.status_code == 200, answer.text
    return {r["school"]: (r["statements"], r["learners"]) for r in answer.json()}


def test_unauthenticated_calls_get_401_and_the_page_sends_to_sign_in(served):
    base = served.base
    school, course, cohort = served.cohort
    for path in ("/api/state", "/api/summary", f"/api/schools/{school}",
                 f"/api/cohorts/{school}/{requests.utils.quote(course, safe='')}/{requests.utils.quote(cohort, safe='')}"):  # fmt: skip
        answer = requests.get(base + path, timeout=30)
        assert answer.status_code == 401, (path, answer.status_code)
        assert answer.json()["rule"] == "auth.required"
    page = requests.get(f"{base}/", allow_redirects=False, timeout=30)
    assert page.status_code == 303 and page.headers["Location"] == "/signin"
    # A made-up session cookie is no session.
    forged = requests.get(f"{base}/api/state", cookies={"lp_session": "x" * 43}, timeout=30)
    assert forged.status_code == 401
    # The research SQL endpoint still wants its bearer token, session or not.
    http = served.session("net")
    sql = http.post(f"{base}/api/sql", json={"sql": "SELECT 1"}, headers={"X-CSRF-Token": http.csrf}, timeout=30)
    assert sql.status_code == 401 and sql.json()["rule"] == "sql.auth"


def test_the_session_cookie_is_httponly_samesite_strict(served):
    answer = sign_in_attempt(served.base, "net", served.passwords["net"])
    assert answer.status_code == 303
    cookie = answer.headers["Set-Cookie"]
    assert "lp_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; operators.secure_cookies adds it behind TLS


def test_network_operator_sees_every_school_with_clickhouse_counts(served):
    http = served.session("net")
    expected = direct_counts(served.ch)
    assert set(expected) == {"school-000", "school-001", "school-002"}
    assert summary_of(http, served.base) == expected
    state = http.get(f"{served.base}/api/state", timeout=60).json()
    assert {s["school"]: s["statements"] for s in state["schools"]} == {k: v[0] for k, v in expected.items()}
    school = http.get(f"{served.base}/api/schools/school-000", timeout=60)
    assert school.status_code == 200
    assert school.json()["total"] == len(school.json()["cohorts"])
    for bad in ("offset=-1", "limit=x", "offset=99999999999"):
        refused = http.get(f"{served.base}/api/schools/school-000?{bad}", timeout=60)
        assert refused.status_code == 400 and refused.json()["rule"] == "dashboard.paging", bad
    by_cohort = {(c["course"], c["cohort"]): c["statements"] for c in school.json()["cohorts"]}
    rows = served.ch.query("SELECT course, cohort, count() FROM {db}.statements FINAL WHERE school = 'school-000' "
                           "GROUP BY course, cohort")  # fmt: skip
    assert by_cohort == {(r[0], r[1]): int(r[2]) for r in rows}


def test_school_operator_sees_its_school_only_and_gets_403_beyond(served):
    http = served.session("sch")
    assert summary_of(http, served.base) == direct_counts(served.ch, "school = 'school-001'")
    state = http.get(f"{served.base}/api/state", timeout=60).json()
    assert [s["school"] for s in state["schools"]] == ["school-001"]
    assert all(c["school"] == "school-001" for c in state["cohorts_at_risk"] + state["alerts"])
    assert http.get(f"{served.base}/api/schools/school-001", timeout=60).status_code == 200
    other = http.get(f"{served.base}/api/schools/school-000", timeout=60)
    assert other.status_code == 403 and other.json()["rule"] == "scope.school"
    assert "cohorts" not in other.json()
    school, course, cohort = served.cohort  # the teacher's cohort, in school-002
    url = f"{served.base}/api/cohorts/{school}/{requests.utils.quote(course, safe='')}/{requests.utils.quote(cohort, safe='')}"
    denied = http.get(url, timeout=60)
    assert denied.status_code == 403 and denied.json()["rule"] == "scope.cohort"


def test_teacher_sees_its_cohort_only_with_clickhouse_figures(served):
    http = served.session("tch")
    school, course, cohort = served.cohort
    where = "school = {s:String} AND course = {c:String} AND cohort = {k:String}"
    params = {"s": school, "c": course, "k": cohort}
    assert summary_of(http, served.base) == direct_counts(served.ch, where, params)
    state = http.get(f"{served.base}/api/state", timeout=60).json()
    (card,) = state["schools"]
    assert card["school"] == school and card["refused"] == 0
    assert all((c["school"], c["course"], c["cohort"]) == served.cohort for c in state["cohorts_at_risk"])
    # Mastery has no cohort column: the mean is over the learners of the teacher's cohort.
    (row,) = served.ch.query(
        "SELECT avg(p_mastery) FROM {db}.mastery FINAL WHERE school = {s:String} AND course = {c:String} AND learner IN "
        "(SELECT learner FROM {db}.statements FINAL WHERE " + where + ")", params,
    )  # fmt: skip
    if row[0] is None or row[0] != row[0]:  # no mastery rows (NaN/NULL): the card says so
        assert card["mastery_mean"] is None
    else:
        assert card["mastery_mean"] == pytest.approx(float(row[0]))

    school_view = http.get(f"{served.base}/api/schools/{school}", timeout=60).json()
    assert [(c["course"], c["cohort"]) for c in school_view["cohorts"]] == [(course, cohort)]
    assert school_view["whole_school"] is False
    assert http.get(f"{served.base}/api/schools/school-000", timeout=60).status_code == 403

    q = requests.utils.quote
    got = http.get(f"{served.base}/api/cohorts/{school}/{q(course, safe='')}/{q(cohort, safe='')}", timeout=60)
    assert got.status_code == 200, got.text
    body = got.json()
    direct = served.ch.query(
        "SELECT learner, sum(active_ms) FROM {db}.engagement FINAL WHERE " + where + " AND grain = 'day' "
        "AND period_start >= (SELECT max(period_start) FROM {db}.engagement WHERE " + where + " AND grain = 'day') "
        "- INTERVAL 6 DAY GROUP BY learner", params,
    )  # fmt: skip
    learners = {r[0] for r in served.ch.query("SELECT DISTINCT learner FROM {db}.statements FINAL WHERE " + where,
                                              params)}  # fmt: skip
    assert {x["learner"] for x in body["learners"]} == learners
    active = {r[0]: int(r[1]) for r in direct}
    assert {x["learner"]: x["active_ms_7d"] for x in body["learners"]} == {x: active.get(x, 0) for x in learners}
    v = sorted(active.get(x, 0) for x in learners)
    assert body["median_active_ms_7d"] == (v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) // 2)
    low = {x["learner"] for x in body["learners"] if x["active_ms_7d"] < 0.25 * body["median_active_ms_7d"]}
    assert {x["learner"] for x in body["learners"] if "low_active_time" in [f["rule"] for f in x["flags"]]} == low
    csv = http.get(f"{served.base}/api/cohorts/{school}/{q(course, safe='')}/{q(cohort, safe='')}?format=csv", timeout=60)
    assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv")
    lines = csv.text.strip().split("\r\n")
    assert lines[0].startswith("learner,name,last_seen,") and len(lines) == 1 + len(learners)
    # The teacher sees the names of its cohort's learners (the school's directory).
    assert {x["learner"]: x["name"] for x in body["learners"]} == _names_from_raw(served.ch, school, course, cohort)
    # Another cohort of the same course, and the same cohort name in another school: 403.
    others = served.ch.query("SELECT DISTINCT cohort FROM {db}.statements FINAL WHERE school = {s:String} AND "
                             "course = {c:String} AND cohort != {k:String}", params)  # fmt: skip
    for (other,) in others:
        denied = http.get(f"{served.base}/api/cohorts/{school}/{q(course, safe='')}/{q(other, safe='')}", timeout=60)
        assert denied.status_code == 403
    assert others
    elsewhere = http.get(f"{served.base}/api/cohorts/school-000/{q(course, safe='')}/{q(cohort, safe='')}", timeout=60)
    assert elsewhere.status_code == 403

    # One learner's timeline: its daily engagement rows; another cohort's learner: 403; unknown: 404.
    one = sorted(learners)[0]
    cohort_url = f"{served.base}/api/cohorts/{school}/{q(course, safe='')}/{q(cohort, safe='')}"
    timeline = http.get(f"{cohort_url}/learners/{one}", timeout=60)
    assert timeline.status_code == 200, timeline.text
    days = served.ch.query("SELECT toString(toDate(period_start)), active_ms FROM {db}.engagement FINAL WHERE " + where
                           + " AND learner = {l:String} AND grain = 'day' ORDER BY period_start", {**params, "l": one})  # fmt: skip
    assert [(d["day"], d["active_ms"]) for d in timeline.json()["days"]] == [(r[0], int(r[1])) for r in days]
    assert http.get(f"{cohort_url}/learners/{'0' * 64}", timeout=60).status_code == 404
    denied = http.get(f"{served.base}/api/cohorts/{school}/{q(course, safe='')}/{q(others[0][0], safe='')}/learners/{one}",
                      timeout=60)  # fmt: skip
    assert denied.status_code == 403


def test_sign_out_needs_the_csrf_token(served):
    http = served.session("net")
    assert http.post(f"{served.base}/signout", allow_redirects=False, timeout=30).status_code == 403
    assert http.post(f"{served.base}/signout", data={"csrf": "wrong"}, allow_redirects=False, timeout=30).status_code == 403
    assert http.get(f"{served.base}/api/state", timeout=60).status_code == 200  # still signed in
    out = http.post(f"{served.base}/signout", data={"csrf": http.csrf}, allow_redirects=False, timeout=30)
    assert out.status_code == 303 and out.headers["Location"] == "/signin"
    assert http.get(f"{served.base}/api/state", timeout=60).status_code == 401


def test_a_sign_in_form_from_elsewhere_is_refused(served):
    # No pre-session cookie and token from our form: a cross-site form post.
    answer = requests.post(f"{served.base}/signin", data={"name": "net", "password": served.passwords["net"],
                                                          "csrf": "made-up"}, allow_redirects=False, timeout=30)  # fmt: skip
    assert answer.status_code == 403 and answer.json()["rule"] == "auth.csrf"
    assert "lp_session" not in answer.cookies


def test_a_new_password_ends_open_sessions(served):
    http = served.session("changing")
    assert http.get(f"{served.base}/api/state", timeout=60).status_code == 200
    set_password(operators_path(served.settings.home), "changing", "a brand new password 42")
    wait_for(lambda: http.get(f"{served.base}/api/state", timeout=60).status_code == 401, 30, "the session to end")
    assert sign_in_attempt(served.base, "changing", served.passwords["changing"]).status_code == 401
    signed_in(served.base, "changing", "a brand new password 42")


def test_repeated_failures_lock_the_account_whether_it_exists_or_not(served):
    base = served.base
    limit = served.settings.operators.lockout_failures
    for name in ("victim", "nobody-of-that-name"):
        for _ in range(limit):
            answer = sign_in_attempt(base, name, "wrong password!!")
            assert answer.status_code == 401 and "The name or the password is wrong." in answer.text
        locked = sign_in_attempt(base, name, served.passwords.get(name, "whatever password"))
        assert locked.status_code == 429 and "paused" in locked.text
        assert "lp_session" not in locked.cookies
    # The other accounts are not locked (the address limit is higher).
    signed_in(base, "net", served.passwords["net"])
    metrics = requests.get(f"{base}/metrics", timeout=30).text
    for outcome in ("ok", "failed", "locked"):
        assert f'learnpulse_operator_signins_total{{outcome="{outcome}"}}' in metrics


def test_repeated_failures_from_one_address_lock_it_out(served, tmp_path):
    settings = served.settings.model_copy(update={"operators": OperatorSettings(address_failures=3),
                                                  "web_port": free_port()})  # fmt: skip
    web = start_web_thread(make_app(served.ch, settings), settings.web_port)
    try:
        base = f"http://127.0.0.1:{settings.web_port}"
        for n in range(3):  # three different names, one address
            assert sign_in_attempt(base, f"guess-{n}", "wrong password!!").status_code == 401
        assert sign_in_attempt(base, "net", served.passwords["net"]).status_code == 429
    finally:
        web.stop()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    from tests.integration.test_dashboard import CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def browser_sign_in(page, base: str, name: str, password: str) -> None:
    """Sign in through the form, as a person does, and wait for the network page."""
    page.goto(f"{base}/signin")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("section.school", timeout=30_000)


def test_teacher_drills_down_in_the_browser_to_its_cohort_and_no_further(served, browser, tmp_path):
    """Network page → school page → cohort page, each with what ClickHouse holds; another cohort's page is 403.
    Screenshots of each page go to $LEARNPULSE_TEST_ARTEFACTS (else the test's temporary directory)."""
    import os
    from pathlib import Path
    from urllib.parse import quote

    shots = Path(os.environ.get("LEARNPULSE_TEST_ARTEFACTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    base = served.base
    school, course, cohort = served.cohort
    page = browser.new_page(viewport={"width": 1366, "height": 800})
    browser_sign_in(page, base, "tch", served.passwords["tch"])
    assert [c.get_attribute("id") for c in page.query_selector_all("section.school")] == [f"school-{school}"]
    page.screenshot(path=str(shots / "teacher-network.png"), full_page=True)

    page.click(f"#school-{school} h2 a")
    page.wait_for_selector("#cohorts tr", timeout=30_000)
    rows = page.query_selector_all("#cohorts tr")
    assert len(rows) == 1 and cohort in rows[0].inner_text()
    assert page.inner_text("#page") == "1–1 of 1"
    # The 14-day sparkline says the cohort's daily active learners, as ClickHouse counts them (the
    # teacher's scope is this cohort: its newest day ends the 14).
    daily = served.ch.query(
        "SELECT uniqExact(learner) FROM {db}.engagement FINAL WHERE school = {s:String} AND course = {c:String} "
        "AND cohort = {k:String} AND grain = 'day' AND period_start > (SELECT max(period_start) FROM {db}.engagement "
        "WHERE school = {s:String} AND course = {c:String} AND cohort = {k:String} AND grain = 'day') - INTERVAL 14 DAY "
        "GROUP BY period_start ORDER BY period_start",
        {"s": school, "c": course, "k": cohort})  # fmt: skip
    spark = rows[0].query_selector("svg[role=img]").get_attribute("aria-label")
    assert spark == "active learners per day: " + ", ".join(str(int(r[0])) for r in daily)
    page.screenshot(path=str(shots / "teacher-school.png"), full_page=True)

    page.click("#cohorts tr a")
    page.wait_for_selector("#learners tr", timeout=30_000)
    (n,) = served.ch.query("SELECT uniqExact(learner) FROM {db}.engagement FINAL WHERE school = {s:String} AND "
                           "course = {c:String} AND cohort = {k:String} AND grain = 'day'",
                           {"s": school, "c": course, "k": cohort})  # fmt: skip
    assert len(page.query_selector_all("#learners tr")) == int(n[0])
    assert "cohort median" in page.inner_text("#median")
    page.screenshot(path=str(shots / "teacher-cohort.png"), full_page=True)

    first = page.query_selector("#learners tr").get_attribute("data-learner")
    page.click("#learners tr a")
    page.wait_for_selector("#days tr", timeout=30_000)
    (days,) = served.ch.query("SELECT count() FROM {db}.engagement FINAL WHERE school = {s:String} AND course = {c:String} "
                              "AND cohort = {k:String} AND learner = {l:String} AND grain = 'day'",
                              {"s": school, "c": course, "k": cohort, "l": first})  # fmt: skip
    assert len(page.query_selector_all("#days tr")) == int(days[0])
    page.screenshot(path=str(shots / "teacher-learner.png"), full_page=True)

    (other,) = served.ch.query("SELECT any(cohort) FROM {db}.statements FINAL WHERE school = {s:String} AND "
                               "course = {c:String} AND cohort != {k:String}", {"s": school, "c": course, "k": cohort})  # fmt: skip
    answer = page.goto(f"{base}/cohorts/{quote(school, safe='')}/{quote(course, safe='')}/{quote(other[0], safe='')}")
    assert answer.status == 403 and "scope.cohort" in page.inner_text("#forbidden")
    assert page.goto(f"{base}/schools/school-000").status == 403
    page.screenshot(path=str(shots / "teacher-forbidden.png"), full_page=True)


def test_acknowledging_an_alert_needs_csrf_and_scope_and_records_who(served, browser, tmp_path):
    from datetime import UTC, datetime

    school, course, cohort = served.cohort
    (other,) = served.ch.query("SELECT school, course, cohort FROM {db}.statements FINAL WHERE school = 'school-001' "
                               "LIMIT 1")  # fmt: skip
    now = datetime.now(UTC)
    ids = [f"ack-{uuid.uuid4().hex[:8]}", f"ack-{uuid.uuid4().hex[:8]}"]
    rows = [(ids[0], *other), (ids[1], school, course, cohort)]
    served.ch.insert(f"{served.ch.database}.alerts",
                     ["alert_id", "school", "course", "cohort", "state", "at", "fired_at", "learners", "disengaged",
                      "share", "threshold", "disengaged_learners", "version"],
                     [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
                      ["fired"] * 2, [now] * 2, [now] * 2, [10] * 2, [5] * 2, [0.5] * 2, [0.4] * 2, [[]] * 2, [1] * 2])  # fmt: skip
    base = served.base
    sch = served.session("sch")
    url = f"{base}/api/alerts/{ids[0]}/acknowledgements"
    assert sch.post(url, json={"note": "calling"}, timeout=30).status_code == 403  # no CSRF token
    assert requests.post(url, json={"note": "calling"}, timeout=30).status_code == 401  # nobody
    bad = sch.post(url, json={"note": "  "}, headers={"X-CSRF-Token": sch.csrf}, timeout=30)
    assert bad.status_code == 400 and bad.json()["rule"] == "alerts.note"
    unknown = sch.post(f"{base}/api/alerts/nope/acknowledgements", json={"note": "x"},
                       headers={"X-CSRF-Token": sch.csrf}, timeout=30)  # fmt: skip
    assert unknown.status_code == 404
    done = sch.post(url, json={"note": "calling the tutor today"}, headers={"X-CSRF-Token": sch.csrf}, timeout=30)
    assert done.status_code == 201 and done.json()["operator"] == "sch"
    # The teacher cannot acknowledge another school's alert, and does not see it.
    tch = served.session("tch")
    denied = tch.post(url, json={"note": "mine?"}, headers={"X-CSRF-Token": tch.csrf}, timeout=30)
    assert denied.status_code == 403
    seen = {a["alert_id"] for a in tch.get(f"{base}/api/alerts", timeout=30).json()["alerts"]}
    assert ids[1] in seen and ids[0] not in seen
    # Everyone who may see it sees who acknowledged it, with the note.
    net = served.session("net")
    (alert,) = [a for a in net.get(f"{base}/api/alerts?open=1", timeout=30).json()["alerts"] if a["alert_id"] == ids[0]]
    assert [(k["operator"], k["note"]) for k in alert["acknowledgements"]] == [("sch", "calling the tutor today")]

    # In the browser: the teacher acknowledges its cohort's alert on the alerts page.
    page = browser.new_page(viewport={"width": 1366, "height": 800})
    page.goto(f"{base}/signin")
    page.fill("input[name=name]", "tch")
    page.fill("input[name=password]", served.passwords["tch"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/", timeout=30_000)
    page.goto(f"{base}/alerts")
    row = f"#alerts tr[data-alert='{ids[1]}']"
    page.wait_for_selector(row, timeout=30_000)
    assert page.query_selector(f"#alerts tr[data-alert='{ids[0]}']") is None
    page.fill(f"{row} input", "spoke to the cohort lead")
    page.click(f"{row} button")
    wait_for(lambda: "tch" in (page.inner_text(f"{row} td.acks") if page.query_selector(row) else ""), 30,
             "the acknowledgement on the page")  # fmt: skip
    assert "spoke to the cohort lead" in page.inner_text(f"{row} td.acks")
    # A fired-day range that excludes today hides it; searching its cohort's name finds it.
    page.fill("#from", "2001-01-01")
    page.fill("#to", "2001-01-02")
    page.click("#filters button[type=submit]")
    wait_for(lambda: page.query_selector(row) is None and page.is_visible("#empty"), 30, "no alerts fired in 2001")
    page.fill("#from", now.date().isoformat())
    page.fill("#to", now.date().isoformat())
    page.fill("#q", cohort.upper())
    page.click("#filters button[type=submit]")
    page.wait_for_selector(row, timeout=30_000)
    shown = [tr.get_attribute("data-alert") for tr in page.query_selector_all("#alerts tr")]
    assert ids[1] in shown and all(cohort.split("/")[-1] in tr.inner_text()
                                   for tr in page.query_selector_all("#alerts tr"))  # fmt: skip
    bad = tch.get(f"{base}/api/alerts", params={"from": "2026-02-30", "to": "2026-03-01"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["rule"] == "dashboard.range"


def _names_from_raw(ch, school: str, course: str, cohort: str) -> dict[str, str]:
    """Each learner of a cohort -> display name, from the raw JSON of their newest statement (the
    simulator's actors have an account and no name: account name@homePage), independently of
    the sink's directory."""
    rows = ch.query(
        "SELECT learner, argMax(concat(JSONExtractString(raw, 'actor', 'account', 'name'), '@', "
        "JSONExtractString(raw, 'actor', 'account', 'homePage')), timestamp) FROM {db}.statements_raw "
        "WHERE school = {s:String} AND learner IN (SELECT learner FROM {db}.statements FINAL WHERE school = {s:String} "
        "AND course = {c:String} AND cohort = {k:String}) GROUP BY learner",
        {"s": school, "c": course, "k": cohort},
    )
    return {str(p): str(n) for p, n in rows}


def test_school_operator_sees_its_learners_names_and_another_schools_operator_gets_403(served, browser, tmp_path):
    """Names for staff: the school operator's cohort page shows each learner's name (as the raw
    statements give it), its search finds a learner by name, the CSV carries the names; the
    operator of another school gets 403 for that cohort's page and API, and no name."""
    import os
    from pathlib import Path
    from urllib.parse import quote

    shots = Path(os.environ.get("LEARNPULSE_TEST_ARTEFACTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    ch, base = served.ch, served.base
    ((course, cohort),) = ch.query("SELECT course, cohort FROM {db}.statements FINAL WHERE school = 'school-001' "
                                   "GROUP BY course, cohort ORDER BY count() DESC, course, cohort LIMIT 1")  # fmt: skip
    names = _names_from_raw(ch, "school-001", course, cohort)
    assert names and all("@" in n for n in names.values())
    path = "/cohorts/school-001/" + quote(course, safe="") + "/" + quote(cohort, safe="")

    page = browser.new_page(viewport={"width": 1366, "height": 800})
    browser_sign_in(page, base, "sch", served.passwords["sch"])
    page.goto(base + path)
    page.wait_for_selector("#learners tr", timeout=30_000)
    shown = {r.get_attribute("data-learner"): r.query_selector("a.learner-name").inner_text()
             for r in page.query_selector_all("#learners tr")}  # fmt: skip
    assert shown == {p: n for p, n in names.items() if p in shown} and set(shown) <= set(names)
    page.screenshot(path=str(shots / "school-cohort-names.png"), full_page=True)
    # Search by (part of) a name finds that learner.
    one, name = sorted(names.items())[0]
    page.fill("#q", name.split("@")[0])
    wait_for(lambda: [r.get_attribute("data-learner") for r in page.query_selector_all("#learners tr")] == [one], 30,
             "the search to keep only the named learner")  # fmt: skip
    # The learner page is headed by the name.
    page.goto(f"{base}{path}/learners/{one}")
    wait_for(lambda: page.inner_text("#learner") == name, 30, "the learner page to show the name")
    # The CSV export carries the names.
    http = served.session("sch")
    csv = http.get(f"{base}/api{path}?format=csv", timeout=60)
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("learner,name,")
    assert f"{one},{name}," in csv.text

    # The operator of another school (school-002) gets 403 and no name, alerts included.
    outsider = served.session("sch2")
    for url in (f"{base}/api{path}", f"{base}/api{path}/learners/{one}", f"{base}{path}"):
        answer = outsider.get(url, timeout=60)
        assert answer.status_code == 403, url
        assert name not in answer.text
    alerts = outsider.get(f"{base}/api/alerts", timeout=60)
    assert alerts.status_code == 200 and name not in alerts.text and "school-001" not in alerts.text
    page.close()


AXE = Path(__file__).resolve().parents[1] / "browser" / "node_modules" / "axe-core" / "axe.min.js"


def serious_accessibility_violations(page) -> list[str]:
    """axe-core (npm, installed by `make setup`) on the page as it is: WCAG 2.1 A and AA rules;
    the violations of serious or critical impact, one line each."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"
    )
    return [f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes']}" for v in result
            if v["impact"] in ("serious", "critical")]  # fmt: skip


def test_every_page_passes_axe_core_without_serious_violations(served, browser):
    """Sign-in, network, school, cohort, learner and alerts pages, as a school operator sees them."""
    from urllib.parse import quote

    if not AXE.exists():  # a checkout that skipped `make setup`
        import subprocess

        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=AXE.parents[2], check=True,
                       timeout=600)  # noqa: S603, S607  # fmt: skip
    base = served.base
    school, course, cohort = served.cohort
    page = browser.new_page(viewport={"width": 1366, "height": 800})
    found: dict[str, list[str]] = {}
    page.goto(f"{base}/signin")
    found["sign-in"] = serious_accessibility_violations(page)
    browser_sign_in(page, base, "sch2", served.passwords["sch2"])
    page.wait_for_selector("#chart-statements svg", timeout=30_000)
    found["network"] = serious_accessibility_violations(page)
    cohort_path = "/".join(quote(x, safe="") for x in (school, course, cohort))
    for name, path, ready in (
        ("school", f"/schools/{quote(school, safe='')}", "#chart-share svg"),
        ("cohort", f"/cohorts/{cohort_path}", "#learners tr"),
        ("alerts", "/alerts", "body"),
    ):  # fmt: skip
        page.goto(base + path)
        page.wait_for_selector(ready, timeout=30_000)
        found[name] = serious_accessibility_violations(page)
        if name == "cohort":
            learner = page.query_selector("#learners tr").get_attribute("data-learner")
    page.goto(f"{base}/cohorts/{cohort_path}/learners/{quote(learner, safe='')}")
    page.wait_for_selector("#days tr", timeout=30_000)
    found["learner"] = serious_accessibility_violations(page)
    assert not {k: v for k, v in found.items() if v}, found


def _trend_rows_from_clickhouse(ch, school: str, first: str, last: str) -> list[list[str]]:
    """The trend table's activity cells for ``school`` per day, straight from daily engagement."""
    rows = ch.query(
        "SELECT toString(toDate(period_start)), sum(statements), uniqExact(learner), sum(sessions) "
        "FROM {db}.engagement FINAL WHERE grain = 'day' AND school = {s:String} "
        "AND toDate(period_start) >= toDate({a:String}) AND toDate(period_start) <= toDate({b:String}) "
        "GROUP BY period_start ORDER BY period_start", {"s": school, "a": first, "b": last})  # fmt: skip
    return [[school, str(r[0]), str(r[1]), str(r[2]), str(r[3])] for r in rows]


def test_trends_chart_and_table_show_clickhouse_figures_within_the_scope(served, browser):
    """The network page's trends: a Plot chart whose dots take keyboard focus, and a table equal to ClickHouse;
    a school operator's range covers its school only, and another school's trends are 403."""
    base = served.base
    page = browser.new_page(viewport={"width": 1366, "height": 800})
    browser_sign_in(page, base, "sch2", served.passwords["sch2"])
    page.wait_for_selector("#chart-statements svg", timeout=30_000)
    page.wait_for_selector("#trend-rows tr", state="attached", timeout=30_000)
    first, last = page.input_value("#trend-range input[name=from]"), page.input_value("#trend-range input[name=to]")
    cells = page.eval_on_selector_all("#trend-rows tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))")
    shown = [[c[0], c[1][:10], c[2], c[3], c[5]] for c in cells]
    assert shown == _trend_rows_from_clickhouse(served.ch, "school-002", first, last)
    # Every dot takes keyboard focus and says its figures.
    dots = page.query_selector_all('#chart-statements g[aria-label="dot"] > *')
    assert len(dots) == len(cells)
    dots[0].focus()
    label = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert label.startswith("school-002, ") and f"{cells[0][2]} statements" in label

    # A range chosen by hand: one day, in hours; the table follows it.
    page.fill("#trend-range input[name=from]", last)
    page.fill("#trend-range input[name=to]", last)
    page.select_option("#trend-range select[name=grain]", "hour")
    page.click("#trend-range button[type=submit]")
    page.wait_for_function("() => [...document.querySelectorAll('#trend-rows tr')].every(tr => "
                           "tr.cells[1].textContent.slice(11) !== '00:00') || document.querySelectorAll('#trend-rows tr').length > 1",
                           timeout=30_000)  # fmt: skip
    hourly = served.session("sch2").get(f"{base}/api/trends", params={"from": last, "to": last, "grain": "hour"}, timeout=60)
    assert hourly.status_code == 200
    points = hourly.json()["points"]
    assert {p["school"] for p in points} == {"school-002"}
    assert sum(p["statements"] for p in points) == sum(int(r[2]) for r in _trend_rows_from_clickhouse(served.ch, "school-002", last, last))

    net = served.session("net")
    assert net.get(f"{base}/api/trends", params={"school": "school-001"}, timeout=60).status_code == 200
    other = served.session("sch2").get(f"{base}/api/trends", params={"school": "school-001"}, timeout=60)
    assert other.status_code == 403 and other.json()["rule"] == "scope.school"
    bad = served.session("sch2").get(f"{base}/api/trends", params={"from": "2026-13-01", "to": "2026-12-01"}, timeout=60)
    assert bad.status_code == 400 and bad.json()["rule"] == "dashboard.range"
    csv_answer = served.session("sch2").get(f"{base}/api/trends", params={"format": "csv"}, timeout=60)
    assert csv_answer.status_code == 200 and csv_answer.text.startswith("school,period,statements")
    assert requests.get(f"{base}/api/trends", timeout=30).status_code == 401


STALLED_SKILL = "https://skills.example/stalled-check"


def _stalled_from_clickhouse(ch, school: str, course: str, learners: list[str], now_s: int) -> dict:
    """(learner, skill) -> text of the "mastery stalled" reason, computed here from mastery_history FINAL with
    the default thresholds (5 attempts, practised within 7 days, below 0.95): estimates in event-time order,
    those whose version is not above an earlier one's dropped (superseded by an undo)."""
    rows = ch.query("SELECT learner, skill, toUnixTimestamp(event_time), p_mastery, observations, version "
                    "FROM {db}.mastery_history FINAL WHERE school = {s:String} AND course = {c:String} "
                    "ORDER BY learner, skill, event_time", {"s": school, "c": course})  # fmt: skip
    series: dict[tuple[str, str], list] = {}
    for learner, skill, t, p, obs, version in rows:
        kept = series.setdefault((learner, skill), [])
        if learner in learners and (not kept or version > max(k[3] for k in kept)):
            kept.append((int(t), float(p), int(obs), int(version)))
    out = {}
    for (learner, skill), pts in series.items():
        if not pts:
            continue
        t, p, obs, _v = pts[-1]
        before = [x for x in pts[:-1] if x[2] <= obs - 5]
        if before and p < 0.95 and now_s - t <= 7 * 86400 and p <= before[-1][1]:
            short = skill.rstrip("/").split("/")[-1]
            out[(learner, skill)] = f"{short} {p:.2f} (was {before[-1][1]:.2f}, {obs - before[-1][2]} attempts ago)"
    return out


def test_cohort_mastery_heatmap_stalled_reason_and_learner_mastery_over_time_equal_clickhouse(served, browser, tmp_path):
    """The teacher's cohort page: every heatmap cell is the learner's `mastery FINAL` estimate, only for the
    cohort's learners; the "mastery stalled" reasons are those computed from `mastery_history`; a learner's
    page lists its estimates over time and draws them."""
    import os
    from datetime import UTC, datetime, timedelta
    from urllib.parse import quote

    shots = Path(os.environ.get("LEARNPULSE_TEST_ARTEFACTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    ch = served.ch
    school, course, cohort = served.cohort
    p = {"s": school, "c": course, "k": cohort}
    learners = sorted(str(r[0]) for r in ch.query(
        "SELECT DISTINCT learner FROM {db}.engagement FINAL WHERE school = {s:String} AND course = {c:String} "
        "AND cohort = {k:String} AND grain = 'day'", p))  # fmt: skip
    ((newest,),) = ch.query("SELECT toUnixTimestamp(max(last_event)) FROM {db}.engagement WHERE school = {s:String} "
                            "AND course = {c:String} AND cohort = {k:String} AND grain = 'day'", p)  # fmt: skip
    # One learner of the cohort practises a skill of its own without progress over its last 6 attempts.
    target, end = learners[0], datetime.fromtimestamp(int(newest), UTC).replace(tzinfo=None)
    flat = [0.3, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]
    ch.insert(f"{ch.database}.mastery_history", ["school", "course", "learner", "skill", "p_mastery", "observations",
                                                 "correct", "event_time", "version"],
              [[school] * 7, [course] * 7, [target] * 7, [STALLED_SKILL] * 7, flat, list(range(1, 8)), [1] * 7,
               [end - timedelta(minutes=6 - i) for i in range(7)], list(range(1, 8))])  # fmt: skip
    expected_cells = {
        (str(r[0]), str(r[1]), f"{float(r[2]):.2f}")
        for r in ch.query("SELECT learner, skill, p_mastery FROM {db}.mastery FINAL WHERE school = {s:String} "
                          "AND course = {c:String}", p) if str(r[0]) in learners
    }  # fmt: skip
    assert expected_cells, "the simulated cohort has mastery estimates"
    expected_stalled = _stalled_from_clickhouse(ch, school, course, learners, int(newest))
    assert (target, STALLED_SKILL) in expected_stalled

    page = browser.new_page(viewport={"width": 1366, "height": 800})
    browser_sign_in(page, served.base, "tch", served.passwords["tch"])
    cohort_path = "/".join(quote(x, safe="") for x in (school, course, cohort))
    page.goto(f"{served.base}/cohorts/{cohort_path}")
    page.wait_for_selector(f"#learners tr[data-learner='{target}']", timeout=30_000)
    page.wait_for_function("document.querySelectorAll('#heatmap-rows td.cell').length > 0 || "
                           "!document.getElementById('no-heatmap').hidden", timeout=30_000)  # fmt: skip
    cells = page.eval_on_selector_all(
        "#heatmap-rows td.cell[data-p]", "els => els.map(e => [e.parentElement.dataset.learner, e.dataset.skill, e.textContent])")
    assert {tuple(c) for c in cells} == expected_cells
    # Colour is never the only carrier: every cell with an estimate says it as text.
    assert all(c[2] for c in cells)
    reasons = page.eval_on_selector_all(
        "#learners tr", "rows => rows.map(r => [r.dataset.learner, r.lastElementChild.textContent])")
    shown = {}
    for learner, text in reasons:
        if "mastery stalled: " in text:
            shown[learner] = text.split("mastery stalled: ", 1)[1].split("; ")[0]
    want: dict[str, list[str]] = {}
    for (learner, skill), text in sorted(expected_stalled.items()):
        want.setdefault(learner, []).append(text)
    assert shown == {k: ", ".join(v) for k, v in want.items()}
    page.screenshot(path=str(shots / "teacher-cohort-mastery.png"), full_page=True)
    # The heatmap's CSV: the same cells.
    import csv
    import io

    answer = served.session("tch").get(f"{served.base}/api/cohorts/{cohort_path}?format=csv&table=mastery", timeout=60)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
    got = {(r["learner"], r["skill"], f"{float(r['p_mastery']):.2f}") for r in csv.DictReader(io.StringIO(answer.text))}
    assert got == expected_cells
    bad = served.session("tch").get(f"{served.base}/api/cohorts/{cohort_path}?format=csv&table=nope", timeout=60)
    assert bad.status_code == 400 and bad.json()["rule"] == "dashboard.csv_table"

    page.goto(f"{served.base}/cohorts/{cohort_path}/learners/{quote(target, safe='')}")
    # The points table sits in a closed <details> (the chart is what shows): present, not visible.
    page.wait_for_selector("#mastery-points tr[data-skill='stalled-check']", state="attached", timeout=30_000)
    points = page.eval_on_selector_all("#mastery-points tr[data-skill='stalled-check']",
                                       "rows => rows.map(r => [...r.children].map(td => td.textContent))")  # fmt: skip
    assert [(x[2], int(x[3])) for x in points] == [(f"{v:.2f}", i + 1) for i, v in enumerate(flat)]
    page.wait_for_selector("#mastery-chart svg", timeout=30_000)
    page.screenshot(path=str(shots / "teacher-learner-mastery.png"), full_page=True)


def test_metrics_are_refused_to_a_request_a_trusted_proxy_relayed(served):
    """/metrics is for Prometheus asking the process directly, not for the operators' proxy's visitors."""
    s = served.settings
    behind = s.model_copy(update={"web_port": free_port(),
                                  "operators": s.operators.model_copy(update={"trusted_proxies": ["127.0.0.1"]})})
    web = start_web_thread(make_app(served.ch, behind), behind.web_port)
    try:
        base = f"http://127.0.0.1:{behind.web_port}"
        assert requests.get(f"{base}/metrics", timeout=60).status_code == 200
        relayed = requests.get(f"{base}/metrics", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=60)
        assert relayed.status_code == 404 and "learnpulse_" not in relayed.text
    finally:
        web.stop()
