"""Erasing a learner (GDPR Art. 17): from raw and derived tables, and from what sinks write next.

Order of an erasure (:func:`forget_learners`):

1. record the pseudonyms in ``forgotten_learners``; every sink re-reads that ledger at
   least every ``FILTER_REFRESH_S`` before it writes, and drops the learner's rows from
   then on (Kafka keeps their records until retention ends, and a replay of the topic
   must not bring them back);
2. wait ``settle_s`` so a batch filtered with the old ledger is written before step 3;
3. delete, in every table of the database that has such a column (so tables added by
   later migrations are covered too, the staff directory of names ``learner_names`` among
   them): rows whose ``learner`` is one of them, rows of every
   statement that names them anywhere (``statements_raw.learners``: actor, object,
   instructor, team, authority, SubStatement) by statement id, voids of those statements;
   remove them from ``alerts.disengaged_learners``. ``ALTER TABLE ... DELETE`` rewrites the
   parts, so the data is physically gone (a lightweight delete would only mask it);
4. rebuild the rollup groups (school, course, cohort, day) those statements were in,
   from ``statements`` as it is now (the rollup's id sets cannot subtract), then recompute
   their ``activity_totals`` from the rebuilt sets (sinks/totals.py; a group left empty
   loses its totals row). ``activity_learners`` loses the erased learner's rows in step 3
   (``learner`` column); the rows of other learners whose statements named them are
   rebuilt here (one left without statements in a cohort goes); ``engagement_periods``
   (no ``learner`` column) loses the periods of the erased learners' schools that have no
   ``engagement`` row left; ``engagement_hourly`` (no ``learner`` column either) recomputes the
   (school, course, cohort, hour) groups the erased learners had engagement in (sinks/hourly.py;
   a group left empty loses its row);
5. sweep what a sink's recompute of ``activity_totals`` or ``engagement_hourly`` wrote late:
   one that read its sets before the erasure (while the step-4 mutations were still running,
   or a query that was already running) and inserted after the groups' rows were deleted
   would bring the erased figures back, and in a group the erasure left empty no later
   recompute outranks it. So: wait until every INSERT into the table that is running now has
   ended (``system.processes``; one that starts later reads the erased sets), delete the
   groups' rows versioned before step 4's recompute, and recompute the groups again (a row
   deleted there may have counted statements that arrived after the erasure);
6. count what is left (must be 0) and report everything removed.

On a cluster of several shards the engine's database is the all-shards one
(``schemas/clickhouse/cluster.py``): every read and count above goes across shards, the
ledger insert and the rollup rebuild are routed to the shard of their school, and every
``ALTER`` runs on the local tables of one replica of every shard (each shard erases its
rows; its other replicas follow through replication); the wait for mutations looks at every
shard.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.clickhouse import tables as T
from schemas.clickhouse.cluster import local_database
from schemas.clickhouse.engine import ClickHouse
from schemas.clickhouse.replicas import once_per_shard
from schemas.clickhouse.rollups import GROUP_OF_STATEMENT, rebuild_sql

from .hourly import (
    delete_hours_sql, delete_stale_hours_sql, hour_keys_of_learners, key_chunks, recompute_forgotten_hours,
)
from .totals import (
    delete_rebuilt_sql, delete_stale_rebuilt_sql, learner_keys_of, learners_rebuild_sql, recompute_rebuilt,
)

log = logging.getLogger("learnpulse.forget")

Rows = dict[str, list[tuple[Any, ...]]]

FILTER_REFRESH_S = 2.0
# Columns holding statement ids: a row is erased when the statement it names is.
ID_COLUMNS = ("statement_id", "voided_statement_id", "voiding_statement_id", "voided_id", "voiding_id")
ARRAY_COLUMNS = ("disengaged_learners",)
# Columns listing everyone a row names: the row is erased when one of them is forgotten
# (statements_raw's rows go by statement id too; the quarantine's only this way).
NAMED_LEARNERS_COLUMN = "learners"
# Bookkeeping, and the rollup (rebuilt instead of filtered).
_SKIP_TABLES = frozenset({T.FORGOTTEN_LEARNERS, "schema_migrations", T.SINK_PROGRESS, T.ACTIVITY_DAILY})
_PSEUDONYM = re.compile(r"[0-9a-f]{64}\Z")
CHUNK = 5_000


# -- the sink side: drop rows of forgotten learners before writing ----------------------
def drop_forgotten(forgotten: frozenset[str], columns: dict[str, tuple[str, ...]], rows: Rows) -> Rows:
    """``rows`` without anything about ``forgotten`` learners (pure).

    A statement that names a forgotten learner anywhere (``learners`` of the raw row) is
    dropped from every table keyed by its id; rows with a forgotten ``learner`` are
    dropped; forgotten pseudonyms are removed from ``disengaged_learners``.
    """
    if not forgotten:
        return rows
    dropped: set[str] = set()
    for table, rs in rows.items():
        cols = columns[table]
        if "statement_id" not in cols:
            continue
        i_id = cols.index("statement_id")
        if "learners" in cols:
            i_ls = cols.index("learners")
            dropped.update(str(r[i_id]) for r in rs if not forgotten.isdisjoint(r[i_ls]))
        if "learner" in cols:
            i_l = cols.index("learner")
            dropped.update(str(r[i_id]) for r in rs if r[i_l] in forgotten)
    out: Rows = {}
    for table, rs in rows.items():
        cols = columns[table]
        keep = rs
        if "learner" in cols:
            i_l = cols.index("learner")
            keep = [r for r in keep if r[i_l] not in forgotten]
        if dropped:
            for name in ID_COLUMNS:
                if name in cols:
                    i = cols.index(name)
                    keep = [r for r in keep if str(r[i]) not in dropped]
        for name in ARRAY_COLUMNS:
            if name in cols:
                i = cols.index(name)
                keep = [r[:i] + ([x for x in r[i] if x not in forgotten],) + r[i + 1 :] for r in keep]
        out[table] = keep
    return out


class ForgottenFilter:
    """A sink's ``row_filter``: :func:`drop_forgotten` with the ledger re-read every ``refresh_s``.

    If the ledger cannot be read, the error propagates and the sink retries the batch
    later: it never writes without knowing who was erased.
    """

    def __init__(self, engine: ClickHouse, columns: dict[str, tuple[str, ...]], refresh_s: float = FILTER_REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.engine = engine
        self.columns = columns
        self.refresh_s = refresh_s
        self.clock = clock
        self._forgotten: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    def current(self) -> frozenset[str]:
        if self.clock() - self._read_at >= self.refresh_s:
            rows = self.engine.query(f"SELECT DISTINCT learner FROM {self.engine.database}.{T.FORGOTTEN_LEARNERS}")
            self._forgotten = frozenset(str(r[0]) for r in rows)
            self._read_at = self.clock()
        return self._forgotten

    def __call__(self, rows: Rows) -> Rows:
        return drop_forgotten(self.current(), self.columns, rows)


# -- the erasure -------------------------------------------------------------------------
@dataclass
class ForgetReport:
    """What an erasure removed: rows per table (counted before deleting), statements,
    rollup groups rebuilt, and rows left afterwards (0 unless something raced it)."""

    learners: list[str]
    statements: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    scrubbed: dict[str, int] = field(default_factory=dict)
    rollup_groups: int = 0
    remaining: int = 0
    # (school, sha2) of the attachments the erased statements declared; a content is erased
    # only when no statement left declares it.
    attachments: list[tuple[str, str]] = field(default_factory=list)
    # Those of ``attachments`` no statement left declares: their contents are erased here
    # and, by the caller, wherever else they are kept (the LRS store's copy).
    unreferenced: list[tuple[str, str]] = field(default_factory=list)
    # (school, statement id) of every statement erased: the caller erases them wherever
    # else they are kept (the LRS store's accepted-id index answers reads by id).
    statement_ids: list[tuple[str, str]] = field(default_factory=list)


def _cluster_of(ch: ClickHouse) -> str | None:
    """The cluster whose shards the engine's database spans (its Distributed tables name it),
    or None when the database holds the tables themselves."""
    if local_database(ch.database) == ch.database:
        return None
    rows = ch.query(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": ch.database, "t": T.STATEMENTS},
    )
    found = re.match(r"Distributed\((\w+),", str(rows[0][0])) if rows else None
    if found is None:
        raise ValueError(f"{ch.database}.{T.STATEMENTS} is not a Distributed table: cannot find its cluster")
    return found.group(1)


_ALTER_TABLE = re.compile(r"^ALTER TABLE (?:\{db\}|\w+)\.(\w+) ")


def _alter(ch: ClickHouse, sql: str, params: dict[str, Any]) -> None:
    """Run ``ALTER TABLE {db}.<table> …``: on the tables themselves, or, across shards, on
    the local tables of one replica of every shard (a Distributed table takes no mutation;
    the shard's other replicas apply it through replication, as for the migrations' ALTERs:
    ``ON CLUSTER`` would take 18.16's racy lock, schemas/clickhouse/cluster.py)."""
    cluster = _cluster_of(ch)
    if cluster is None:
        ch.execute(sql, params)
        return
    m = _ALTER_TABLE.match(sql)
    if m is None:
        raise ValueError(f"not an ALTER TABLE of one table: {sql[:60]!r}")
    local = f"ALTER TABLE {local_database(ch.database)}.{m.group(1)} " + sql[m.end():]
    once_per_shard(ch, cluster, lambda engine: engine.execute(local, params), ch.at)  # type: ignore[attr-defined]


def _tables(ch: ClickHouse) -> dict[str, tuple[str, ...]]:
    """MergeTree tables of the database and their columns (views and the rollup excluded);
    across shards those of the local database (same names and columns)."""
    local = {"db": local_database(ch.database)}
    engines = {
        str(r[0]): str(r[1])
        for r in ch.query("SELECT name, engine FROM system.tables WHERE database = {db:String}", local)
    }
    columns: dict[str, list[str]] = {}
    for table, name, ctype in ch.query(
        "SELECT table, name, type FROM system.columns WHERE database = {db:String}", local
    ):
        # A `learners` that is not a list of pseudonyms (cohort sizes in cohort_health, alerts)
        # names nobody.
        if str(name) == NAMED_LEARNERS_COLUMN and not str(ctype).startswith("Array("):
            continue
        columns.setdefault(str(table), []).append(str(name))
    return {
        t: tuple(cols)
        for t, cols in sorted(columns.items())
        if engines.get(t, "").endswith("MergeTree") and t not in _SKIP_TABLES and not t.startswith(".inner")
    }


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def wait_for_mutations(ch: ClickHouse, timeout_s: float = 600) -> None:
    """Block until every mutation of the database is done (18.16 runs them asynchronously);
    across shards, on every shard (``cluster()`` asks a replica of each)."""
    cluster = _cluster_of(ch)
    mutations = "system.mutations" if cluster is None else f"cluster('{cluster}', system, mutations)"
    deadline = time.monotonic() + timeout_s
    while True:
        ((pending,),) = ch.query(
            f"SELECT count() FROM {mutations} WHERE database = {{db:String}} AND is_done = 0",
            {"db": local_database(ch.database)},
        )
        if not int(pending):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pending} mutations still running in {ch.database} after {timeout_s:.0f}s")
        time.sleep(0.2)


