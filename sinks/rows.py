"""Pure transforms from topic records to ClickHouse rows: no I/O, no clock.

Each builder takes the record's bytes and returns ``{table: [row tuple in that table's
column order]}`` (orders in :mod:`schemas.clickhouse.tables`). The same bytes always give
the same rows, so a replayed record rewrites identical keys (tested in
``tests/unit/sinks/test_sinks_rows.py``). Anything that cannot become a valid row raises
:class:`~schemas.errors.InvalidStatement`; the sink dead-letters that record.

Context a builder needs (the pseudonym key, the time range the server can store) is
bound with :func:`functools.partial`; see :func:`builders`.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Any

import orjson

from schemas.clickhouse import tables as T
from schemas.envelope import StatementEnvelope
from schemas.errors import InvalidStatement
from schemas.identity import display_name, learner_key
from schemas.records import AlertRecord, CohortHealthRecord, EngagementRecord, MasteryRecord
from schemas.xapi.duration import duration_ms
from schemas.xapi.timefmt import parse_ms

# The LRS read index (sinks/lrs_rows.py, owned by the gateway engineer): ``lrs_rows(envelope)``
# returns ``{table: rows}`` for the tables in ``LRS_COLUMNS``; the statements sink writes
# them in the same batch as the statement rows, before its offsets are committed.
from .lrs_rows import LRS_COLUMNS, statement_index_rows
from .quarantine_rows import quarantine_rows

Rows = dict[str, list[tuple[Any, ...]]]
RowBuilder = Callable[[bytes | None], Rows]

VOIDED_VERB = "http://adlnet.gov/expapi/verbs/voided"
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class TimeRange:
    """Epoch-ms range a server can store in its time columns (inclusive bounds).

    Current ClickHouse: DateTime64(3) covers 1900-01-01 .. 2299-12-31. 18.16 maps every
    time column to DateTime (1970-01-01 .. 2106-02-07). A statement outside the range is
    dead-lettered rather than silently clamped or wrapped.
    """

    min_ms: int
    max_ms: int

    def check(self, ms: int, rule: str, path: str) -> int:
        if not self.min_ms <= ms <= self.max_ms:
            raise InvalidStatement(
                rule, f"time {ms} ms since epoch is outside what this ClickHouse stores "
                f"[{self.min_ms}, {self.max_ms}]", path,
            )  # fmt: skip
        return ms


MODERN_RANGE = TimeRange(-2_208_988_800_000, 10_413_791_999_999)
OLD_SERVER_RANGE = TimeRange(0, 4_294_967_295_000)
# Whole-second DateTime columns (hour and period starts) have this range on every version.
_DATETIME = OLD_SERVER_RANGE


_MS = timedelta(milliseconds=1)


def _lrs_form(value: Any) -> datetime | None:
    """The naive UTC datetime of a time in the form LRSs store (``2026-01-05T10:00:00.123Z``), else None.

    Only a string of exactly that shape is read here (and only if Python's ISO parser
    accepts it: a leap second goes :func:`parse_ms`'s way; the separators are checked, or an
    ISO week date ``2026-W02-1T…``, which parse_ms refuses, would pass). Its milliseconds are whole, so
    this is the very datetime :func:`ms_to_datetime` makes of its epoch milliseconds.
    """
    if (
        type(value) is str
        and len(value) == 24
        and value[23] == "Z"
        and value[19] == "."
        and value[10] == "T"
        and value[4] == value[7] == "-"
        and value[13] == value[16] == ":"
        and value.isascii()
        and value[20:23].isdigit()
    ):
        try:
            naive = datetime.fromisoformat(value[:23])
        except ValueError:
            return None
        if naive.tzinfo is None:  # an offset inside the first 23 characters: the full way
            return naive
    return None


@lru_cache(maxsize=65_536)
def _pseudonym_of(secret: bytes, ifi: str) -> str:
    # The same few agents (the learner, the school's authority, a teacher) recur in every
    # statement of an envelope: HMAC once per agent, not once per mention.
    return hmac.new(secret, ifi.encode(), hashlib.sha256).hexdigest()


def ms_to_datetime(ms: int) -> datetime:
    """Naive UTC datetime (both ClickHouse drivers read it in the column's zone, UTC)."""
    return _EPOCH + timedelta(milliseconds=ms)


def _bool(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidStatement("statement.canonical", "must be a boolean", path)
    return int(value)


def _number(value: Any, path: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidStatement("statement.canonical", "must be a number", path)
    return float(value)


_UUID = uuid.UUID
_new_object = object.__new__
_set_slot = object.__setattr__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown


def _uuid(value: Any, path: str) -> uuid.UUID:
    # The usual form (36 characters, four hyphens): what uuid.UUID(value) does for it, without
    # its other forms' checks. ``int`` refuses what the full way would strip ("urn:uuid:",
    # braces), so those, and every error, go the full way.
    if type(value) is str and len(value) == 36:
        digits = value.replace("-", "")
        if len(digits) == 32:
            try:
                number = int(digits, 16)
            except ValueError:
                pass
            else:
                made = _new_object(_UUID)
                _set_slot(made, "int", number)
                _set_slot(made, "is_safe", _UNKNOWN_SAFETY)
                return made
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError) as err:
        raise InvalidStatement("statement.canonical", f"not a UUID: {value!r}", path) from err


def _agent_pseudonyms(secret: bytes, agent: Any, out: set[str]) -> str:
    """Add the pseudonyms of an Agent/Group (and its members) to ``out``; return its own ("" if anonymous)."""
    if not isinstance(agent, dict):
        return ""
    try:
        own = _pseudonym_of(secret, learner_key(agent))  # = schemas.identity.pseudonym
    except InvalidStatement:
        own = ""  # an anonymous Group: only its members identify anyone
    if own:
        out.add(own)
    for member in agent.get("member") or ():
        _agent_pseudonyms(secret, member, out)
    return own


def _context_pseudonyms(secret: bytes, ctx: Any, out: set[str]) -> None:
    if not isinstance(ctx, dict):
        return
    _agent_pseudonyms(secret, ctx.get("instructor"), out)
    _agent_pseudonyms(secret, ctx.get("team"), out)
    for item in ctx.get("contextAgents") or ():  # xAPI 2.0
        if isinstance(item, dict):
            _agent_pseudonyms(secret, item.get("agent"), out)
    for item in ctx.get("contextGroups") or ():
        if isinstance(item, dict):
            _agent_pseudonyms(secret, item.get("group"), out)


def statement_rows(secret: bytes, limits: TimeRange, raw: bytes | None) -> Rows:
    """Rows of ``statements``, ``statements_raw``, ``statement_voids`` (and the LRS index).

    ``secret`` is the pseudonym key: the object of a statement about a person (an Agent or
    Group) is stored as that person's pseudonym, and ``statements_raw.learners`` lists the
    pseudonym of everyone the statement names, so that erasing a learner finds them.
    """
    env = StatementEnvelope.decode(raw)
    analytic, stored_raw, voids = [], [], []
    # (timestamp ms, id, statement): the envelope learner's name is the newest statement's.
    versions: list[tuple[int, uuid.UUID, dict[str, Any]]] = []
    parsed: list[tuple[dict[str, Any], uuid.UUID, int, str, str]] = []
    # A request's statements share one ``stored`` time: converted once per envelope.
    times: dict[Any, tuple[int, datetime]] = {}
    for i, entry in enumerate(env.entries):
        s = entry.statement
        path = f"$.statements[{i}].statement"
        try:
            sid = _uuid(s["id"], path + ".id")
            ts_ms, ts_dt = _checked_time(limits, s["timestamp"], path, ".timestamp", times)
            stored_ms, stored_dt = _checked_time(limits, s["stored"], path, ".stored", times)
            verb = s["verb"]["id"]
        except (KeyError, TypeError) as err:
            raise InvalidStatement("statement.canonical", f"not a canonical statement: {err!r}", path) from err
        if not isinstance(verb, str):
            raise InvalidStatement("statement.canonical", "verb.id must be a string", path + ".verb.id")
        obj = s.get("object") if isinstance(s.get("object"), dict) else {}
        ctx = s.get("context") if isinstance(s.get("context"), dict) else {}
        result = s.get("result") if isinstance(s.get("result"), dict) else {}
        score = result.get("score") if isinstance(result.get("score"), dict) else {}

        # The actor's pseudonym is the envelope's learner (the producer computed it); a
        # Group actor's members are named too.
        mentioned: set[str] = {env.learner}
        for member in (s.get("actor") or {}).get("member") or ():
            _agent_pseudonyms(secret, member, mentioned)
        _agent_pseudonyms(secret, s.get("authority"), mentioned)
        _context_pseudonyms(secret, ctx, mentioned)
        object_type = obj.get("objectType", "Activity")
        if object_type in ("Agent", "Group"):
            # A person as the object: never their mail address, their pseudonym.
            object_id = _agent_pseudonyms(secret, obj, mentioned)
        elif object_type == "SubStatement":
            object_id = ""
            _agent_pseudonyms(secret, obj.get("actor"), mentioned)
            _context_pseudonyms(secret, obj.get("context"), mentioned)
            sub = obj.get("object")
            if isinstance(sub, dict) and sub.get("objectType") in ("Agent", "Group"):
                _agent_pseudonyms(secret, sub, mentioned)
        else:
            object_id = str(obj.get("id", ""))
        if object_type == "StatementRef" and verb == VOIDED_VERB:
            voids.append((env.school, _uuid(object_id, path + ".object.id"), sid, stored_dt))

        registration = ctx.get("registration")
        duration = result.get("duration")
        analytic.append(
            (
                sid,
                env.school,
                entry.course,
                entry.cohort,
                env.learner,
                verb,
                object_id,
                str(object_type),
                _uuid(registration, path + ".context.registration") if registration else None,
                _bool(result.get("success"), path + ".result.success"),
                _bool(result.get("completion"), path + ".result.completion"),
                _number(score.get("scaled"), path + ".result.score.scaled"),
                _number(score.get("raw"), path + ".result.score.raw"),
                duration_ms(duration, path + ".result.duration") if duration else None,
                ts_dt,
                stored_dt,
                0,  # voided: set by re-inserting the row (sinks/voids.py)
                list(entry.violations),
            )
        )
        stored_raw.append(
            (
                env.school,
                sid,
                stored_dt,
                ts_dt,
                env.learner,
                sorted(mentioned),
                orjson.dumps(s).decode(),
            )
        )
        parsed.append((s, sid, stored_ms, verb, path))
        versions.append((ts_ms, sid, s))
    # The LRS index once every statement passed the checks above (as lrs_rows(env) would
    # run after them), reusing what they parsed.
    index: Rows = {t: [] for t in LRS_COLUMNS}
    for s, sid, stored_ms, verb, path in parsed:
        statement_index_rows(env.school, s, sid, stored_ms, verb, path, index)
    names = _newest_name(env.school, env.learner, versions)
    return {T.STATEMENTS: analytic, T.STATEMENTS_RAW: stored_raw, T.STATEMENT_VOIDS: voids, T.LEARNER_NAMES: names,
            **index}  # fmt: skip


def _newest_name(school: str, learner: str, statements: list[tuple[int, uuid.UUID, dict[str, Any]]]) -> list[tuple]:
    """The ``learner_names`` row of the envelope: its newest statement (highest :func:`name_version`)
    whose actor has a readable name.

    Cheap for the usual envelope: the newest timestamp is found with integers only, and one
    name and one version are computed; all are ordered only when that actor has no name.
    """
    if not statements:
        return []
    newest = max(ts for ts, _sid, _s in statements)
    ts, sid, s = max((v for v in statements if v[0] == newest), key=lambda v: name_version(v[0], v[1]))
    if name := display_name(s.get("actor")):
        return [(school, learner, name, name_version(ts, sid), sid)]
    for ts, sid, s in sorted(statements, key=lambda v: name_version(v[0], v[1]), reverse=True):
        if name := display_name(s.get("actor")):
            return [(school, learner, name, name_version(ts, sid), sid)]
    return []


_NAME_ID_BITS = 20


def name_version(timestamp_ms: int, statement_id: uuid.UUID) -> int:
    """``learner_names.version``: newer statement wins; in one millisecond, 20 bits of its id decide.

    A UInt64 of ms since 1900-01-01 (the oldest time stored, :data:`MODERN_RANGE`): 44 bits
    reach past 2299, the newest.
    """
    ms = min(max(timestamp_ms - MODERN_RANGE.min_ms, 0), (1 << (64 - _NAME_ID_BITS)) - 1)
    return (ms << _NAME_ID_BITS) | (statement_id.int >> (128 - _NAME_ID_BITS))


def _checked_time(
    limits: TimeRange, value: Any, path: str, key: str, memo: dict[Any, tuple[int, datetime]]
) -> tuple[int, datetime]:
    """``(epoch ms, naive UTC datetime)`` of a statement time, range-checked; memoized per envelope."""
    if type(value) is str:
        found = memo.get(value)
        if found is not None:
            return found
    naive = _lrs_form(value)
    if naive is not None:
        out = (limits.check((naive - _EPOCH) // _MS, "statement.time_range", path), naive)
    else:
        ms = limits.check(parse_ms(value, path + key), "statement.time_range", path)
        out = (ms, ms_to_datetime(ms))
    if type(value) is str:
        memo[value] = out
    return out


def _time(limits: TimeRange, ms: int, rule: str, path: str) -> datetime:
    return ms_to_datetime(limits.check(ms, rule, path))


def _period(limits: TimeRange, ms: int, rule: str, path: str) -> datetime:
    """A whole-second DateTime column: both ranges apply."""
    return ms_to_datetime(_DATETIME.check(limits.check(ms, rule, path), rule, path))


_GRAINS = frozenset({"hour", "day"})
_ALERT_STATES = frozenset({"fired", "resolved"})


def _unsigned(value: int, rule: str, path: str) -> int:
    if value < 0:
        raise InvalidStatement(rule, "must not be negative", path)
    return value


def engagement_rows(limits: TimeRange, raw: bytes | None) -> Rows:
    r = EngagementRecord.decode(raw)
    if r.grain not in _GRAINS:
        raise InvalidStatement("engagement.grain", f"grain must be one of {sorted(_GRAINS)}", "$.grain")
    for name in ("statements", "sessions", "active_ms", "version"):
        _unsigned(getattr(r, name), "engagement.negative", f"$.{name}")
    row = (
        r.school, r.course, r.cohort, r.learner, r.grain,
        _period(limits, r.period_start_ms, "engagement.time_range", "$.period_start_ms"),
        r.statements, r.sessions, r.active_ms,
        _time(limits, r.last_event_ms, "engagement.time_range", "$.last_event_ms"),
        r.version,
    )  # fmt: skip
    return {T.ENGAGEMENT: [row]}


def mastery_rows(limits: TimeRange, raw: bytes | None) -> Rows:
    r = MasteryRecord.decode(raw)
    if not 0.0 <= r.p_mastery <= 1.0:
        raise InvalidStatement("mastery.probability", "p_mastery must be within [0, 1]", "$.p_mastery")
    for name in ("observations", "correct", "version"):
        _unsigned(getattr(r, name), "mastery.negative", f"$.{name}")
    row = (
        r.school, r.course, r.learner, r.skill, float(r.p_mastery), r.observations, r.correct,
        _time(limits, r.event_ms, "mastery.time_range", "$.event_ms"), r.version,
    )  # fmt: skip
    # The same estimate, kept over time (migration 0019): keyed by its event time.
    return {T.MASTERY: [row], T.MASTERY_HISTORY: [row]}


def cohort_health_rows(limits: TimeRange, raw: bytes | None) -> Rows:
    r = CohortHealthRecord.decode(raw)
    for name in ("learners", "disengaged", "median_active_ms_7d", "version"):
        _unsigned(getattr(r, name), "cohort_health.negative", f"$.{name}")
    row = (
        r.school, r.course, r.cohort, _time(limits, r.at_ms, "cohort_health.time_range", "$.at_ms"),
        r.learners, r.disengaged, float(r.share), r.median_active_ms_7d, r.version,
    )  # fmt: skip
    return {T.COHORT_HEALTH: [row]}


def alert_rows(limits: TimeRange, raw: bytes | None) -> Rows:
    r = AlertRecord.decode(raw)
    if r.state not in _ALERT_STATES:
        raise InvalidStatement("alert.state", f"state must be one of {sorted(_ALERT_STATES)}", "$.state")
    for name in ("learners", "disengaged", "version"):
        _unsigned(getattr(r, name), "alert.negative", f"$.{name}")
    row = (
        r.alert_id, r.school, r.course, r.cohort, r.state,
        _time(limits, r.at_ms, "alert.time_range", "$.at_ms"),
        _time(limits, r.fired_at_ms, "alert.time_range", "$.fired_at_ms"),
        r.learners, r.disengaged, float(r.share), float(r.threshold), list(r.disengaged_learners), r.version,
    )  # fmt: skip
    return {T.ALERTS: [row]}


COLUMNS: dict[str, tuple[str, ...]] = {
    T.STATEMENTS: T.STATEMENT_COLUMNS,
    T.STATEMENTS_RAW: T.RAW_COLUMNS,
    T.STATEMENT_VOIDS: T.VOID_COLUMNS,
    T.ENGAGEMENT: T.ENGAGEMENT_COLUMNS,
    T.MASTERY: T.MASTERY_COLUMNS,
    T.MASTERY_HISTORY: T.MASTERY_HISTORY_COLUMNS,
    T.COHORT_HEALTH: T.COHORT_HEALTH_COLUMNS,
    T.ALERTS: T.ALERT_COLUMNS,
    T.QUARANTINE: T.QUARANTINE_COLUMNS,
    T.LEARNER_NAMES: T.LEARNER_NAME_COLUMNS,
    **LRS_COLUMNS,
}


def builders(secret: bytes, limits: TimeRange) -> dict[str, RowBuilder]:
    """The row builder of each sink, context bound (picklable partials of pure functions)."""
    return {
        "statements": partial(statement_rows, secret, limits),
        "engagement": partial(engagement_rows, limits),
        "mastery": partial(mastery_rows, limits),
        "cohort_health": partial(cohort_health_rows, limits),
        "alerts": partial(alert_rows, limits),
        "quarantine": partial(quarantine_rows, secret, limits),
    }
