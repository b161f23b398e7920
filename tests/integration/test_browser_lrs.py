"""Course content runs against our LRS: a real browser on a second origin, a real xAPI library.

Debian's Chromium (driven by Playwright) loads tests/browser/index.html from a small
static server on another port than the gateway. The page uses @xapi/xapi from npm
(tests/browser/package.json, installed by `make setup` with `npm ci`) to send a statement,
save and merge resume State, read it back, and create and read an Agent Profile, through
CORS. The test then checks what the LRS holds (the document store) and that the statement
reached ClickHouse; a page on an origin no school allowed gets nothing through.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest

from learnpulse.commands.gateway import credentials_path
from learnpulse.credentials import update_origins
from learnpulse.local_secrets import pseudonym_key
from learnpulse.settings import ClickHouseSettings, Settings
from producers.lrsstore.documents import SqlDocumentStore
from schemas.identity import pseudonym
from schemas.lrs_store import DocumentKey, DocumentKind
from tests.conftest import REPO, free_port, wait_for
from tests.unit.gateway.harness import LiveGateway, statement

from .test_dashboard import CHROMIUM_ARGS

BROWSER_DIR = REPO / "tests" / "browser"
LIBRARY = BROWSER_DIR / "node_modules" / "@xapi" / "xapi" / "dist" / "XAPI.umd.js"


@pytest.fixture(scope="module")
def xapi_library() -> Path:
    """The npm library, as `make setup` installs it (installed here if a checkout skipped that)."""
    if not LIBRARY.exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=BROWSER_DIR, check=True, timeout=600)  # noqa: S603, S607
    return LIBRARY


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def course_site(tmp_path, xapi_library):
    """Serve the course page from its own origin(s): ``course_site()`` → ``http://127.0.0.1:PORT``."""
    root = tmp_path / "site"
    root.mkdir()
    shutil.copy(BROWSER_DIR / "index.html", root / "index.html")
    shutil.copy(xapi_library, root / "xapi.umd.js")
    servers: list[ThreadingHTTPServer] = []

    def start() -> str:
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), functools.partial(_Quiet, directory=str(root)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def _run_page(browser, site: str, params: dict[str, str]) -> dict:
    page = browser.new_page()
    # What the browser saw, for the failure message: axios reports only "Network Error".
    seen: list[str] = []
    page.on("requestfailed", lambda r: seen.append(f"failed {r.method} {r.url}: {r.failure}"))
    page.on("console", lambda m: seen.append(f"console {m.type}: {m.text}"))
    try:
        page.goto(f"{site}/index.html?{urlencode(params)}")
        page.wait_for_function("window.__result !== undefined", timeout=120_000)
        result = page.evaluate("window.__result")
        if "error" in result:
            result["browser_saw"] = seen
        return result
    finally:
        page.close()


def _preflight_granted(gw, origin: str) -> bool:
    r = gw.http.options(gw.url, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "authorization,content-type"})  # fmt: skip
    return r.status_code == 204


@pytest.mark.kafka
def test_course_page_on_another_origin_sends_statements_and_keeps_state_and_profile(
    tmp_path, kafka, chdb_url, course_site, browser
):
    settings = Settings(home=tmp_path / "home", kafka=kafka, clickhouse=ClickHouseSettings(url=chdb_url),
                        log_level="WARNING")  # fmt: skip
    allowed_site, other_site = course_site(), course_site()
    with LiveGateway(settings, ["browser-school"]) as gw:
        key, secret = gw.keys["browser-school"]
        update_origins(credentials_path(settings), key, add=[allowed_site])
        # The gateway's Kafka producers take a while to be ready on a busy machine: wait until
        # it accepts a statement (a 503 before that is the gateway's correct answer, not ours to test).
        wait_for(lambda: gw.post(statement(), key="browser-school").status_code == 200, 180,
                 "the gateway to accept statements")  # fmt: skip
        # Running gateways re-read the credentials file within their reload interval (2 s): on a
        # quiet machine the page came sooner and its preflight was refused (seen in CI).
        wait_for(lambda: _preflight_granted(gw, allowed_site), 60, "the gateway to allow the course's origin")
        learner = f"mailto:learner-{uuid.uuid4().hex[:8]}@example.com"
        activity = f"http://example.com/courses/volcanoes/{uuid.uuid4().hex[:8]}"
        registration = str(uuid.uuid4())
        params = {"endpoint": f"http://127.0.0.1:{gw.port}/xapi/", "key": key, "secret": secret,
                  "mbox": learner, "activity": activity, "registration": registration}  # fmt: skip

        result = _run_page(browser, allowed_site, params)

        assert "error" not in result, result
        assert result["state"] == {"slide": 8, "answers": ["b"]}  # PUT, then POST merged
        assert result["stateIds"] == ["resume"]
        assert result["profile"] == {"languagePreference": "fr-FR", "audioPreference": "on"}
        assert result["staleWrite"] == 412
        # The page could read the exposed headers.
        assert result["stateEtag"] and result["profileEtag"] and result["profileLastModified"]
        assert result["consistentThrough"]

        # What the LRS holds: the document store, keyed by the learner's pseudonym.
        agent = pseudonym(pseudonym_key(settings), {"mbox": learner})
        store = SqlDocumentStore(settings.lrs_store_url, connections=1)
        try:
            state = store.get(DocumentKey("browser-school", DocumentKind.STATE, activity, agent, registration, "resume"))
            assert state is not None and state.content_type == "application/json"
            import orjson

            assert orjson.loads(state.content) == {"slide": 8, "answers": ["b"]}
            assert result["stateEtag"] == f'"{state.etag}"'
            prefs = store.get(DocumentKey("browser-school", DocumentKind.AGENT_PROFILE, "", agent, "",
                                          "cmi5LearnerPreferences"))  # fmt: skip
            assert prefs is not None and orjson.loads(prefs.content)["languagePreference"] == "fr-FR"
        finally:
            store.close()

        # The statement is readable at once (the accepted-id index), then reaches ClickHouse
        # through Kafka and the sink: wait for the table, not for the LRS read.
        (sid,) = result["statementIds"]
        r = gw.wait_readable("browser-school", sid, timeout=120)
        assert r.status_code == 200 and r.json()["actor"]["mbox"] == learner

        def rows_in_clickhouse() -> int:
            rows = gw.ch.query(
                "SELECT count() FROM {db}.statements WHERE school = {school:String}"
                " AND toString(statement_id) = {id:String}",
                {"school": "browser-school", "id": sid},
            )
            return int(rows[0][0])

        wait_for(rows_in_clickhouse, 180, "the statement in ClickHouse")
        assert rows_in_clickhouse() == 1

        # The same page on an origin no school allowed gets nothing through.
        other_registration = str(uuid.uuid4())
        refused = _run_page(browser, other_site, {**params, "registration": other_registration})
        assert "error" in refused and "statementIds" not in refused
        store = SqlDocumentStore(settings.lrs_store_url, connections=1)
        try:
            assert store.list_ids("browser-school", DocumentKind.STATE, activity, agent, other_registration, None) == []
        finally:
            store.close()