def running_writes(ch: ClickHouse, table: str) -> set[str]:
    """Query ids of the ``INSERT INTO <db>.<table>`` running now; across shards, those
    ``cluster()`` sees (one replica of each shard, as :func:`wait_for_mutations`)."""
    cluster = _cluster_of(ch)
    processes = "system.processes" if cluster is None else f"cluster('{cluster}', system, processes)"
    rows = ch.query(f"SELECT query_id FROM {processes} WHERE startsWith(query, {{prefix:String}})",
                    {"prefix": f"INSERT INTO {ch.database}.{table} "})  # fmt: skip
    return {str(r[0]) for r in rows}


def wait_for_running_writes(ch: ClickHouse, table: str, timeout_s: float = 600, poll_s: float = 0.2) -> None:
    """Block until every write :func:`running_writes` finds now has ended (a query that
    starts later is not waited for)."""
    running = running_writes(ch, table)
    deadline = time.monotonic() + timeout_s
    while running:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(running)} writes into {ch.database}.{table} still running after {timeout_s:.0f}s")
        time.sleep(poll_s)
        running &= running_writes(ch, table)


def sweep_late_recomputes(ch: ClickHouse, table: str, groups: list[Any], clock: int) -> None:
    """Step 5 of the module docstring: ``table`` is ``activity_totals`` (``groups``: rollup
    hashes) or ``engagement_hourly`` (``groups``: hour keys); ``clock``: the erasure's recompute's."""
    recompute: Callable[[ClickHouse, list[Any]], int]
    if table == T.ACTIVITY_TOTALS:
        delete, chunks, recompute = delete_stale_rebuilt_sql(), [{"h": groups}], recompute_rebuilt
    elif table == T.ENGAGEMENT_HOURLY:
        delete, recompute = delete_stale_hours_sql(), recompute_forgotten_hours
        chunks = [{"groups": chunk} for chunk in key_chunks(groups)]
    else:
        raise ValueError(f"{table} is not recomputed")
    wait_for_running_writes(ch, table)
    for params in chunks:
        _alter(ch, delete, {**params, "clock": clock})
    wait_for_mutations(ch)
    recompute(ch, groups)


