"""The ``more`` token is signed and the page cap holds on every page (issue 11, item 3)."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qs, urlparse

import orjson

from producers.gateway.app import GatewayConfig

from .harness import Harness, new_id, statement


def _more_token(response) -> str:
    more = response.json()["more"]
    assert more, "expected a more link"
    return parse_qs(urlparse(more).query)["more"][0]


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _post_many(h: Harness, n: int) -> None:
    assert h.post([statement(id=new_id()) for _ in range(n)]).status_code == 200
    h.sink_through = int(time.time() * 1000) + 60_000  # every statement readable


def test_edited_more_token_is_400_with_rule_and_never_a_bigger_page():
    with Harness(GatewayConfig(max_limit=5)) as h:
        _post_many(h, 30)
        first = h.get({"limit": "2"})
        token = _more_token(first)
        assert len(h.get({"more": token}).json()["statements"]) == 2
        # What the outside check did: decode the query, raise the limit, encode it again.
        body, _, mac = token.partition(".")
        doc = orjson.loads(_unb64(body))
        doc["limit"] = 50_000
        for forged in (_b64(orjson.dumps(doc)), _b64(orjson.dumps(doc)) + "." + mac):
            r = h.get({"more": forged})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["rule"] == "query.more.signature"


def test_more_token_of_another_gateway_is_refused():
    with Harness(GatewayConfig(cursor_key=b"a" * 32)) as one, Harness(GatewayConfig(cursor_key=b"b" * 32)) as two:
        _post_many(one, 3)
        token = _more_token(one.get({"limit": "1"}))
        assert one.get({"more": token}).status_code == 200
        r = two.get({"more": token})
        assert r.status_code == 400
        assert r.json()["error"]["rule"] == "query.more.signature"


def test_pages_followed_to_the_end_return_everything_once_within_the_cap():
    with Harness(GatewayConfig(max_limit=4)) as h:
        _post_many(h, 11)
        seen: list[str] = []
        r = h.get({"limit": "0"})
        while True:
            page = r.json()["statements"]
            assert len(page) <= 4
            seen += [s["id"] for s in page]
            if not r.json()["more"]:
                break
            r = h.get({"more": _more_token(r)})
        assert len(seen) == len(set(seen)) == 11
