"""GET /statements parameters (xAPI 1.0.3 Communication §2.1.3) and the ``more`` cursor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from schemas.errors import InvalidStatement
from schemas.identity import canonical_ifi
from schemas.xapi.formats import is_iri, is_mailto, is_sha1_hex, is_uuid
from schemas.xapi.timefmt import parse_ms

from .cursors import CursorSigner
from .protocol import bad_request

SINGLE_PARAMS = frozenset({"statementId", "voidedStatementId"})
# With statementId/voidedStatementId only these may appear (§2.1.3.s2.b2).
SINGLE_EXTRA = frozenset({"attachments", "format"})
QUERY_PARAMS = frozenset(
    {
        "agent", "verb", "activity", "registration", "related_activities", "related_agents",
        "since", "until", "limit", "format", "attachments", "ascending",
    }
)  # fmt: skip
FORMATS = ("exact", "ids", "canonical")
_CURSOR_VERSION = 1


@dataclass(frozen=True)
class SingleQuery:
    """GET by ``statementId`` (``voided`` False) or ``voidedStatementId`` (``voided`` True)."""

    statement_id: str
    voided: bool
    format: str = "exact"
    attachments: bool = False


@dataclass(frozen=True)
class StatementQuery:
    """A StatementResult query. ``agent`` is the canonical IFI string (``schemas.identity``).

    ``after`` is the ``(stored_ms, statement_id)`` of the last statement already returned;
    the next page starts strictly after it in the requested order.
    """

    agent: str | None = None
    verb: str | None = None
    activity: str | None = None
    registration: str | None = None
    related_activities: bool = False
    related_agents: bool = False
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = 0
    ascending: bool = False
    format: str = "exact"
    attachments: bool = False
    after: tuple[int, str] | None = None

    def filters(self) -> dict[str, Any]:
        """The keyword arguments of the store's ``query`` (everything but presentation)."""
        d = asdict(self)
        for k in ("format", "attachments", "limit"):
            d.pop(k)
        return d

    def next_cursor(self, last: tuple[int, str], signer: CursorSigner) -> str:
        """Signed ``more`` token: this query continuing after ``last`` (stateless, never expires)."""
        d = asdict(replace(self, after=last))
        d["v"] = _CURSOR_VERSION
        return signer.sign(orjson.dumps(d))