def forget_learners(
    ch: ClickHouse,
    learners: list[str],
    *,
    reason: str = "erasure request",
    settle_s: float = 2 * FILTER_REFRESH_S + 1,
    log_line: Callable[[str], None] = lambda _m: None,
) -> ForgetReport:
    """Erase ``learners`` (pseudonyms) from every table; see the module docstring."""
    bad = [p for p in learners if not _PSEUDONYM.match(p)]
    if bad:
        raise ValueError(f"not learner pseudonyms (64 lower-case hex): {bad}")
    db = ch.database
    now = datetime.now(UTC).replace(tzinfo=None)
    ch.insert(
        f"{db}.{T.FORGOTTEN_LEARNERS}", T.FORGOTTEN_COLUMNS,
        [list(learners), [now] * len(learners), [reason] * len(learners)],
    )  # fmt: skip
    log_line(f"recorded {len(learners)} pseudonym(s) as forgotten; sinks drop their rows from now on")
    if settle_s > 0:
        time.sleep(settle_s)
    report = ForgetReport(list(learners))
    ps = {"ps": list(learners)}
    erased_statements = sorted(
        {(str(s), str(i)) for s, i in ch.query(
            f"SELECT DISTINCT school, toString(statement_id) FROM {db}.{T.STATEMENTS_RAW}"
            " WHERE hasAny(learners, {ps:Array(String)}) OR has({ps:Array(String)}, learner)", ps)}
        | {(str(s), str(i)) for s, i in ch.query(
            f"SELECT DISTINCT school, toString(statement_id) FROM {db}.{T.STATEMENTS}"
            " WHERE has({ps:Array(String)}, learner)", ps)}
    )  # fmt: skip
    ids = sorted({i for _, i in erased_statements})
    report.statements = len(ids)
    report.statement_ids = erased_statements
    groups: set[int] = set()
    learner_keys: set[str] = set()
    for chunk in _chunks(ids):
        learner_keys |= learner_keys_of(ch, chunk)
        groups.update(
            int(r[0])
            for r in ch.query(
                f"SELECT DISTINCT {GROUP_OF_STATEMENT} FROM {{db}}.statements"
                " WHERE statement_id IN (SELECT toUUID(arrayJoin({ids:Array(String)})))",
                {"ids": chunk},
            )
        )
    attachments = _attachments_of(ch, ids)
    tables = _tables(ch)
    period_schools = _engagement_schools(ch, ps) if T.ENGAGEMENT_PERIODS in tables else []
    hour_keys = hour_keys_of_learners(ch, learners) if T.ENGAGEMENT_HOURLY in tables else []
    for table, cols in tables.items():
        conditions: list[tuple[str, dict[str, Any]]] = []
        if "learner" in cols:
            conditions.append(("has({ps:Array(String)}, learner)", ps))
        if NAMED_LEARNERS_COLUMN in cols:
            conditions.append((f"hasAny({NAMED_LEARNERS_COLUMN}, {{ps:Array(String)}})", ps))
        for name in ID_COLUMNS:
            if name in cols:
                for chunk in _chunks(ids):
                    conditions.append((f"{name} IN (SELECT toUUID(arrayJoin({{ids:Array(String)}})))", {"ids": chunk}))
        removed = 0
        for cond, params in conditions:
            ((n,),) = ch.query(f"SELECT count() FROM {db}.{table} WHERE {cond}", params)
            if int(n):
                removed += int(n)
                _alter(ch, f"ALTER TABLE {db}.{table} DELETE WHERE {cond}", params)
        for name in ARRAY_COLUMNS:
            if name in cols:
                ((n,),) = ch.query(f"SELECT count() FROM {db}.{table} WHERE hasAny({name}, {{ps:Array(String)}})", ps)
                if int(n):
                    report.scrubbed[table] = int(n)
                    _alter(
                        ch,
                        f"ALTER TABLE {db}.{table} UPDATE {name} = arrayFilter(x -> NOT has({{ps:Array(String)}}, x), {name})"
                        f" WHERE hasAny({name}, {{ps:Array(String)}})",
                        ps,
                    )
        if removed:
            report.removed[table] = removed
            log_line(f"{table}: {removed} rows deleted")
    wait_for_mutations(ch)
    if period_schools:
        _alter(ch, _STALE_PERIODS_SQL, {"schools": period_schools})
        wait_for_mutations(ch)
    if hour_keys:
        _recompute_hours(ch, hour_keys)
        log_line(f"{T.ENGAGEMENT_HOURLY}: {len(hour_keys)} school/course/cohort/hour groups recomputed")
    erased = _erase_unreferenced_attachments(ch, attachments)
    if erased:
        report.removed[LRS_ATTACHMENTS] = erased
        log_line(f"{LRS_ATTACHMENTS}: {erased} attachment contents deleted (no other statement refers to them)")
        wait_for_mutations(ch)
    report.attachments = sorted(attachments)
    report.unreferenced = [(s, h) for s, h in report.attachments if not _still_referenced(ch, s, h)]
    if groups:
        delete, insert = rebuild_sql()
        h = {"h": sorted(groups)}
        _alter(ch, delete, h)
        # A group may hold nothing after the erasure: its totals row goes, not only changes.
        _alter(ch, delete_rebuilt_sql(), h)
        delete_learners, insert_learners = learners_rebuild_sql()
        k = {"k": sorted(learner_keys)}
        _alter(ch, delete_learners, k)
        wait_for_mutations(ch)
        ch.execute(insert, h)
        ch.execute(insert_learners, k)
        sweep_late_recomputes(ch, T.ACTIVITY_TOTALS, h["h"], recompute_rebuilt(ch, h["h"]))
        report.rollup_groups = len(groups)
        log_line(f"activity_daily, activity_totals: {len(groups)} school/course/cohort/day groups rebuilt")
    report.remaining = _remaining(ch, tables, learners, ids) + _attachments_left(ch, attachments)
    return report


