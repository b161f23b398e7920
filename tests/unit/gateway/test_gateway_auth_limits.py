"""Sign-in abuse is refused with 429 + Retry-After, never paid for in scrypt (issue 11, item 4)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from learnpulse.credentials import CredentialStore, add_credential
from producers.gateway.app import GatewayConfig
from producers.gateway.authguard import AuthGuard, AuthLimits

from .harness import Harness, basic, statement

_OFF = {"requests_per_s_per_address": 0, "requests_per_s_per_key": 0}


def _refusals(rule: str) -> float:
    return REGISTRY.get_sample_value("learnpulse_gateway_refusals_total", {"rule": rule}) or 0.0


class _Real(Harness):
    """The app with the real scrypt credential store; ``keys[school] = (key, secret)``."""

    def __init__(self, tmp_path, limits: AuthLimits, trusted_proxies: frozenset[str] = frozenset()) -> None:
        path = tmp_path / "credentials.json"
        self.keys = {s: add_credential(path, s) for s in ("school-a", "school-b")}
        super().__init__(GatewayConfig(auth_limits=limits, trusted_proxies=trusted_proxies),
                         authenticator=CredentialStore(path))  # fmt: skip

    def auth(self, key: str) -> str:
        return basic(*self.keys[key]) if key in self.keys else key

    def post_as(self, authorization: str):
        return self.http.post(self.url, json=statement(), headers={**self.headers(), "Authorization": authorization})


def _assert_429(r, rule: str) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["rule"] == rule
    assert int(r.headers["Retry-After"]) >= 1


def test_repeated_failures_lock_out_further_checks_but_not_a_signed_in_client(tmp_path):
    limits = AuthLimits(**_OFF, attempts_per_s=1000, attempts_burst=1000, lockout_failures=3, lockout_s=120)
    with _Real(tmp_path, limits) as h:
        key_a, secret_a = h.keys["school-a"]
        assert h.post(statement(), key="school-a").status_code == 200  # verified and cached
        before = _refusals("auth.locked-out")
        for n in range(3):
            assert h.post_as(basic(key_a, f"guess-{n}")).status_code == 401
        _assert_429(h.post_as(basic(key_a, "guess-3")), "auth.locked-out")
        _assert_429(h.post_as(basic("lp_unknown", "guess-4")), "auth.locked-out")  # the address is locked too
        assert 100 <= int(h.post_as(basic(key_a, "guess-5")).headers["Retry-After"]) <= 120
        assert _refusals("auth.locked-out") - before == 3
        # The school's client that signed in before keeps working.
        assert h.post(statement(), key="school-a").status_code == 200
        # A not yet verified pair is not checked while locked out.
        _assert_429(h.post(statement(), key="school-b"), "auth.locked-out")


def test_sign_in_attempts_are_rate_limited_per_address(tmp_path):
    limits = AuthLimits(**_OFF, attempts_per_s=0.01, attempts_burst=3, lockout_failures=1000)
    with _Real(tmp_path, limits) as h:
        key_a, _ = h.keys["school-a"]
        statuses = [h.post_as(basic(key_a, f"guess-{n}")).status_code for n in range(3)]
        assert statuses == [401, 401, 401]
        _assert_429(h.post_as(basic("lp_other", "guess")), "auth.rate.address")


def test_request_rate_limits_per_address_and_per_key(tmp_path):
    with Harness(GatewayConfig(auth_limits=AuthLimits(requests_per_s_per_address=0.01, burst_s=300,
                                                      requests_per_s_per_key=0))) as h:  # fmt: skip
        assert [h.post(statement()).status_code for _ in range(3)] == [200, 200, 200]
        r = h.post(statement())
        _assert_429(r, "rate.address")
        assert r.headers["X-Experience-API-Consistent-Through"]
    with Harness(GatewayConfig(auth_limits=AuthLimits(requests_per_s_per_key=0.01, burst_s=200,
                                                      requests_per_s_per_address=0))) as h:  # fmt: skip
        assert [h.post(statement(), key="key-a").status_code for _ in range(2)] == [200, 200]
        _assert_429(h.post(statement(), key="key-a"), "rate.key")
        assert h.post(statement(), key="key-b").status_code == 200  # another school's budget is its own


def test_wrong_secrets_for_a_key_do_not_spend_that_schools_request_budget():
    with Harness(GatewayConfig(auth_limits=AuthLimits(requests_per_s_per_key=0.01, burst_s=200,
                                                      requests_per_s_per_address=0, lockout_failures=1000))) as h:  # fmt: skip
        for _ in range(5):
            r = h.http.post(h.url, json=statement(), headers={**h.headers(), "Authorization": basic("key-a", "wrong")})
            assert r.status_code == 401
        assert h.post(statement(), key="key-a").status_code == 200


def test_guard_lockout_ends_after_its_window():
    now = [0.0]
    guard = AuthGuard(AuthLimits(lockout_failures=2, lockout_window_s=10, lockout_s=30), clock=lambda: now[0])
    guard.failed("1.2.3.4", "k")
    now[0] += 11  # the first failure left the window
    guard.failed("1.2.3.4", "k")
    guard.attempt("1.2.3.4", "k")  # one failure in the window: not locked
    guard.failed("1.2.3.4", "k")
    with pytest.raises(Exception) as err:
        guard.attempt("1.2.3.4", "other-key")
    assert err.value.status == 429
    now[0] += 31
    guard.attempt("1.2.3.4", "other-key")


def test_a_clients_connections_starting_together_share_one_password_check(tmp_path, monkeypatch):
    """An LMS opening many connections at once with a not yet verified pair: one scrypt, no 429."""
    from concurrent.futures import ThreadPoolExecutor

    import learnpulse.credentials as creds

    calls = [0]
    real = creds._hash

    def counted(*args, **kw):
        calls[0] += 1
        return real(*args, **kw)

    limits = AuthLimits(**_OFF, attempts_per_s=0.01, attempts_burst=2, lockout_failures=1000)
    with _Real(tmp_path, limits) as h:
        monkeypatch.setattr(creds, "_hash", counted)
        auth = h.auth("school-a")

        def post(_):
            import requests

            return requests.post(h.url, json=statement(), headers={**h.headers(), "Authorization": auth}).status_code

        with ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(post, range(24)))
        assert statuses == [200] * 24
        assert calls[0] <= 2  # at most a check already finished when the last requests arrived


def _limited_behind(tmp_path, trusted: frozenset[str]) -> _Real:
    limits = AuthLimits(**_OFF, attempts_per_s=1000, attempts_burst=1000, lockout_failures=3, lockout_s=120)
    return _Real(tmp_path, limits, trusted)


def _guess_from(h: _Real, forwarded_for: str, secret: str):
    key_b, _ = h.keys["school-b"]
    return h.http.post(h.url, json=statement(), headers={
        **h.headers(), "Authorization": basic(key_b, secret), "X-Forwarded-For": forwarded_for})  # fmt: skip


def _sign_in_from(h: _Real, forwarded_for: str):
    return h.http.post(h.url, json=statement(), headers={
        **h.headers(), "Authorization": h.auth("school-a"), "X-Forwarded-For": forwarded_for})  # fmt: skip


def test_behind_a_trusted_balancer_one_clients_guesses_lock_out_that_client_not_the_others(tmp_path):
    # The test client connects from 127.0.0.1: here that is the balancer.
    with _limited_behind(tmp_path, frozenset({"127.0.0.1"})) as h:
        for n in range(3):
            assert _guess_from(h, "203.0.113.9", f"guess-{n}").status_code == 401
        _assert_429(_guess_from(h, "203.0.113.9", "guess-3"), "auth.locked-out")
        # A client that writes the guesser's address first is still counted by the hop the balancer added.
        assert _sign_in_from(h, "203.0.113.9, 198.51.100.7").status_code == 200
        assert _sign_in_from(h, "198.51.100.8").status_code == 200


def test_without_trusted_proxies_x_forwarded_for_is_ignored(tmp_path):
    # Anyone can write the header: believed, it would let a guesser pick a fresh address per try.
    with _limited_behind(tmp_path, frozenset()) as h:
        for n in range(3):
            assert _guess_from(h, f"203.0.113.{n}", f"guess-{n}").status_code == 401
        _assert_429(_guess_from(h, "203.0.113.99", "guess-3"), "auth.locked-out")


def test_metrics_are_refused_to_a_request_a_trusted_balancer_relayed(tmp_path):
    # The test client connects from 127.0.0.1: here that is the balancer, and Prometheus.
    with _limited_behind(tmp_path, frozenset({"127.0.0.1"})) as h:
        metrics = h.url.rsplit("/xapi/", 1)[0] + "/metrics"
        assert h.http.get(metrics).status_code == 200  # Prometheus asks the gateway directly
        relayed = h.http.get(metrics, headers={"X-Forwarded-For": "203.0.113.9"})
        assert relayed.status_code == 404 and "learnpulse_" not in relayed.text


def test_metrics_without_a_trusted_balancer_are_served_whatever_the_headers(tmp_path):
    with _limited_behind(tmp_path, frozenset()) as h:
        metrics = h.url.rsplit("/xapi/", 1)[0] + "/metrics"
        assert h.http.get(metrics, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200
