"""Learner pseudonyms: HMAC-SHA256(secret, canonical inverse functional identifier)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from .errors import InvalidStatement


def canonical_ifi(agent: dict[str, Any]) -> str:
    """The one inverse functional identifier of an agent, as a stable string.

    In ``mbox`` only the scheme and the domain are lower-cased: they are case-insensitive,
    while the local part is not (RFC 5321 §2.4), so two addresses differing there are two
    agents, as an LRS compares them. ``mbox_sha1sum`` is lower-cased hex; ``openid`` and
    ``account`` are kept exactly.
    """
    if "mbox" in agent:
        scheme, _, address = str(agent["mbox"]).partition(":")
        local, at, domain = address.rpartition("@")
        return "mbox:" + scheme.lower() + ":" + (local + at + domain.lower() if at else address)
    if "mbox_sha1sum" in agent:
        return "mbox_sha1sum:" + str(agent["mbox_sha1sum"]).lower()
    if "openid" in agent:
        return "openid:" + str(agent["openid"])
    account = agent.get("account")
    if isinstance(account, dict) and "homePage" in account and "name" in account:
        return f"account:{account['homePage']}|{account['name']}"
    raise InvalidStatement("actor.ifi", "agent has no inverse functional identifier", "$.actor")


def pseudonym(secret: bytes, agent: dict[str, Any]) -> str:
    """Hex HMAC-SHA256 of the agent's canonical IFI under ``secret``."""
    return hmac.new(secret, canonical_ifi(agent).encode(), hashlib.sha256).hexdigest()
