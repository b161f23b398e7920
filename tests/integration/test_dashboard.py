"""The live dashboard in a real browser (Debian Chromium driven by Playwright).

The page must show every school with the numbers ClickHouse holds, and light a school up
when new statements for it arrive.
"""

from __future__ import annotations

import dataclasses

import pytest

from learnpulse.pipeline import open_clickhouse, run_simulator, start_sinks
from learnpulse.settings import ClickHouseSettings, Settings
from learnpulse.web import make_app, start_web_thread
from producers.simulator import SimulationConfig
from tests.conftest import free_port, wait_for
from tests.operators_support import make_operator

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def sign_in_page(browser, base: str, home) -> object:
    """A browser page signed in as a new network operator (through the sign-in form)."""
    password = make_operator(home, "net", "network")
    page = browser.new_page()
    page.goto(f"{base}/")
    page.wait_for_url(f"{base}/signin", timeout=20_000)  # not signed in: sent to the form
    page.fill("input[name=name]", "net")
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/", timeout=30_000)
    assert page.inner_text("#viewer-name") == "net"
    return page


def school_counts(ch) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in ch.query("SELECT school, count() FROM {db}.statements FINAL GROUP BY school")}


@pytest.mark.kafka
def test_dashboard_shows_every_school_with_clickhouse_counts_and_lights_up(tmp_path, kafka, chdb_url, browser):
    settings = Settings(home=tmp_path / "home", kafka=kafka, clickhouse=ClickHouseSettings(url=chdb_url), web_port=free_port())
    first = 600
    run_simulator(settings, SimulationConfig(seed=3, schools=3), count=first, rate=None)
    ch = open_clickhouse(settings)
    sinks = start_sinks(settings, ch)
    # Stopped before ClickHouse is closed: the app's research handle keeps chDB's embedded
    # engine (and its directory lock) alive until the app is cleaned up.
    web = start_web_thread(make_app(ch, settings), settings.web_port)
    try:
        wait_for(lambda: sum(school_counts(ch).values()) == first, 120, "first batch in ClickHouse")
        page = sign_in_page(browser, f"http://127.0.0.1:{settings.web_port}", settings.home)
        page.wait_for_selector("section.school", timeout=20_000)
        expected = school_counts(ch)
        assert len(expected) == 3

        def shown() -> dict[str, int]:
            cards = page.query_selector_all("section.school")
            return {c.query_selector("h2").inner_text(): int(c.get_attribute("data-statements") or 0) for c in cards}

        wait_for(lambda: shown() == expected, 20, f"page to show {expected}")
        assert page.inner_text("#k-statements").replace(",", "") == str(first)

        # New traffic: at least one school card lights up and its number grows to match.
        run_simulator(settings, SimulationConfig(seed=4, schools=3), count=300, rate=None)
        wait_for(lambda: sum(school_counts(ch).values()) == first + 300, 120, "second batch in ClickHouse")
        page.wait_for_selector("section.school.hot", timeout=20_000)
        wait_for(lambda: shown() == school_counts(ch), 20, "page to show the new counts")
    finally:
        web.stop()
        sinks.join()
        ch.close()


@pytest.mark.kafka
def test_dashboard_shows_open_cohort_alerts_and_drops_resolved_ones(tmp_path, kafka, chdb_url, browser):
    """Alert records on learnpulse.alerts → sink → ClickHouse → the page's alert panel."""
    from kafka import KafkaProducer

    from schemas.records import AlertRecord
    from schemas.topics import Topic

    settings = Settings(home=tmp_path / "home", kafka=kafka, clickhouse=ClickHouseSettings(url=chdb_url), web_port=free_port())
    run_simulator(settings, SimulationConfig(seed=5, schools=2), count=200, rate=None)
    ch = open_clickhouse(settings)
    sinks = start_sinks(settings, ch)
    web = start_web_thread(make_app(ch, settings), settings.web_port)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    topic = Topic.ALERTS.physical(kafka.topic_prefix)
    fired = AlertRecord("ep-1", "school-001", "https://c.example/algebra", "algebra/cohort-b", "fired",
                        1_767_312_000_000, 1_767_312_000_000, 31, 13, 13 / 31, 0.3, ("p1", "p2"), 1)
    try:
        producer.send(topic, key=b"school-001|algebra", value=fired.encode()).get(30)
        page = sign_in_page(browser, f"http://127.0.0.1:{settings.web_port}", settings.home)
        page.wait_for_selector("#alerts li.alert", timeout=60_000)
        text = page.inner_text("#alerts")
        assert "school-001 · algebra · cohort-b" in text
        assert "42% of 31 learners disengaged (threshold 30%)" in text
        page.wait_for_selector("#school-school-001.alerting", timeout=20_000)
        assert page.inner_text("#k-alerts") == "1"

        resolved = dataclasses.replace(
            fired, state="resolved", at_ms=fired.at_ms + 3_600_000, share=0.1, disengaged=3, version=2
        )
        producer.send(topic, key=b"school-001|algebra", value=resolved.encode()).get(30)
        wait_for(lambda: page.inner_text("#k-alerts") == "0", 60, "the resolved alert to leave the page")
        assert "none" in page.inner_text("#alerts")
    finally:
        producer.close()
        web.stop()
        sinks.join()
        ch.close()


@pytest.mark.kafka
def test_dashboard_page_of_a_school_operator_shows_its_school_only_and_signs_out(tmp_path, kafka, chdb_url, browser):
    settings = Settings(home=tmp_path / "home", kafka=kafka, clickhouse=ClickHouseSettings(url=chdb_url), web_port=free_port())
    run_simulator(settings, SimulationConfig(seed=6, schools=3), count=300, rate=None)
    ch = open_clickhouse(settings)
    sinks = start_sinks(settings, ch)
    web = start_web_thread(make_app(ch, settings), settings.web_port)
    base = f"http://127.0.0.1:{settings.web_port}"
    password = make_operator(settings.home, "sch", "school", schools=["school-002"])
    try:
        wait_for(lambda: sum(school_counts(ch).values()) == 300, 120, "the statements in ClickHouse")
        page = browser.new_page()
        page.goto(f"{base}/signin")
        page.fill("input[name=name]", "sch")
        page.fill("input[name=password]", "not the password")
        page.click("button[type=submit]")
        page.wait_for_selector("p.error", timeout=20_000)
        assert "wrong" in page.inner_text("p.error")
        page.fill("input[name=name]", "sch")
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/", timeout=30_000)
        page.wait_for_selector("section.school", timeout=20_000)
        expected = school_counts(ch)["school-002"]
        wait_for(lambda: page.get_attribute("#school-school-002", "data-statements") == str(expected), 20,
                 "the school's card with its ClickHouse count")  # fmt: skip
        assert [c.get_attribute("id") for c in page.query_selector_all("section.school")] == ["school-school-002"]
        assert page.evaluate("async () => (await fetch('api/schools/school-000')).status") == 403
        assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read the session
        page.click("#viewer button[type=submit]")
        page.wait_for_url(f"{base}/signin", timeout=20_000)
        assert page.evaluate("async () => (await fetch('api/state')).status") == 401
    finally:
        web.stop()
        sinks.join()
        ch.close()
