"""Per-school HTTP Basic credentials: hashed at rest, verified once, revocable."""

from __future__ import annotations

import json
import os
import stat

import pytest

from learnpulse.credentials import (
    CredentialStore,
    add_credential,
    list_credentials,
    remove_credential,
    update_origins,
)
from learnpulse.errors import UserError


def test_credentials_secret_is_stored_only_as_salted_scrypt(tmp_path):
    path = tmp_path / "credentials.json"
    key, secret = add_credential(path, "school-a")
    key2, secret2 = add_credential(path, "school-a")
    text = path.read_text()
    assert secret not in text and secret2 not in text
    entries = json.loads(text)["credentials"]
    assert {e["key"] for e in entries} == {key, key2}
    assert len({e["salt"] for e in entries}) == 2 and all(e["n"] >= 2**14 for e in entries)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [c.school for c in list_credentials(path)] == ["school-a", "school-a"]


def test_credentials_authenticate_decides_school(tmp_path):
    path = tmp_path / "c.json"
    ka, sa = add_credential(path, "school-a")
    kb, sb = add_credential(path, "school-b")
    store = CredentialStore(path)
    assert store.authenticate(ka, sa) == "school-a"
    assert store.authenticate(kb, sb) == "school-b"
    assert store.authenticate(ka, sb) is None
    assert store.authenticate("lp_unknown", sa) is None
    assert store.cached(ka, sa) == (True, "school-a")  # second use: no scrypt
    assert store.cached(ka, sa + "x") == (False, None)
    assert store.authenticate(ka, sa + "x") is None
    assert store.cached(ka, sa + "x") == (True, None)  # a wrong secret is not re-hashed either


def test_credentials_removed_key_stops_working_after_reload(tmp_path):
    path = tmp_path / "c.json"
    key, secret = add_credential(path, "school-a")
    now = [0.0]
    store = CredentialStore(path, reload_every_s=1.0, clock=lambda: now[0])
    assert store.authenticate(key, secret) == "school-a"
    assert remove_credential(path, key)
    assert not remove_credential(path, key)
    now[0] += 2
    assert store.authenticate(key, secret) is None


def test_credentials_new_key_works_at_once_not_after_the_reload_interval(tmp_path):
    # A school's LMS often starts posting the moment its credential is issued. Refused until
    # the next periodic reload, its first requests counted as failed sign-ins and ten of
    # them locked its address out for five minutes (seen in the fault benchmark).
    path = tmp_path / "c.json"
    add_credential(path, "school-a")
    now = [0.0]
    store = CredentialStore(path, reload_every_s=1e9, clock=lambda: now[0])
    key, secret = add_credential(path, "school-b")
    assert store.authenticate(key, secret) == "school-b"
    assert store.authenticate("lp_unknown", secret) is None


def test_credentials_change_within_one_clock_tick_is_still_seen(tmp_path):
    # The kernel stamps mtime from a coarse clock: a file rewritten within one tick of the
    # last read keeps its mtime. A revoked key or a new allowed origin must still be seen.
    path = tmp_path / "c.json"
    key, secret = add_credential(path, "school-a")
    before = path.stat().st_mtime_ns
    now = [0.0]
    store = CredentialStore(path, reload_every_s=1.0, clock=lambda: now[0])
    assert not store.origin_allowed("https://course.example", None)
    update_origins(path, key, add=["https://course.example"])
    os.utime(path, ns=(before, before))
    now[0] += 2
    assert store.origin_allowed("https://course.example", "school-a")
    assert remove_credential(path, key)
    os.utime(path, ns=(before, before))
    now[0] += 2
    assert store.authenticate(key, secret) is None


@pytest.mark.parametrize("school", ["", "two words", "x" * 200])
def test_credentials_add_rejects_bad_school_names(tmp_path, school):
    with pytest.raises(UserError):
        add_credential(tmp_path / "c.json", school)


