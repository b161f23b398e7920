"""Bounded fuzzing of the gateway's parse and validate path through the real aiohttp app
(issue 11, item 8): whatever arrives, the answer is never a 5xx, and every error our
handler gives names its rule. The longer run: ``python -m benchmarks.fuzz_gateway``.
"""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fuzzing import request_bytes, rule_of, send
from .harness import Harness, statement

GOOD_AUTH = b"Basic " + base64.b64encode(b"key-a:secret-key-a")

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)
STATEMENT_KEYS = ["id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority",
                  "version", "attachments", "objectType", "mbox", "account", "extensions", "definition"]  # fmt: skip


@st.composite
def statement_like(draw) -> object:
    """A valid statement with some members replaced, dropped or added at random."""
    st_ = statement()
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(STATEMENT_KEYS))
        action = draw(st.sampled_from(["replace", "drop", "nest"]))
        if action == "drop":
            st_.pop(key, None)
        elif action == "replace":
            st_[key] = draw(json_values)
        else:
            target = st_.get(draw(st.sampled_from(["actor", "verb", "object"])))
            if isinstance(target, dict):
                target[key] = draw(json_values)
    return st_


@st.composite
def body(draw) -> bytes:
    kind = draw(st.sampled_from(["statement", "batch", "json", "bytes", "mutated", "deep", "duplicate"]))
    if kind == "statement":
        return orjson.dumps(draw(statement_like()))
    if kind == "batch":
        return orjson.dumps(draw(st.lists(statement_like(), max_size=3)))
    if kind == "json":
        return orjson.dumps(draw(json_values))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        n = draw(st.integers(1, 1200))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return orjson.dumps(statement(result={"extensions": {"http://e.com/x": "D"}})).replace(
            b'"D"', opener * n + b"1" + closer * draw(st.sampled_from([n, max(n - 1, 0)]))
        )
    if kind == "duplicate":
        raw = orjson.dumps(statement())
        key = draw(st.sampled_from([b'"actor":', b'"verb":', b'"id":', b'"object":']))
        return raw.replace(key, key + b'{"id": "http://e.com/dup"}, ' + key, 1)
    raw = bytearray(orjson.dumps(draw(statement_like())))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        raw[at : at + draw(st.integers(0, 3))] = draw(st.binary(max_size=4))
    return bytes(raw)


header_text = st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")) | st.binary(max_size=40)


@st.composite
def content_type(draw) -> bytes:
    kind = draw(st.sampled_from(["json"] * 4 + ["multipart", "other", "random"]))
    if kind == "json":
        return b"application/json"
    if kind == "multipart":
        return b"multipart/mixed; boundary=" + draw(header_text)
    if kind == "other":
        return draw(st.sampled_from([b"text/plain", b"application/x-www-form-urlencoded", b""]))
    return draw(header_text)


@st.composite
def authorization(draw) -> bytes:
    # Mostly valid: the point is to reach the parser and the validator.
    kind = draw(st.sampled_from(["good"] * 6 + ["other", "basic-garbage", "random"]))
    if kind == "good":
        return GOOD_AUTH
    if kind == "other":
        return b"Basic " + base64.b64encode(draw(st.binary(max_size=30)))
    if kind == "basic-garbage":
        return b"Basic " + draw(header_text)
    return draw(header_text)


QUERY_NAMES = ["statementId", "voidedStatementId", "agent", "verb", "activity", "registration", "since", "until",
               "limit", "format", "attachments", "ascending", "more", "method", "related_agents", "x"]  # fmt: skip


@st.composite
def target(draw) -> bytes:
    names = draw(st.lists(st.sampled_from(QUERY_NAMES), max_size=3))
    if not names or draw(st.booleans()):
        return b"/xapi/statements"
    from urllib.parse import quote

    pairs = [f"{n}={quote(draw(st.text(max_size=30)), safe='')}" for n in names]
    return b"/xapi/statements?" + "&".join(pairs).encode()


@st.composite
def fuzzed_request(draw) -> tuple[str, bytes, list[tuple[bytes, bytes]], bytes]:
    method = draw(st.sampled_from(["POST"] * 4 + ["PUT", "GET", "HEAD", "DELETE"]))
    headers = [(b"Authorization", draw(authorization())), (b"Content-Type", draw(content_type()))]
    version = draw(st.sampled_from([b"1.0.3"] * 4 + [b"2.0.0", b"1.0", b"0.9", b""]) | header_text)
    headers.append((b"X-Experience-API-Version", version))
    return method, draw(target()), headers, draw(body())


@pytest.fixture(scope="module")
def gateway():
    with Harness() as h:
        yield h


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=fuzzed_request())
def test_fuzzed_requests_never_get_a_5xx_and_errors_name_their_rule(gateway, req):
    method, path, headers, payload = req
    status, answer = send("127.0.0.1", gateway.port, request_bytes(method, path, headers, payload, "127.0.0.1"))
    assert status < 500, (status, answer[:300])
    if status >= 400 and answer.startswith(b"{"):
        assert rule_of(status, answer) != "(no rule)", answer[:300]
