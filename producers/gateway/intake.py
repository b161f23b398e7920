"""What a request's credential decides beyond its school: ingestion policy and xAPI version.

Kept out of ``app.py``: the gateway asks :class:`Intake` which rules a request's
statements may break (its credential's policy, ``schemas.policy``) and which version to
answer a request that named none.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from schemas import metrics
from schemas.errors import InvalidStatement
from schemas.policy import STRICT_POLICY, IngestPolicy

from ..quarantine import QuarantineWriter, count_tolerated  # noqa: F401  (re-exported for app.py)


def basic_pair(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """``(key, secret)`` of an HTTP Basic ``Authorization`` header, else None."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        key, sep, secret = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):  # binascii.Error, or a non-ASCII token
        return None
    return (key, secret) if sep else None


class Intake:
    """Per-credential decisions, read from the authenticator when it knows them.

    An authenticator without ``policy``/``xapi_version`` (a test double, an older store)
    means strict and the gateway's default version.
    """

    def __init__(self, authenticator: Any, quarantine: QuarantineWriter | None = None) -> None:
        self._policy = getattr(authenticator, "policy", None)
        self._version = getattr(authenticator, "xapi_version", None)
        self.quarantine = quarantine

    def refused(self, req: Any, school: str | None, version: str, err: InvalidStatement) -> None:
        """Keep a statement write answered 400 in the quarantine (never blocks; see QuarantineWriter).

        Only for a request whose credential was verified (``school`` known): what anyone
        could send without one is not kept. Reads (GET) refused are not statements.
        """
        if self.quarantine is None or school is None or req is None or req.method not in ("POST", "PUT"):
            return
        pair = basic_pair(req.headers)
        self.quarantine.keep(school, pair[0] if pair else "", version, req.body, err)

    def close(self) -> None:
        if self.quarantine is not None:
            self.quarantine.close()

    def policy_of(self, key: str | None) -> IngestPolicy:
        """The policy of an authenticated request's credential ``key`` (None: strict)."""
        if key is None or self._policy is None:
            return STRICT_POLICY
        return self._policy(key)

    def version_for(self, headers: Mapping[str, str], default: str) -> str:
        """The version to answer a request without a usable version header: its credential's
        when the pair is already known good (never verified here: no scrypt, no oracle)."""
        if self._version is None:
            return default
        pair = basic_pair(headers)
        if pair is None:
            return default
        return self._version(*pair) or default