# -- ingestion policy and xAPI version per credential (issue 14) --------------------------
def test_credentials_policy_and_version_persist_and_reach_the_store(tmp_path):
    from schemas.policy import OPENEDX_RULES, STRICT_POLICY, IngestPolicy
    from learnpulse.credentials import update_credential

    path = tmp_path / "c.json"
    key, secret = add_credential(path, "school-a")
    store = CredentialStore(path, reload_every_s=0)
    assert store.policy(key) == STRICT_POLICY and store.xapi_version(key, secret) is None
    update_credential(path, key, policy=IngestPolicy("tolerant", OPENEDX_RULES), xapi_version="2.0.0")
    [c] = list_credentials(path)
    assert c.policy.tolerated == OPENEDX_RULES and c.xapi_version == "2.0.0"
    store._reload(force=True)
    assert store.policy(key).tolerated == OPENEDX_RULES
    assert store.xapi_version(key, secret) is None  # not verified yet in this process: nothing told
    assert store.authenticate(key, secret) == "school-a"
    assert store.xapi_version(key, secret) == "2.0.0"
    assert store.xapi_version(key, "wrong") is None
    update_credential(path, key, policy=STRICT_POLICY, xapi_version=None)
    [c] = list_credentials(path)
    assert c.policy == STRICT_POLICY and c.xapi_version is None
    assert "policy" not in json.loads(path.read_text())["credentials"][0]
    with pytest.raises(UserError):
        update_credential(path, "lp_missing", policy=STRICT_POLICY)
    with pytest.raises(UserError):
        update_credential(path, key, xapi_version="0.95")


def test_credentials_cli_policy_options(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from learnpulse.cli import main

    monkeypatch.setenv("LEARNPULSE_HOME", str(tmp_path))
    run = CliRunner().invoke
    r = run(main, ["credentials", "add", "--school", "s1", "--preset", "openedx"])
    assert r.exit_code == 0, r.output
    assert "tolerant (activity.id.iri, activity.id.required, objectType.value, result.score.min-max.equal)" in r.output
    key = run(main, ["credentials", "list"]).output.split("\t")[0]
    r = run(main, ["credentials", "update", key, "--tolerate", "statement.id.uuid"])
    assert r.exit_code != 0 and "'statement.id.uuid' cannot be tolerated" in r.output
    r = run(main, ["credentials", "update", key, "--policy", "strict", "--tolerate", "objectType.value"])
    assert r.exit_code != 0 and "tolerates nothing" in r.output
    r = run(main, ["credentials", "update", key, "--policy", "strict", "--xapi-version", "2.0.0"])
    assert r.exit_code == 0, r.output
    assert "policy: strict\txAPI: 2.0.0" in run(main, ["credentials", "list"]).output
def _count_scrypt(monkeypatch) -> list[int]:
    import learnpulse.credentials as creds

    calls = [0]
    real = creds._hash

    def counted(*args, **kw):
        calls[0] += 1
        return real(*args, **kw)

    monkeypatch.setattr(creds, "_hash", counted)
    return calls


def test_unknown_key_costs_the_same_scrypt_as_a_wrong_secret(tmp_path, monkeypatch):
    """No timing oracle: an unknown key was answered from memory (~2 ms), a known one after a scrypt (~90 ms)."""
    path = tmp_path / "c.json"
    key, secret = add_credential(path, "school-a")
    store = CredentialStore(path)
    calls = _count_scrypt(monkeypatch)
    assert store.cached("lp_0000000000000000", "guess-1") == (False, None)
    assert store.authenticate("lp_0000000000000000", "guess-1") is None
    assert calls[0] == 1
    assert store.authenticate(key, "guess-1") is None
    assert calls[0] == 2
    # Repeated, both are answered from memory alike.
    assert store.cached("lp_0000000000000000", "guess-1") == (True, None)
    assert store.cached(key, "guess-1") == (True, None)


def test_verified_pair_is_cached_for_a_short_time_only(tmp_path, monkeypatch):
    path = tmp_path / "c.json"
    key, secret = add_credential(path, "school-a")
    now = [0.0]
    store = CredentialStore(path, reload_every_s=1e9, clock=lambda: now[0], verified_ttl_s=60)
    calls = _count_scrypt(monkeypatch)
    assert store.authenticate(key, secret) == "school-a"
    for _ in range(20):
        assert store.cached(key, secret) == (True, "school-a")  # a valid client pays no scrypt per request
    assert calls[0] == 1
    now[0] += 61
    assert store.cached(key, secret) == (False, None)
    assert store.authenticate(key, secret) == "school-a"
    assert calls[0] == 2
