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


def learner_key(agent: dict[str, Any]) -> str:
    """What a learner pseudonym is computed from: the actor's IFI, or for an anonymous
    Group (xAPI 1.0.3 §2.4.2.2, no IFI of its own) its members' IFIs — the same set of
    people, in any order, is the same learner."""
    members = agent.get("member")
    if agent.get("objectType") == "Group" and isinstance(members, list) and members and not _has_ifi(agent):
        return "group:" + "\x1e".join(sorted(canonical_ifi(m) for m in members))
    return canonical_ifi(agent)


def _has_ifi(agent: dict[str, Any]) -> bool:
    return any(k in agent for k in ("mbox", "mbox_sha1sum", "openid", "account"))


def pseudonym(secret: bytes, agent: dict[str, Any]) -> str:
    """Hex HMAC-SHA256 of :func:`learner_key` of the actor under ``secret``."""
    return hmac.new(secret, learner_key(agent).encode(), hashlib.sha256).hexdigest()