def _bool(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    # Boolean parameters are written as in JSON (§2.1.3 note).
    if value == "true":
        return True
    if value == "false":
        return False
    raise bad_request(f"query.{name}", f"{name} must be true or false, found {value!r}", f"$query.{name}")


def _format(params: Mapping[str, str]) -> str:
    fmt = params.get("format", "exact")
    if fmt not in FORMATS:
        raise bad_request(
            "query.format", f"format must be one of ids, exact, canonical; found {fmt!r}", "$query.format"
        )
    return fmt


def _timestamp(params: Mapping[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        return parse_ms(value, f"$query.{name}")
    except InvalidStatement as err:
        raise bad_request(f"query.{name}", f"{name} must be an ISO 8601 timestamp, found {value!r}", err.path) from err


def agent_ifi(raw: str) -> str:
    """The canonical IFI of the ``agent`` parameter: an Agent or identified Group as JSON."""
    path = "$query.agent"
    try:
        agent = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise bad_request("query.agent.json", f"agent is not JSON: {err}", path) from err
    if not isinstance(agent, dict):
        raise bad_request("query.agent.type", "agent must be a JSON object (an Agent or identified Group)", path)
    if agent.get("objectType", "Agent") not in ("Agent", "Group"):
        raise bad_request("query.agent.objectType", "agent objectType must be Agent or Group", path + ".objectType")
    ifis = [k for k in ("mbox", "mbox_sha1sum", "openid", "account") if k in agent]
    if len(ifis) != 1:
        raise bad_request(
            "query.agent.ifi",
            f"agent must have exactly one inverse functional identifier, found {len(ifis)}",
            path,
        )
    (kind,) = ifis
    value = agent[kind]
    ok = {
        "mbox": is_mailto(value),
        "mbox_sha1sum": is_sha1_hex(value),
        "openid": is_iri(value),
        "account": isinstance(value, dict)
        and isinstance(value.get("name"), str)
        and is_iri(value.get("homePage"))
        and set(value) <= {"name", "homePage"},
    }[kind]
    if not ok:
        raise bad_request(f"query.agent.{kind}", f"agent {kind} is malformed: {value!r}", f"{path}.{kind}")
    return canonical_ifi(agent)


def parse_single(params: Mapping[str, str]) -> SingleQuery | None:
    """A :class:`SingleQuery` if the request names one statement, else None."""
    present = SINGLE_PARAMS & params.keys()
    if not present:
        return None
    if len(present) == 2:
        raise bad_request(
            "query.single.both", "statementId and voidedStatementId cannot be used together (§2.1.3.s2.b1)"
        )
    extra = set(params) - present - SINGLE_EXTRA
    if extra:
        raise bad_request(
            "query.single.extra",
            f"with statementId/voidedStatementId only attachments and format are allowed, found {sorted(extra)} "
            "(§2.1.3.s2.b2)",
        )
    (name,) = present
    sid = params[name]
    if not is_uuid(sid):
        raise bad_request(f"query.{name}", f"{name} must be a UUID, found {sid!r}", f"$query.{name}")
    return SingleQuery(sid.lower(), name == "voidedStatementId", _format(params), _bool(params, "attachments"))


def parse_query(params: Mapping[str, str], max_limit: int) -> StatementQuery:
    """Validate the filter parameters; unknown parameter names are refused (they are case-sensitive)."""
    unknown = set(params) - QUERY_PARAMS
    if unknown:
        raise bad_request("query.unknown", f"unknown query parameters {sorted(unknown)}", "$query")
    verb, activity, registration = params.get("verb"), params.get("activity"), params.get("registration")
    if verb is not None and not is_iri(verb):
        raise bad_request("query.verb", f"verb must be an IRI, found {verb!r}", "$query.verb")
    if activity is not None and not is_iri(activity):
        raise bad_request("query.activity", f"activity must be an IRI, found {activity!r}", "$query.activity")
    if registration is not None and not is_uuid(registration):
        raise bad_request(
            "query.registration", f"registration must be a UUID, found {registration!r}", "$query.registration"
        )
    raw_limit = params.get("limit", "0")
    if not raw_limit.isdigit():
        raise bad_request("query.limit", f"limit must be a nonnegative integer, found {raw_limit!r}", "$query.limit")
    limit = int(raw_limit)
    return StatementQuery(
        agent=agent_ifi(params["agent"]) if "agent" in params else None,
        verb=verb,
        activity=activity,
        registration=registration.lower() if registration else None,
        related_activities=_bool(params, "related_activities"),
        related_agents=_bool(params, "related_agents"),
        since_ms=_timestamp(params, "since"),
        until_ms=_timestamp(params, "until"),
        limit=max_limit if limit == 0 else min(limit, max_limit),
        ascending=_bool(params, "ascending"),
        format=_format(params),
        attachments=_bool(params, "attachments"),
    )


def parse_cursor(token: str, signer: CursorSigner, max_limit: int) -> StatementQuery:
    """Verify and decode a ``more`` token made by :meth:`StatementQuery.next_cursor`.

    The page cap applies to every page: a token issued under a larger cap (before a
    configuration change) continues with pages of at most ``max_limit``.
    """
    payload = signer.verify(token)
    try:
        doc = orjson.loads(payload)
        if doc.pop("v") != _CURSOR_VERSION:
            raise ValueError("cursor version")
        after = doc.pop("after")
        q = StatementQuery(**doc, after=(int(after[0]), str(after[1])))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, orjson.JSONDecodeError) as err:
        raise bad_request("query.more", "the more token is not one this LRS issued", "$query.more") from err
    if q.format not in FORMATS or not isinstance(q.limit, int) or q.limit <= 0 or not is_uuid(q.after[1]):
        raise bad_request("query.more", "the more token is not one this LRS issued", "$query.more")
    return replace(q, limit=min(q.limit, max_limit))