# -- engagement_hourly: the hours the erased learners had engagement in -----------------
def _recompute_hours(ch: ClickHouse, keys: list[str]) -> None:
    """Delete the groups' rows (a group may be left without engagement), then recompute them."""
    for chunk in key_chunks(keys):
        _alter(ch, delete_hours_sql(), {"groups": chunk})
    wait_for_mutations(ch)
    sweep_late_recomputes(ch, T.ENGAGEMENT_HOURLY, keys, recompute_forgotten_hours(ch, keys))


# -- engagement_periods: a period goes with the last engagement row in it ---------------
_STALE_PERIODS_SQL = (
    f"ALTER TABLE {{db}}.{T.ENGAGEMENT_PERIODS} DELETE WHERE has({{schools:Array(String)}}, school)"
    " AND (grain, school, period_start) NOT IN (SELECT grain, school, period_start"
    f" FROM {{db}}.{T.ENGAGEMENT} WHERE has({{schools:Array(String)}}, school))"
)


def _engagement_schools(ch: ClickHouse, ps: dict[str, Any]) -> list[str]:
    """The schools where ``ps``'s learners have engagement rows (their periods may empty)."""
    return sorted(str(r[0]) for r in ch.query(
        f"SELECT DISTINCT school FROM {{db}}.{T.ENGAGEMENT} WHERE has({{ps:Array(String)}}, learner)", ps))  # fmt: skip


