"""LRS statement reads from ClickHouse: what ``GET /xapi/statements`` answers.

Which statements match comes from the LRS index (migration ``0010_lrs_index``); their
JSON comes from ``statements_raw`` exactly as stored. Every value is a bound
``{name:Type}`` parameter; SQL text is assembled only from the fixed fragments below.
Pages are keyed by ``(stored_ms, statement_id)``, so a page boundary never skips or
repeats a statement however many share a millisecond.

Every query is scoped by ``school``: the credential's school, never a request field.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from schemas.clickhouse.engine import ClickHouse

# StatementRef chains followed when filtering (Communication §2.1.3.s3 "applies
# recursively"); chains longer than this are not followed.
REF_DEPTH = 3

_IDS = "(SELECT toUUID(arrayJoin({ids:Array(String)})))"
_SCHOOL = "school = {school:String}"
# Statements sit in statements_raw by (school, stored, id): bound the stored range so the
# primary key narrows the scan. Current servers compare in DateTime64 (comparing the
# DateTime64 key with a DateTime constant mis-prunes parts in chDB 26.9: rows vanish);
# 18.16 has no DateTime64, so whole seconds there.
_STORED_RANGE_MODERN = (
    "stored >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') AND stored <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC')"
)
_STORED_RANGE_OLD = (
    "stored >= toDateTime(intDiv({lo:Int64}, 1000)) AND stored < toDateTime(intDiv({hi:Int64}, 1000) + 1)"
)
_RAW_SQL = (
    "SELECT toString(statement_id), any(raw) FROM {db}.statements_raw WHERE " + _SCHOOL
    + " AND {range} AND statement_id IN " + _IDS + " GROUP BY statement_id"
)  # fmt: skip
_IDS_SQL = (
    "SELECT toString(statement_id), max(stored_ms) FROM {db}.lrs_statement_ids WHERE " + _SCHOOL
    + " AND statement_id IN " + _IDS + " GROUP BY statement_id"
)  # fmt: skip
_ONE_SQL = (
    "SELECT max(stored_ms), (SELECT count() FROM {db}.lrs_voids WHERE " + _SCHOOL
    + " AND voided_id = toUUID({id:String})) FROM {db}.lrs_statement_ids WHERE " + _SCHOOL
    + " AND statement_id = toUUID({id:String}) GROUP BY statement_id"
)  # fmt: skip
_ATTACHMENTS_SQL = (
    "SELECT sha2, any(content_type), any(content_b64) FROM {db}.lrs_attachments WHERE " + _SCHOOL
    + " AND sha2 IN (SELECT arrayJoin({shas:Array(String)})) GROUP BY sha2"
)  # fmt: skip
ATTACHMENT_COLUMNS = ("school", "sha2", "content_type", "content_b64", "stored_ms")
# Statements naming an activity, newest last, read to build its definition (GET /activities).
_ACTIVITY_STATEMENTS_SQL = (
    "SELECT toString(i.statement_id), max(i.stored_ms) AS ms FROM {db}.lrs_statement_ids AS i WHERE i.school = "
    "{school:String} AND i.statement_id IN (SELECT statement_id FROM {db}.lrs_activities WHERE " + _SCHOOL
    + " AND activity_id = {activity:String}) GROUP BY i.statement_id ORDER BY ms DESC LIMIT {n:UInt64}"
)  # fmt: skip
ACTIVITY_STATEMENTS_MAX = 200
_LANGUAGE_MAPS = ("name", "description")


def agent_key(ifi: str) -> str:
    """Index key of an agent: sha256 hex of its canonical IFI (as ``sinks.lrs_rows`` writes it)."""
    return hashlib.sha256(ifi.encode()).hexdigest()


def _match_sql(
    agent: str | None, verb: str | None, activity: str | None, registration: str | None,
    related_agents: bool, related_activities: bool,
) -> str | None:  # fmt: skip
    """Conditions on ``lrs_statements`` columns for the non-time filters; None if there are none."""
    conds = []
    if verb is not None:
        conds.append("verb_id = {verb:String}")
    if registration is not None:
        conds.append("registration = {registration:String}")
    if agent is not None:
        conds.append(
            "statement_id IN (SELECT statement_id FROM {db}.lrs_agents WHERE " + _SCHOOL
            + " AND agent = {agent:String}" + ("" if related_agents else " AND direct = 1") + ")"
        )  # fmt: skip
    if activity is not None:
        conds.append(
            "statement_id IN (SELECT statement_id FROM {db}.lrs_activities WHERE " + _SCHOOL
            + " AND activity_id = {activity:String}" + ("" if related_activities else " AND direct = 1") + ")"
        )  # fmt: skip
    return " AND ".join(conds) if conds else None


def _with_refs(match: str, depth: int) -> str:
    """``match`` or, up to ``depth`` StatementRef hops, targeting a statement that matches.

    The filters are judged on the targeted statement as a whole (one statement meets the
    query's non-time conditions); time conditions apply to the targeting statement only.
    Inner levels look only at statements some statement refers to, a small set.
    """
    cond = "(" + match + ")"
    referenced = "statement_id IN (SELECT ref_id FROM {db}.lrs_statements WHERE " + _SCHOOL + " AND has_ref = 1)"
    for _ in range(depth):
        cond = (
            "(" + match + " OR (has_ref = 1 AND ref_id IN (SELECT statement_id FROM {db}.lrs_statements WHERE "
            + _SCHOOL + " AND " + referenced + " AND " + cond + ")))"
        )  # fmt: skip
    return cond


class LrsStore:
    """Implements ``producers.gateway.store.StatementStore`` over a :class:`ClickHouse`."""

    def __init__(self, ch: ClickHouse, ref_depth: int = REF_DEPTH) -> None:
        self.ch = ch
        self.ref_depth = ref_depth
        modern = ch.server_version() >= (21, 1)
        self._raw_sql = _RAW_SQL.replace("{range}", _STORED_RANGE_MODERN if modern else _STORED_RANGE_OLD)

    def _raw(self, school: str, found: dict[str, int]) -> dict[str, bytes]:
        """Stored JSON of ``{id: stored_ms}``."""
        if not found:
            return {}
        params = {"school": school, "lo": min(found.values()), "hi": max(found.values()), "ids": list(found)}
        return {sid: raw.encode() for sid, raw in self.ch.query(self._raw_sql, params)}

    def lookup(self, school: str, ids: Sequence[str]) -> dict[str, bytes]:
        if not ids:
            return {}
        found = {sid: int(ms) for sid, ms in self.ch.query(_IDS_SQL, {"school": school, "ids": list(ids)})}
        return self._raw(school, found)

    def get(self, school: str, statement_id: str, voided: bool) -> tuple[bytes, int] | None:
        rows = self.ch.query(_ONE_SQL, {"school": school, "id": statement_id})
        if not rows:
            return None
        stored_ms, voids = int(rows[0][0]), int(rows[0][1])
        if (voids > 0) != voided:
            return None
        raw = self._raw(school, {statement_id: stored_ms}).get(statement_id)
        return None if raw is None else (raw, stored_ms)

    def query(
        self,
        school: str,
        *,
        agent: str | None,
        verb: str | None,
        activity: str | None,
        registration: str | None,
        related_activities: bool,
        related_agents: bool,
        since_ms: int | None,
        until_ms: int | None,
        ascending: bool,
        after: tuple[int, str] | None,
        limit: int,
    ) -> tuple[list[tuple[int, str, bytes]], bool]:
        params: dict[str, Any] = {"school": school, "n": limit + 1}
        where = [_SCHOOL, "statement_id NOT IN (SELECT voided_id FROM {db}.lrs_voids WHERE " + _SCHOOL + ")"]
        if since_ms is not None:
            where.append("stored_ms > {since:Int64}")
            params["since"] = since_ms
        if until_ms is not None:
            where.append("stored_ms <= {until:Int64}")
            params["until"] = until_ms
        if after is not None:
            where.append("(stored_ms, statement_id) " + (">" if ascending else "<")
                         + " ({after_ms:Int64}, toUUID({after_id:String}))")  # fmt: skip
            params["after_ms"], params["after_id"] = after
        match = _match_sql(agent, verb, activity, registration, related_agents, related_activities)
        if match is not None:
            where.append(_with_refs(match, self.ref_depth))
            params.update(
                {
                    k: v
                    for k, v in (("verb", verb), ("registration", registration), ("activity", activity))
                    if v is not None
                }
            )
            if agent is not None:
                params["agent"] = agent_key(agent)
        order = "ASC" if ascending else "DESC"
        sql = (
            "SELECT stored_ms, toString(statement_id) FROM {db}.lrs_statements WHERE " + " AND ".join(where)
            + f" ORDER BY stored_ms {order}, statement_id {order} LIMIT 1 BY statement_id LIMIT {{n:UInt64}}"
        )  # fmt: skip
        page = [(int(ms), sid) for ms, sid in self.ch.query(sql, params)]
        more = len(page) > limit
        page = page[:limit]
        raws = self._raw(school, {sid: ms for ms, sid in page})
        # A statement indexed but not (yet) in statements_raw is left out of this page.
        return [(ms, sid, raws[sid]) for ms, sid in page if sid in raws], more

    def activity(self, school: str, activity_id: str) -> dict[str, Any] | None:
        """The Activity Object as this school's statements define it, or None if none names it.

        Definitions from every statement naming the activity (object, context activities,
        SubStatements; the newest ``ACTIVITY_STATEMENTS_MAX``) are merged, newest winning,
        and language maps merged entry by entry, so two statements describing it in two
        languages give both (1.0.3 Communication §2.5; the ADL suite's XAPI-00254).
        """
        rows = self.ch.query(
            _ACTIVITY_STATEMENTS_SQL, {"school": school, "activity": activity_id, "n": ACTIVITY_STATEMENTS_MAX}
        )
        if not rows:
            return None
        raws = self._raw(school, {sid: int(ms) for sid, ms in rows})
        definition: dict[str, Any] = {}
        ordered = [raws[sid] for sid, _ in reversed(rows) if sid in raws]  # oldest first
        for raw in ordered:
            for found in _activities_named(orjson.loads(raw), activity_id):
                _merge_definition(definition, found.get("definition"))
        out: dict[str, Any] = {"objectType": "Activity", "id": activity_id}
        if definition:
            out["definition"] = definition
        return out

    def attachments(self, school: str, sha2s: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        if not sha2s:
            return {}
        rows = self.ch.query(_ATTACHMENTS_SQL, {"school": school, "shas": list(sha2s)})
        return {sha: (ctype, base64.b64decode(b64)) for sha, ctype, b64 in rows}

    def put_attachments(self, school: str, items: Sequence[tuple[str, str, bytes]], stored_ms: int) -> None:
        if not items:
            return
        data = [
            [school] * len(items),
            [sha for sha, _, _ in items],
            [ctype for _, ctype, _ in items],
            [base64.b64encode(content).decode() for _, _, content in items],
            [stored_ms] * len(items),
        ]
        self.ch.insert(f"{self.ch.database}.lrs_attachments", ATTACHMENT_COLUMNS, data)


def _activities_named(statement: dict[str, Any], activity_id: str) -> list[dict[str, Any]]:
    """Every Activity object in ``statement`` (SubStatement included) whose id is ``activity_id``."""
    found: list[dict[str, Any]] = []

    def visit(st: dict[str, Any]) -> None:
        obj = st.get("object")
        if isinstance(obj, dict):
            if obj.get("objectType", "Activity") == "Activity" and obj.get("id") == activity_id:
                found.append(obj)
            elif obj.get("objectType") == "SubStatement":
                visit(obj)
        context = st.get("context")
        cas = context.get("contextActivities") if isinstance(context, dict) else None
        if isinstance(cas, dict):
            for acts in cas.values():
                for act in acts if isinstance(acts, list) else [acts]:
                    if isinstance(act, dict) and act.get("id") == activity_id:
                        found.append(act)

    visit(statement)
    return found


def _merge_definition(into: dict[str, Any], definition: object) -> None:
    """Merge a newer definition: language maps entry by entry, everything else replaced."""
    if not isinstance(definition, dict):
        return
    for key, value in definition.items():
        if key in _LANGUAGE_MAPS and isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key] = {**into[key], **value}
        elif key == "extensions" and isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key] = {**into[key], **value}
        else:
            into[key] = value
