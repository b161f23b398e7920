"""Sessions, lock-out and CSRF of the operators' sign-in (learnpulse/signin.py), on a real aiohttp app.

The app has the sign-in routes and two stand-in routes (no ClickHouse): one that answers
the scope the middleware put on the request, one that changes something.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from learnpulse.operators import OperatorAccounts, add_operator, operators_path
from learnpulse.settings import OperatorSettings
from learnpulse.signin import LockOut, Sessions, SignIn
from reporting.scope import SCOPE_KEY

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_end_after_idle_time_and_after_their_maximum_age():
    clock = Clock()
    sessions = Sessions(idle_s=60, max_s=300, clock=clock)

    class Op:
        name, password_hash = "ann", "h"

    sid, _ = sessions.open(Op)
    other, _ = sessions.open(Op)
    assert sid != other and len(sid) >= 40
    for _ in range(4):  # kept alive by requests every 59 s ...
        clock.now += 59
        assert sessions.get(sid) is not None
    clock.now += 59
    assert sessions.get(sid) is not None
    clock.now += 59  # ... but not beyond the maximum age (354 s > 300 s)
    assert sessions.get(sid) is None
    assert sessions.get(other) is None  # idle for 354 s
    assert sessions.get("made-up") is None


def test_lockout_counts_failures_within_the_window_and_ends_after_the_cooldown():
    clock = Clock()
    lock = LockOut(window_s=100, cooldown_s=50, clock=clock)
    assert not lock.fail("k", 3) and not lock.fail("k", 3)
    clock.now += 101  # the first two fell out of the window
    assert not lock.fail("k", 3) and not lock.fail("k", 3)
    assert lock.locked("k") == 0
    assert lock.fail("k", 3)
    assert lock.locked("k") == pytest.approx(50)
    assert lock.locked("other") == 0
    clock.now += 51
    assert lock.locked("k") == 0


def run(coro_fn, tmp_path, **settings):
    path = operators_path(tmp_path)
    if not path.exists():
        add_operator(path, "ann", "school", PASSWORD, schools=("s1",))
    clock = Clock()
    signin = SignIn(OperatorAccounts(path, reload_every_s=0), OperatorSettings(**settings), clock)

    async def whoami(request: web.Request) -> web.Response:
        scope = request.get(SCOPE_KEY)
        if scope is None:
            return web.json_response({"rule": "auth.required"}, status=401)
        return web.json_response(sorted(scope.schools))

    async def change(_request: web.Request) -> web.Response:
        return web.json_response({"changed": True})

    async def main():
        app = web.Application()
        signin.install(app)
        app.router.add_get("/whoami", whoami)
        app.router.add_post("/change", change)
        async with TestClient(TestServer(app)) as client:
            return await coro_fn(client, clock, signin)

    return asyncio.run(main())


async def sign_in(client, name="ann", password=PASSWORD):
    form = await client.get("/signin")
    token = _CSRF.search(await form.text()).group(1)
    return await client.post("/signin", data={"name": name, "password": password, "csrf": token},
                             allow_redirects=False)  # fmt: skip


def test_signed_in_requests_carry_the_scope_and_expire_when_idle(tmp_path):
    async def scenario(client, clock, _signin):
        assert (await client.get("/whoami")).status == 401
        answer = await sign_in(client)
        assert answer.status == 303 and answer.headers["Location"] == "/"
        assert await (await client.get("/whoami")).json() == ["s1"]
        clock.now += 31 * 60  # idle longer than the default 30 minutes
        return (await client.get("/whoami")).status

    assert run(scenario, tmp_path) == 401


def test_changes_need_the_session_csrf_token(tmp_path):
    async def scenario(client, _clock, signin):
        assert (await client.post("/change")).status == 401  # not signed in
        await sign_in(client)
        assert (await client.get("/signin", allow_redirects=False)).status == 303  # signed in: sent on
        refused = await client.post("/change")
        assert refused.status == 403 and (await refused.json())["rule"] == "auth.csrf"
        assert (await client.post("/change", headers={"X-CSRF-Token": "guess"})).status == 403
        assert (await client.post("/change", data={"csrf": "guess"})).status == 403
        sid = client.session.cookie_jar.filter_cookies(client.make_url("/"))["lp_session"].value
        token = signin.sessions.get(sid).csrf
        ok = await client.post("/change", headers={"X-CSRF-Token": token})
        form = await client.post("/change", data={"csrf": token})
        return ok.status, form.status

    assert run(scenario, tmp_path) == (200, 200)


def test_lockout_refuses_even_the_right_password_and_looks_the_same_for_unknown_names(tmp_path):
    async def scenario(client, clock, _signin):
        answers = {}
        for name in ("ann", "nobody"):
            for _ in range(3):
                failed = await sign_in(client, name, "wrong password!!")
                assert failed.status == 401
            locked = await sign_in(client, name, PASSWORD)
            answers[name] = (locked.status, "lp_session" in locked.cookies)
        clock.now += 61
        after = await sign_in(client, "ann", PASSWORD)
        return answers, after.status

    answers, after = run(scenario, tmp_path, lockout_failures=3, address_failures=100, lockout_cooldown_s=60)
    assert answers == {"ann": (429, False), "nobody": (429, False)}
    assert after == 303


def test_one_address_is_locked_out_across_names(tmp_path):
    async def scenario(client, _clock, _signin):
        for n in range(4):
            assert (await sign_in(client, f"guess{n}", "wrong password!!")).status == 401
        return (await sign_in(client, "ann", PASSWORD)).status

    assert run(scenario, tmp_path, lockout_failures=100, address_failures=4) == 429


def test_the_cookies_are_secure_when_the_settings_say_tls(tmp_path):
    async def scenario(client, _clock, _signin):
        form = await client.get("/signin")
        token = _CSRF.search(await form.text()).group(1)
        # Over TLS the browser would send the Secure form cookie back; this plain-HTTP client does not.
        answer = await client.post("/signin", data={"name": "ann", "password": PASSWORD, "csrf": token},
                                   headers={"Cookie": f"lp_signin={token}"}, allow_redirects=False)  # fmt: skip
        return form.headers.getall("Set-Cookie"), answer.headers.getall("Set-Cookie")

    form_cookies, signin_cookies = run(scenario, tmp_path, secure_cookies=True)
    for cookie in (form_cookies[0], next(c for c in signin_cookies if c.startswith("lp_session="))):
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie


def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy():
    from aiohttp.test_utils import make_mocked_request

    from learnpulse.signin import client_address

    def request(remote, *xff):
        headers = [("X-Forwarded-For", v) for v in xff]
        from multidict import CIMultiDict

        req = make_mocked_request("POST", "/signin", headers=CIMultiDict(headers))
        return req.clone(remote=remote)

    assert client_address(request("10.0.0.9", "1.2.3.4"), []) == "10.0.0.9"  # no proxy named: header ignored
    assert client_address(request("127.0.0.1", "1.2.3.4"), ["127.0.0.1"]) == "1.2.3.4"
    # The client wrote a hop of its own in front: the proxy's own (rightmost) one counts.
    assert client_address(request("127.0.0.1", "6.6.6.6, 1.2.3.4"), ["127.0.0.1"]) == "1.2.3.4"
    assert client_address(request("127.0.0.1", "1.2.3.4, 10.0.0.2"), ["127.0.0.1", "10.0.0.2"]) == "1.2.3.4"
    assert client_address(request("127.0.0.1"), ["127.0.0.1"]) == "127.0.0.1"
    assert client_address(request("10.0.0.9", "1.2.3.4"), ["127.0.0.1"]) == "10.0.0.9"  # not via the proxy
