"""Signed ``more`` tokens: a client can follow them, not forge or edit them.

The token carries the whole query (stateless paging that never expires), so without a
signature a client could decode it, raise ``limit`` past the page cap or point ``after``
anywhere. It is ``base64url(query JSON) "." base64url(HMAC-SHA256(key, query JSON)[:16])``;
the key comes from the settings or a file in the gateway's home
(``learnpulse.commands.gateway.cursor_key``), so every gateway sharing that home accepts
the others' tokens and a restart keeps them valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from .protocol import bad_request

_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorSigner:
    """Signs and verifies ``more`` tokens with ``key`` (at least 16 bytes)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the more-token key must be at least 16 bytes")
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def sign(self, payload: bytes) -> str:
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str) -> bytes:
        """The payload of a token this key signed; else 400 ``query.more.signature``."""
        body, dot, mac = token.partition(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (ValueError, binascii.Error):
            payload = given = b""
        if not dot or not payload or not hmac.compare_digest(given, self._mac(payload)):
            raise bad_request(
                "query.more.signature",
                "the more token was not issued by this LRS or was altered; follow the more link as returned",
                "$query.more",
            )
        return payload
