"""multipart/mixed (xAPI 1.0.3 Communication §1.5.2) and the alternate request syntax (§1.3)."""

from __future__ import annotations

import hashlib

import pytest
from multidict import CIMultiDict

from producers.gateway import multipart
from producers.gateway.altsyntax import XRequest, unwrap
from producers.gateway.protocol import XapiError, negotiate

SPEC_BOUNDARY = "abcABC0123'()+_,-./:=?"
SPEC_BODY = (
    b'--abcABC0123\'()+_,-./:=?\r\nContent-Type:application/json\r\n\r\n{"a": 1}\r\n'
    b"--abcABC0123'()+_,-./:=?\r\nContent-Type:text/plain\r\nContent-Transfer-Encoding:binary\r\n"
    b"X-Experience-API-Hash:495395e777cd98da653df9615d09c0fd6bb2f8d4788394cd53c56a3bfdcd848a\r\n\r\n"
    b"here is a simple attachment\r\n--abcABC0123'()+_,-./:=?--"
)


def test_xapi_1_0_3_comm_1_5_2_s6_spec_example_parses_and_hash_matches():
    boundary = multipart.boundary_of(f'multipart/mixed; boundary="{SPEC_BOUNDARY}"')
    assert boundary == SPEC_BOUNDARY
    parts = multipart.parse(SPEC_BODY, boundary)
    assert [p.body for p in parts] == [b'{"a": 1}', b"here is a simple attachment"]
    by_sha = multipart.attachment_parts(parts)
    assert list(by_sha) == ["495395e777cd98da653df9615d09c0fd6bb2f8d4788394cd53c56a3bfdcd848a"]


def test_multipart_preamble_and_no_body_parts_rules():
    parts = multipart.parse(b"preamble text\r\n--b\r\n\r\n{}\r\n--b--\r\n", "b")
    assert parts[0].headers == {} and parts[0].body == b"{}"
    for bad in (b"no boundary at all", b"--b\r\n\r\n{} never closed"):
        with pytest.raises(XapiError):
            multipart.parse(bad, "b")


def test_xapi_1_0_3_comm_1_5_2_sha384_and_sha512_parts_checked():
    data = b"\x00\x01binary"
    for algo in (hashlib.sha224, hashlib.sha384, hashlib.sha512):
        part = multipart.Part({"x-experience-api-hash": algo(data).hexdigest().upper()}, data)
        assert list(multipart.attachment_parts([part, part])) == [algo(data).hexdigest()]
    wrong = multipart.Part({"x-experience-api-hash": hashlib.sha256(b"other").hexdigest()}, data)
    with pytest.raises(XapiError, match="hash-mismatch"):
        multipart.attachment_parts([wrong, wrong])


def test_multipart_build_round_trip_with_binary_content_containing_crlf_dashes():
    data = b"\r\n--xapi-\r\n\x00\xff"
    body, ctype = multipart.build(b'{"statements":[]}', [("ab" * 32, "application/octet-stream", data)])
    parts = multipart.parse(body, multipart.boundary_of(ctype))
    assert parts[0].headers["content-type"] == "application/json"
    assert parts[1].body == data
    assert parts[1].headers["x-experience-api-hash"] == "ab" * 32


def test_protocol_negotiate_versions():
    assert [negotiate(v) for v in ("1.0", "1.0.3", "1.0.17", "2.0", "2.0.0", " 2.0.1 ")] == [
        "1.0.3", "1.0.3", "1.0.3", "2.0.0", "2.0.0", "2.0.0"
    ]  # fmt: skip
    assert [negotiate(v) for v in (None, "", "0.95", "1", "1.1", "2.1.0")] == [None] * 6


def _alt(query, form: bytes, ctype="application/x-www-form-urlencoded", method="POST", version=None):
    headers = CIMultiDict({"Content-Type": ctype})
    if version:
        headers["X-Experience-API-Version"] = version
    return XRequest(method, query, headers, form)


def test_xapi_1_0_3_comm_1_3_form_fields_become_headers_query_and_body():
    req = unwrap(
        _alt(
            {"method": "PUT"},
            b"statementId=abc&X-Experience-API-Version=1.0.3&Authorization=Basic+eA%3D%3D"
            b"&content=%7B%22a%22%3A1%7D&Content-Type=application%2Fjson",
        ),
        "1.0.3",
    )
    assert req.method == "PUT" and req.alternate
    assert req.query == {"statementId": "abc"}
    assert req.body == b'{"a":1}'
    assert req.headers["Authorization"] == "Basic eA=="
    assert req.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "query,ctype,method,rule",
    [
        ({"method": "PUT", "statementId": "x"}, "application/x-www-form-urlencoded", "POST", "alternate.query"),
        ({"method": "PUT"}, "application/json", "POST", "alternate.content-type"),
        ({"method": "POST"}, "application/x-www-form-urlencoded", "PUT", "alternate.method"),
        ({"method": "PATCH"}, "application/x-www-form-urlencoded", "POST", "alternate.method"),
    ],
)
def test_xapi_1_0_3_comm_1_3_malformed_alternate_requests_400(query, ctype, method, rule):
    with pytest.raises(XapiError) as err:
        unwrap(_alt(query, b"", ctype, method), "1.0.3")
    assert err.value.rule == rule and err.value.status == 400


def test_xapi_2_0_alternate_syntax_removed():
    for req in (
        _alt({"method": "GET"}, b"", version="2.0.0"),
        _alt({"method": "GET"}, b"X-Experience-API-Version=2.0"),
    ):
        with pytest.raises(XapiError) as err:
            unwrap(req, "1.0.3")
        assert err.value.rule == "alternate.removed"


def test_xapi_1_0_3_comm_1_3_method_in_any_case():
    req = unwrap(_alt({"method": "post"}, b"content=%7B%7D&Content-Type=application%2Fjson"), "1.0.3")
    assert req.method == "POST"
    req = unwrap(_alt({"method": "Delete"}, b"stateId=x"), "1.0.3")
    assert req.method == "DELETE"
