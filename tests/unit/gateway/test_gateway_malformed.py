"""Malformed requests get a 4xx naming the rule, never a 500 (issue 11, item 7).

Each case was a 500 (or silently accepted) before: deep nesting passed orjson's parser
but not its serializer, duplicate keys were accepted with the last one winning, and
header bytes outside ASCII/Latin-1 raised inside the handler.
"""

from __future__ import annotations

import socket
from pathlib import Path

import orjson
import pytest

from producers.gateway import jsonguard

from .harness import Harness, statement


@pytest.fixture
def h():
    with Harness() as harness:
        yield harness


def _nested(levels: int) -> bytes:
    """A statement whose extension value nests ``levels`` arrays/objects (built as text:
    no JSON library serializes 1,000 levels)."""
    body = orjson.dumps(statement(result={"extensions": {"http://example.com/deep": "DEEP"}}))
    deep = b'{"k":[' * (levels // 2) + b"[" * (levels % 2) + b"1" + b"]" * (levels % 2) + b"]}" * (levels // 2)
    return body.replace(b'"DEEP"', deep)


def _raw_post(h: Harness, body: bytes, content_type: str = "application/json", **headers: str):
    return h.http.post(h.url, data=body, headers=h.headers(**{"Content-Type": content_type, **headers}))


@pytest.mark.parametrize("levels", [254, 300, 1000])
def test_deep_extension_nesting_is_400_json_depth_not_500(h, levels):
    r = _raw_post(h, _nested(levels))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["rule"] == "json.depth"
    assert h.committed == []


def test_nesting_within_the_limit_is_stored(h):
    # Depth counted over the whole body: the statement itself uses a few levels.
    r = _raw_post(h, _nested(jsonguard.MAX_DEPTH - 8))
    assert r.status_code == 200, r.text
    assert len(h.statements_in_kafka()) == 1


def test_brackets_inside_strings_do_not_count_as_nesting(h):
    deep_text = "[" * 5000 + '\\"{' * 100 + "\\\\"
    r = h.post(statement(result={"response": deep_text}))
    assert r.status_code == 200, r.text
    assert h.statements_in_kafka()[0]["result"]["response"] == deep_text


@pytest.mark.parametrize(
    "body, where",
    [
        (b'{"actor": {"mbox": "mailto:a@example.com"}, "verb": {"id": "http://e.com/v"}, "verb": {"id": "http://e.com/w"},'
         b' "object": {"id": "http://e.com/a"}}', "$"),
        (b'[{"actor": {"mbox": "mailto:a@example.com", "mbox": "mailto:b@example.com"}, "verb": {"id": "http://e.com/v"},'
         b' "object": {"id": "http://e.com/a"}}]', "$[0].actor"),
        (b'{"actor": {"mbox": "mailto:a@example.com"}, "verb": {"id": "http://e.com/v"}, "object": {"id": "http://e.com/a"},'
         b' "result": {"extensions": {"http://e.com/x": {"a": 1, "a": 2}}}}', "$.result.extensions.http://e.com/x"),
    ],
)
def test_duplicate_member_names_are_400_json_duplicate_key(h, body, where):
    r = _raw_post(h, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["rule"] == "json.duplicate-key"
    assert err["path"] == where
    assert h.committed == []


def test_duplicate_key_check_ignores_colons_and_escaped_quotes_in_strings(h):
    st = statement(result={"response": 'a:b "quoted": \\": {"x": 1, "x": 2}'})
    r = _raw_post(h, orjson.dumps(st))
    assert r.status_code == 200, r.text


def test_duplicate_key_hidden_behind_escaped_colons_is_found(h):
    # The collapsed member's colon is "replaced" by one that only appears once the string is decoded.
    body = (b'{"actor": {"mbox": "mailto:a@example.com"}, "verb": {"id": "http://e.com/v"}, "object": {"id": '
            b'"http://e.com/a"}, "result": {"response": "a", "response": "b\\u003a"}}')  # fmt: skip
    r = _raw_post(h, body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["rule"] == "json.duplicate-key"
    assert r.json()["error"]["path"] == "$.result"


@pytest.mark.parametrize("levels", [65, 200])
def test_deep_nesting_between_strings_full_of_brackets_is_measured_exactly(h, levels):
    body = orjson.dumps(statement(result={"response": "]]]]" * 100, "extensions": {"http://e.com/x": "DEEP"}}))
    deep = b'["]"' + b',["]"' * (levels - 1) + b"]" * levels
    r = _raw_post(h, body.replace(b'"DEEP"', deep))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["rule"] == "json.depth"


def test_duplicate_key_in_put_is_refused(h):
    body = b'{"actor": {"mbox": "mailto:a@example.com"}, "verb": {"id": "http://e.com/v", "id": "http://e.com/w"},' \
           b' "object": {"id": "http://e.com/a"}}'  # fmt: skip
    r = h.http.put(h.url, params={"statementId": "9e8b1c7a-36c1-4c3e-9a31-1d1f3b0b6a10"}, data=body,
                   headers=h.headers(**{"Content-Type": "application/json"}))  # fmt: skip
    assert r.status_code == 400
    assert r.json()["error"]["rule"] == "json.duplicate-key"


def _raw_http(h: Harness, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are (requests would refuse or re-encode these headers)."""
    with socket.create_connection(("127.0.0.1", h.port), timeout=10) as s:
        s.sendall(head + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


def _head(h: Harness, extra: bytes) -> bytes:
    return (b"POST /xapi/statements HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Experience-API-Version: 1.0.3\r\n"
            + extra)  # fmt: skip


@pytest.mark.parametrize("boundary", ["\u0101\u0102", "caf\u00e9-\u2603"])
def test_multipart_boundary_outside_ascii_is_400(h, boundary):
    auth = h.headers()["Authorization"].encode()
    head = _head(h, b"Authorization: " + auth + b"\r\nContent-Type: multipart/mixed; boundary=" + boundary.encode()
                 + b"\r\n")  # fmt: skip
    status, body = _raw_http(h, head, b"--x\r\n\r\n{}\r\n--x--")
    assert status == 400, body
    assert orjson.loads(body)["error"]["rule"] == "multipart.boundary"


@pytest.mark.parametrize("value", [b"Basic \xc3\xa9\xc3\xa9==", b"Basic \xff\xfe", b"\xe2\x98\x83 abc"])
def test_non_ascii_authorization_is_401_not_500(h, value):
    status, body = _raw_http(h, _head(h, b"Authorization: " + value + b"\r\nContent-Type: application/json\r\n"),
                             orjson.dumps(statement()))  # fmt: skip
    assert status == 401, body
    assert orjson.loads(body)["error"]["rule"] == "auth"


def test_non_ascii_secret_inside_valid_base64_is_401(h):
    import base64

    token = base64.b64encode("key-a:s\u00e9cr\u00eat\udcff".encode("utf-8", "surrogatepass")).decode()
    r = h.http.post(h.url, json=statement(), headers={**h.headers(), "Authorization": f"Basic {token}"})
    assert r.status_code == 401


def _structure_by_expression(raw: bytes) -> bytes:
    """What ``jsonguard.structure`` answered when it removed strings with its regular expression."""
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = raw.translate(None, jsonguard._DELETE)
    return jsonguard._STRINGS.sub(b"", kept) if b'"' in kept else kept


def test_structure_removes_strings_as_the_expression_did_terminated_or_not():
    # Strings are dropped by splitting on quotes when they pair up (a batch of 100 spent
    # most of its depth check in the expression); an unterminated string is read as before.
    import random

    rnd = random.Random(16)
    alphabet = b'"[]{}:a\\,'
    for _ in range(20_000):
        raw = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
        assert jsonguard.structure(raw) == _structure_by_expression(raw), raw
    assert jsonguard.structure(b'["a]" , "[b') == b'["['  # odd quotes: the tail stays
    assert jsonguard.structure(b'{"k":["]]"]}') == b"{:[]}"


def _corpus_texts() -> list[bytes]:
    corpus = Path("/work/shared/xapi-corpus")
    texts = [orjson.dumps(orjson.loads(line)["statement"]) for name in ("valid.jsonl", "invalid.jsonl")
             for line in (corpus / name).read_bytes().splitlines() if line.strip()]  # fmt: skip
    batch = orjson.dumps([orjson.loads(t) for t in texts])
    return [*texts, batch, (corpus / "malformed-cmi5-initialized.json").read_bytes()]


def test_depth_brackets_are_the_structure_without_colons_on_random_text_and_the_corpus():
    # The depth check takes the brackets outside strings without splitting on every quote
    # when no string holds a bracket; whatever the text, it must see what the structure sees.
    import random

    rnd = random.Random(28)
    alphabet = b'"[]{}:a\\,'
    texts = [bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40))) for _ in range(20_000)]
    texts += [b'"a" "b"', b'"" ""', b'"[" "["', b'["]"', b'"a":"]"', b'{"a":"b\\"]"}', b'"', b'""""', b'"""']
    texts += _corpus_texts()
    assert len(texts) > 20_100
    for raw in texts:
        assert jsonguard.brackets(raw) == jsonguard.structure(raw).replace(b":", b""), raw
        for depth in (1, 2, 3, 64):
            assert jsonguard.depth_exceeds(jsonguard.brackets(raw), depth) == jsonguard.depth_exceeds(
                jsonguard.structure(raw), depth
            ), raw
