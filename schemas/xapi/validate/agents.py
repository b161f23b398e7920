"""Agents, Groups and their inverse functional identifiers (xAPI 1.0.3 Data §2.4.2)."""

from __future__ import annotations

from typing import Any, NoReturn

from ..formats import is_iri, is_mailto, is_sha1_hex
from .values import IRI_OK
from .violations import (
    DATA,
    Violation,
    bad_type,
    fail,
    format_error,
    iri_error,
    missing,
    nonempty_string_error,
    object_type_error,
    show,
    unknown_properties,
)

_AGENT_KEYS = frozenset({"objectType", "name", "mbox", "mbox_sha1sum", "openid", "account"})
_GROUP_KEYS = _AGENT_KEYS | {"member"}
IFIS = ("mbox", "mbox_sha1sum", "openid", "account")
_ACCOUNT_KEYS = frozenset({"homePage", "name"})


def check_account(acc: object) -> None:
    if acc.__class__ is not dict:
        bad_type("actor.account.type", DATA + "2.4.2.4", "account", "an object", acc)
    if not _ACCOUNT_KEYS.issuperset(acc):
        unknown_properties(acc, _ACCOUNT_KEYS, "an Account")
    home = acc.get("homePage")
    if home.__class__ is not str or (home not in IRI_OK and not is_iri(home)):
        if "homePage" not in acc:
            missing("actor.account.homePage.required", DATA + "2.4.2.4", "account.homePage", ".homePage")
        iri_error(home, "actor.account.homePage.irl", DATA + "2.4.2.4", "account.homePage", ".homePage", "IRL")
    name = acc.get("name")
    if name.__class__ is not str or not name:
        nonempty_string_error(
            acc,
            "name",
            "actor.account.name",
            DATA + "2.4.2.4",
            "account.name",
            "account.name is the unique id or name used to log in and cannot be empty",
        )


def check_ifis(obj: dict[str, Any]) -> int:
    """Validate the inverse functional identifiers present; return how many there are."""
    n = 0
    if "mbox" in obj:
        n += 1
        mbox = obj["mbox"]
        if not is_mailto(mbox):
            format_error(
                "actor.mbox.mailto",
                DATA + "2.4.2.3",
                "mbox",
                "a mailto IRI string",
                mbox,
                f'mbox MUST be a mailto IRI ("mailto:email address"), found {show(mbox)}',
                ".mbox",
            )
    if "mbox_sha1sum" in obj:
        n += 1
        sha = obj["mbox_sha1sum"]
        if not is_sha1_hex(sha):
            format_error(
                "actor.mbox_sha1sum.hex",
                DATA + "2.4.2.3",
                "mbox_sha1sum",
                "a string",
                sha,
                f"mbox_sha1sum MUST be the hex-encoded SHA1 of a mailto IRI (40 hex digits), found {show(sha)}",
                ".mbox_sha1sum",
            )
    if "openid" in obj:
        n += 1
        openid = obj["openid"]
        if openid.__class__ is not str or (openid not in IRI_OK and not is_iri(openid)):
            iri_error(openid, "actor.openid.uri", DATA + "2.4.2.3", "openid", ".openid", "URI")
    if "account" in obj:
        n += 1
        try:
            check_account(obj["account"])
        except Violation as e:
            e.keys.append(".account")
            raise
    return n


def _name_error(obj: dict[str, Any], cite: str, what: str) -> NoReturn:
    bad_type("actor.name.type", cite, f"{what}.name", "a string", obj["name"], ".name")


def _ifi_names(obj: dict[str, Any]) -> str:
    return ", ".join(k for k in IFIS if k in obj)


def check_agent(agent: dict[str, Any], what: str) -> None:
    """An Agent whose objectType (absent or "Agent") was already checked."""
    # Agents and Groups share these three steps; written out, as this is the hot path.
    if not _AGENT_KEYS.issuperset(agent):
        unknown_properties(agent, _AGENT_KEYS, f"an Agent ({what})")
    if "name" in agent and agent["name"].__class__ is not str:
        _name_error(agent, DATA + "2.4.2.1", what)
    n = check_ifis(agent)
    if n != 1:
        found = _ifi_names(agent)
        fail(
            "actor.ifi.exactly-one",
            DATA + "2.4.2.1",
            f"an Agent must have exactly one inverse functional identifier, found {n}" + (f" ({found})" if n else ""),
        )


def check_group(group: dict[str, Any], what: str) -> list[Any] | None:
    """A Group whose objectType "Group" was already checked; returns its members."""
    if not _GROUP_KEYS.issuperset(group):
        unknown_properties(group, _GROUP_KEYS, f"a Group ({what})")
    if "name" in group and group["name"].__class__ is not str:
        _name_error(group, DATA + "2.4.2.2", what)
    n = check_ifis(group)
    if n > 1:
        found = _ifi_names(group)
        fail(
            "actor.ifi.exactly-one",
            DATA + "2.4.2.2",
            f"an Identified Group MUST include exactly one inverse functional identifier, found {n} ({found})",
        )
    members = group.get("member")
    if members.__class__ is not list:
        if "member" in group:
            bad_type("group.member.type", DATA + "2.4.2.2", f"{what}.member", "an array of Agents", members, ".member")
        if n == 0:
            fail(
                "group.member.required",
                DATA + "2.4.2.2",
                "an Anonymous Group (a Group without an inverse functional identifier) MUST include a "
                '"member" property listing constituent Agents',
            )
        return None
    if n == 0 and not members:
        fail(
            "group.member.empty",
            DATA + "2.4.2.2",
            'an Anonymous Group MUST list its constituent Agents in "member"; the array is empty',
            ".member",
        )
    for i, member in enumerate(members):
        try:
            if member.__class__ is not dict:
                bad_type("group.member.type", DATA + "2.4.2.2", "a Group member", "an Agent object", member)
            ot = member.get("objectType", "Agent")
            if ot != "Agent":
                if ot == "Group":
                    fail(
                        "group.member.agent",
                        DATA + "2.4.2.2",
                        'a Group MUST NOT contain Group Objects in its "member" property',
                        ".objectType",
                    )
                object_type_error(ot, ("Agent",), "a Group member")
            check_agent(member, "a Group member")
        except Violation as e:
            e.keys.append(f".member[{i}]")
            raise
    return members


def check_actor(actor: object, what: str) -> list[Any] | None:
    """An Agent or a Group (xAPI 1.0.3 Data §2.4.2). Returns a Group's members, if any."""
    if actor.__class__ is not dict:
        bad_type("actor.type", DATA + "2.4.2", what, "an Agent or Group object", actor)
    ot = actor.get("objectType", "Agent")
    if ot == "Agent":
        check_agent(actor, what)
        return None
    if ot == "Group":
        return check_group(actor, what)
    object_type_error(ot, ("Agent", "Group"), what)
    # Passed over (collecting): an actor still needs its identity, as an Agent.
    check_agent(actor, what)
    return None