# -- attachments: content by (school, sha2), shared by every statement that declares it ---
LRS_ATTACHMENTS = "lrs_attachments"
LRS_ATTACHMENT_REFS = "lrs_attachment_refs"


def _has_table(ch: ClickHouse, name: str) -> bool:
    ((n,),) = ch.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": ch.database, "t": name},
    )
    return bool(int(n))


def _attachments_of(ch: ClickHouse, ids: list[str]) -> set[tuple[str, str]]:
    """(school, sha2) of every attachment the statements ``ids`` declare.

    From ``lrs_attachment_refs`` (migration 0014) and, for statements stored before it,
    from their raw JSON.
    """
    import orjson

    from .lrs_rows import attachment_shas

    found: set[tuple[str, str]] = set()
    refs = _has_table(ch, LRS_ATTACHMENT_REFS)
    for chunk in _chunks(ids):
        p = {"ids": chunk}
        in_ids = "statement_id IN (SELECT toUUID(arrayJoin({ids:Array(String)})))"
        if refs:
            found.update((str(s), str(h)) for s, h in ch.query(
                f"SELECT DISTINCT school, sha2 FROM {{db}}.{LRS_ATTACHMENT_REFS} WHERE {in_ids}", p))  # fmt: skip
        for school, raw in ch.query(
            f"SELECT school, raw FROM {{db}}.{T.STATEMENTS_RAW} WHERE {in_ids} AND position(raw, 'sha2') > 0", p
        ):
            try:
                statement = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(statement, dict):
                found.update((str(school), sha) for sha in attachment_shas(statement))
    return found


def _still_referenced(ch: ClickHouse, school: str, sha2: str) -> bool:
    """Does any statement left (after the deletions) declare this attachment?"""
    p = {"s": school, "h": sha2}
    if _has_table(ch, LRS_ATTACHMENT_REFS):
        ((n,),) = ch.query(
            f"SELECT count() FROM {{db}}.{LRS_ATTACHMENT_REFS} WHERE school = {{s:String}} AND sha2 = {{h:String}}", p
        )
        if int(n):
            return True
    # Statements stored before the refs table: their raw JSON names the sha2.
    ((n,),) = ch.query(
        f"SELECT count() FROM {{db}}.{T.STATEMENTS_RAW} WHERE school = {{s:String}} AND position(raw, {{h:String}}) > 0",
        p,
    )
    return bool(int(n))


def _erase_unreferenced_attachments(ch: ClickHouse, attachments: set[tuple[str, str]]) -> int:
    if not attachments or not _has_table(ch, LRS_ATTACHMENTS):
        return 0
    erased = 0
    for school, sha2 in sorted(attachments):
        if _still_referenced(ch, school, sha2):
            continue
        cond = "school = {s:String} AND sha2 = {h:String}"
        p = {"s": school, "h": sha2}
        ((n,),) = ch.query(f"SELECT count() FROM {{db}}.{LRS_ATTACHMENTS} WHERE {cond}", p)
        if int(n):
            _alter(ch, f"ALTER TABLE {{db}}.{LRS_ATTACHMENTS} DELETE WHERE {cond}", p)
            erased += int(n)
    return erased


def _attachments_left(ch: ClickHouse, attachments: set[tuple[str, str]]) -> int:
    """Contents of the erased statements' attachments still stored though nothing refers to them."""
    left = 0
    if not attachments or not _has_table(ch, LRS_ATTACHMENTS):
        return 0
    for school, sha2 in attachments:
        if _still_referenced(ch, school, sha2):
            continue
        ((n,),) = ch.query(
            f"SELECT count() FROM {{db}}.{LRS_ATTACHMENTS} WHERE school = {{s:String}} AND sha2 = {{h:String}}",
            {"s": school, "h": sha2},
        )
        left += int(n)
    return left


def _remaining(ch: ClickHouse, tables: dict[str, tuple[str, ...]], learners: list[str], ids: list[str]) -> int:
    left = 0
    ps = {"ps": list(learners)}
    for table, cols in tables.items():
        if "learner" in cols:
            ((n,),) = ch.query(
                f"SELECT count() FROM {ch.database}.{table} WHERE has({{ps:Array(String)}}, learner)", ps
            )
            left += int(n)
        for name in (*ARRAY_COLUMNS, NAMED_LEARNERS_COLUMN):
            if name in cols:
                ((n,),) = ch.query(
                    f"SELECT count() FROM {ch.database}.{table} WHERE hasAny({name}, {{ps:Array(String)}})", ps
                )
                left += int(n)
        if "statement_id" in cols:
            for chunk in _chunks(ids):
                ((n,),) = ch.query(
                    f"SELECT count() FROM {ch.database}.{table} WHERE statement_id IN (SELECT toUUID(arrayJoin({{ids:Array(String)}})))",
                    {"ids": chunk},
                )
                left += int(n)
    return left


def pseudonyms_for(identifier: str, secret: bytes) -> list[str]:
    """The pseudonyms a learner identifier stands for.

    - a pseudonym (64 hex digits): itself;
    - ``mailto:...``: the pseudonym of that ``mbox`` and of its ``mbox_sha1sum`` (an
      activity provider may have sent either form for the same person);
    - a 40-hex SHA-1 (``mbox_sha1sum``), an ``openid`` URL (``http(s)://...``);
    - ``account:<homePage>|<name>``;
    - a JSON Agent object (``{"account": {...}}`` etc.).
    """
    import hashlib

    import orjson

    from schemas.errors import InvalidStatement
    from schemas.identity import canonical_ifi, pseudonym

    text = identifier.strip()
    if _PSEUDONYM.match(text.lower()) and len(text) == 64:
        return [text.lower()]
    agents: list[dict[str, Any]]
    if text.startswith("{"):
        try:
            agent = orjson.loads(text)
        except orjson.JSONDecodeError as err:
            raise ValueError(f"not a JSON agent: {err}") from err
        if not isinstance(agent, dict):
            raise ValueError("a JSON agent must be an object")
        agents = [agent]
        if isinstance(agent.get("mbox"), str):
            agents.append({"mbox_sha1sum": hashlib.sha1(agent["mbox"].encode()).hexdigest()})
    elif text.lower().startswith("mailto:"):
        canonical = canonical_ifi({"mbox": text}).removeprefix("mbox:")
        agents = [{"mbox": text}] + [
            {"mbox_sha1sum": hashlib.sha1(form.encode()).hexdigest()} for form in dict.fromkeys((text, canonical))
        ]
    elif re.fullmatch(r"[0-9a-fA-F]{40}", text):
        agents = [{"mbox_sha1sum": text}]
    elif text.startswith(("http://", "https://")):
        agents = [{"openid": text}]
    elif text.startswith("account:") and "|" in text:
        home, name = text[len("account:") :].split("|", 1)
        agents = [{"account": {"homePage": home, "name": name}}]
    else:
        raise ValueError(
            "give a pseudonym (64 hex), mailto:..., a 40-hex mbox_sha1sum, an openid URL, "
            "account:<homePage>|<name> or a JSON agent"
        )
    out = []
    for agent in agents:
        try:
            p = pseudonym(secret, agent)
        except InvalidStatement as err:
            raise ValueError(f"agent has no inverse functional identifier: {err}") from err
        if p not in out:
            out.append(p)
    return out
