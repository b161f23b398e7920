"""The durable index of accepted statement ids (``schemas.lrs_store.StatementIndex``), SQL.

One table, ``lrs_statement_index``, keyed by ``(school, statement_id)``, on SQLite (one
file shared by the gateway processes of a machine) or PostgreSQL (gateways on several
machines). A row is a *reservation* (state 0) from before a write's Kafka transaction,
then an *accepted* statement (state 1) with its stored JSON from the moment Kafka
acknowledged it. The primary key makes "exactly one NEW" hold between any number of
processes: a reservation is an ``INSERT … ON CONFLICT DO NOTHING``.

The write protocol (``producers.gateway.writes``) and what each crash leaves behind:

1. **reserve** the request's ids (one transaction, batched with concurrent requests).
   Ids already accepted are compared (xAPI Data §2.3.1): equivalent → not stored again
   (204/200), other content → 409; ids reserved by another request → wait and look again.
   *Crash here*: nothing was written anywhere.
2. **Kafka transaction** with the new statements only.
   *Crash before the commit*: the rows stay reserved by a dead holder and the broker
   aborts the transaction (at the latest after ``transaction.timeout.ms``; at once when
   the same gateway restarts, since its producers fence the old ones). Nothing reached
   the sinks. A retry of the client finds the ids *held*: it is answered 503 with
   ``Retry-After`` (never a false 204: the reservation is not an acceptance) until the
   reservation is freed by the restarted gateway (:meth:`release_orphans`) or taken over
   as stale (older than the Kafka transaction timeout plus the gateway's outcome wait);
   then it is NEW and stored once.
   *Crash after the commit, before step 3*: the statement is in Kafka but the client got
   no answer. Its retry is treated as above and so stored a second time: **the sinks
   collapse that copy** (tables keyed by ``(school, statement_id)``, first stored wins).
3. **confirm** (state 1, the stored statement, acked time), then answer 200/204.
   *Crash after confirm, before the answer*: the retry is a SAME: 204, nothing stored.
4. Kafka refused (certain: the failure came before ``commit_transaction``, or the
   producer aborted the transaction itself): **release** the reservations; the client is
   answered 503 ``kafka.unavailable``. ``commit_transaction`` itself failed (timeout,
   fenced, coordinator lost mid-EndTxn, fatal error): the coordinator may already have the
   commit, so the gateway re-initializes the transactional id (which settles the
   transaction in Kafka) and reads the transaction's first record back with a
   ``read_committed`` consumer: there → step 3 (confirm, 200/204); skipped (aborted) →
   release, 503 ``kafka.unavailable``; not known (Kafka unreachable, the read found
   neither in time) → outcome unknown. Kafka's outcome unknown (503
   ``kafka.outcome-unknown``, also when the commit is not confirmed within the gateway's
   outcome wait): the reservations stay until it is known (a late answer: confirm or
   release) and are taken over as stale if it never is, the *crash after the commit*
   window of step 2 (retries held, then stored again if the first copy landed: collapsed
   by the sinks; the stream worker applies a statement id once, and a copy whose
   ``timestamp`` the gateway set anew, the client having sent none, once while the first
   copy is within its horizon, see ``streams.learner.logic``).

The stored statement is kept with its id: reads by id are answered from here from the
moment of the answer until the statements sink has passed it (read-your-writes, on every
gateway; then ClickHouse answers, which knows erasures) and a re-sent id is compared
without ClickHouse, so writes keep working while ClickHouse is down. Once the sink has
passed it the gateways :meth:`prune` the body: only its comparison key (a SHA-256 of what
xAPI statement comparison looks at) and its timestamp stay, so the index grows by ids,
not by statements. ``forget_learner`` erases a learner's rows (those it is the actor of),
``forget_statements`` the statements ``forget-learner`` erased from ClickHouse (those
naming the learner anywhere).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import orjson

from schemas.lrs_store import AcceptedStatement, Claim, Holder, IndexEntry
from schemas.xapi.compare import comparison_key
from schemas.xapi.timefmt import parse_ms

from .database import Cursor, Database

log = logging.getLogger("learnpulse.lrsstore.index")

TABLE = "lrs_statement_index"
PENDING, ACCEPTED = 0, 1
# ``compare_key`` of an entry whose stored statement could not be reduced to a key: kept whole.
UNCOMPARABLE = b""
# Rows per multi-row statement (SQLite's default cap is 32,766 parameters).
CHUNK = 400
# Attempts of a transaction PostgreSQL aborted as a deadlock victim.
DEADLOCK_ATTEMPTS = 5

_COLUMNS = "school, statement_id, state, gateway, incarnation, request, reserved_ms"
_ENTRY_COLUMNS = (
    "statement_id, state, gateway, incarnation, request, reserved_ms, body, stored_ms, voids, acked_ms, "
    "compare_key, timestamp_ms"
)

T = TypeVar("T")


def _blob(dialect: str) -> str:
    return "BLOB" if dialect == "sqlite" else "BYTEA"


def _added_columns(dialect: str) -> list[tuple[str, str]]:
    """Columns added after the table's first form: every store gets them at start, one made by
    an older version too."""
    # What a pruned entry keeps of its statement for comparisons (``schemas.xapi.compare``).
    return [("compare_key", _blob(dialect)), ("timestamp_ms", "BIGINT")]


def _table(dialect: str) -> list[str]:
    """The table's first form (:func:`_added_columns` come after it)."""
    blob = _blob(dialect)
    return [
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            school TEXT NOT NULL,
            statement_id TEXT NOT NULL,
            state SMALLINT NOT NULL,
            gateway TEXT NOT NULL,
            incarnation TEXT NOT NULL,
            request BIGINT NOT NULL,
            reserved_ms BIGINT NOT NULL,
            body {blob},
            stored_ms BIGINT NOT NULL DEFAULT 0,
            learner TEXT NOT NULL DEFAULT '',
            voids TEXT NOT NULL DEFAULT '',
            acked_ms BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (school, statement_id)
        )"""
    ]


def _indexes() -> list[str]:
    return [
        # "Is this id voided?" (reads by id; a voiding statement may arrive before its target).
        f"CREATE INDEX IF NOT EXISTS {TABLE}_voids ON {TABLE} (school, voids) WHERE voids <> ''",
        # forget-learner.
        f"CREATE INDEX IF NOT EXISTS {TABLE}_learner ON {TABLE} (learner)",
        # Consistent-Through: pending rows and the most recently acknowledged ones.
        f"CREATE INDEX IF NOT EXISTS {TABLE}_pending ON {TABLE} (gateway, reserved_ms) WHERE state = 0",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_acked ON {TABLE} (acked_ms)",
        # Bodies not pruned yet, oldest first: a pruning pass never walks the pruned ones.
        f"CREATE INDEX IF NOT EXISTS {TABLE}_bodies ON {TABLE} (acked_ms) WHERE body IS NOT NULL AND compare_key IS NULL",
    ]


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _compared(body: bytes) -> tuple[bytes, int] | None:
    """What a pruned entry keeps of its stored statement: its comparison key and timestamp
    (None if the statement has no form to compare by: it stays whole)."""
    try:
        stored = orjson.loads(body)
        return comparison_key(stored), parse_ms(stored["timestamp"])
    except Exception:  # noqa: BLE001 - any statement the gateway once accepted must not stop pruning
        return None


def _entry(row: tuple[Any, ...]) -> IndexEntry:
    sid, state, gateway, incarnation, request, reserved_ms, body, stored_ms, voids, acked_ms, key, ts_ms = row
    return IndexEntry(
        statement_id=sid,
        accepted=state == ACCEPTED,
        holder=Holder(gateway, incarnation, int(request)),
        reserved_ms=int(reserved_ms),
        body=bytes(body) if body is not None else None,
        stored_ms=int(stored_ms),
        voids=voids,
        acked_ms=int(acked_ms),
        compare_key=bytes(key) if key is not None else None,
        timestamp_ms=int(ts_ms) if ts_ms is not None else None,
    )


class SqlStatementIndex:
    """:class:`schemas.lrs_store.StatementIndex` on a :class:`Database` (SQLite or PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure(_table(db.dialect))
        db.ensure_columns(TABLE, _added_columns(db.dialect))
        db.ensure(_indexes())

    @classmethod
    def open(cls, url: str) -> SqlStatementIndex:
        return cls(Database(url))

    def close(self) -> None:
        self.db.close()

    def _transact(self, work: Callable[[Cursor], T]) -> T:
        """Run ``work`` in one write transaction; retried when PostgreSQL picks it as a deadlock victim."""
        for attempt in range(DEADLOCK_ATTEMPTS):
            try:
                with self.db.transaction() as cur:
                    return work(cur)
            except Exception as err:  # noqa: BLE001 - only deadlocks are retried, by SQLSTATE
                if getattr(err, "sqlstate", None) not in ("40P01", "40001") or attempt == DEADLOCK_ATTEMPTS - 1:
                    raise
                log.info("statement index transaction retried after %s", type(err).__name__)
        raise RuntimeError("unreachable")

    # -- writes ----------------------------------------------------------------------
    def reserve(self, claims: Sequence[Claim], now_ms: int, stale_before_ms: int) -> list[dict[str, IndexEntry]]:
        return self._transact(lambda cur: self._reserve_in(cur, claims, now_ms, stale_before_ms))

    def confirm(self, items: Sequence[tuple[str, Holder, Sequence[AcceptedStatement]]], acked_ms: int) -> None:
        self._transact(lambda cur: self._confirm_in(cur, items, acked_ms))

    def confirm_and_reserve(
        self,
        confirms: Sequence[tuple[str, Holder, Sequence[AcceptedStatement]]],
        acked_ms: int,
        claims: Sequence[Claim],
        now_ms: int,
        stale_before_ms: int,
    ) -> list[dict[str, IndexEntry]]:
        """:meth:`confirm` then :meth:`reserve`, in one transaction (one commit instead of two)."""

        def work(cur: Cursor) -> list[dict[str, IndexEntry]]:
            self._confirm_in(cur, confirms, acked_ms)
            return self._reserve_in(cur, claims, now_ms, stale_before_ms)

        return self._transact(work)

    def _reserve_in(
        self, cur: Cursor, claims: Sequence[Claim], now_ms: int, stale_before_ms: int
    ) -> list[dict[str, IndexEntry]]:
        # The first claim naming an id competes for it; a later claim of the same batch
        # finds it held. Rows go in (school, id) order in every transaction, so two
        # batches competing for the same ids wait for each other without a deadlock.
        wanted: dict[tuple[str, str], int] = {}
        for n, claim in enumerate(claims):
            for sid in claim.ids:
                wanted.setdefault((claim.school, sid), n)
        order = sorted(wanted)
        got: set[tuple[str, str]] = set()
        for chunk in _chunks(order):
            rows: list[Any] = []
            for school, sid in chunk:
                h = claims[wanted[(school, sid)]].holder
                rows.extend((school, sid, PENDING, h.gateway, h.incarnation, h.request, now_ms))
            values = ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            cur.execute(
                f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES {values} "
                "ON CONFLICT (school, statement_id) DO NOTHING RETURNING school, statement_id",
                rows,
            )
            got.update((school, sid) for school, sid in cur.fetchall())
        for school, sid in order:
            if (school, sid) in got:
                continue
            # Held by a holder gone for longer than any Kafka transaction can stay open.
            h = claims[wanted[(school, sid)]].holder
            cur.execute(
                f"UPDATE {TABLE} SET gateway = ?, incarnation = ?, request = ?, reserved_ms = ? "
                "WHERE school = ? AND statement_id = ? AND state = 0 AND reserved_ms < ? RETURNING statement_id",
                (h.gateway, h.incarnation, h.request, now_ms, school, sid, stale_before_ms),
            )
            if cur.fetchone() is not None:
                log.warning("statement %s of %s: a stale reservation was taken over", sid, school)
                got.add((school, sid))
        out: list[dict[str, IndexEntry]] = [{} for _ in claims]
        others: dict[str, list[str]] = {}
        for claim in claims:
            for sid in claim.ids:
                if (claim.school, sid) not in got:
                    others.setdefault(claim.school, []).append(sid)
        held = {school: self._select(cur, school, sorted(set(ids))) for school, ids in others.items()}
        for n, claim in enumerate(claims):
            mine = wanted
            for sid in claim.ids:
                key = (claim.school, sid)
                if key in got and mine[key] == n:
                    continue
                entry = held.get(claim.school, {}).get(sid)
                if entry is None:
                    # Reserved for an earlier claim of this very batch.
                    entry = IndexEntry(sid, False, claims[mine[key]].holder, now_ms)
                out[n][sid] = entry
        return out

    @staticmethod
    def _confirm_in(
        cur: Cursor, items: Sequence[tuple[str, Holder, Sequence[AcceptedStatement]]], acked_ms: int
    ) -> None:
        # Every row of the group in one executemany (the driver loops, not Python), in the
        # order the per-row statements went before: per request, by id.
        rows = [
            (st.body, st.stored_ms, st.learner, st.voids, acked_ms, school, st.statement_id,
             h.gateway, h.incarnation, h.request)
            for school, h, statements in items
            for st in sorted(statements, key=lambda s: s.statement_id)
        ]  # fmt: skip
        cur.executemany(
            f"UPDATE {TABLE} SET state = 1, body = ?, stored_ms = ?, learner = ?, voids = ?, acked_ms = ? "
            "WHERE school = ? AND statement_id = ? AND state = 0 "
            "AND gateway = ? AND incarnation = ? AND request = ?",
            rows,
        )

    def release(self, items: Sequence[tuple[str, Holder, Sequence[str]]]) -> None:
        def work(cur: Cursor) -> None:
            for school, h, ids in items:
                for chunk in _chunks(sorted(ids)):
                    marks = ",".join("?" * len(chunk))
                    cur.execute(
                        f"DELETE FROM {TABLE} WHERE school = ? AND statement_id IN ({marks}) AND state = 0 "
                        "AND gateway = ? AND incarnation = ? AND request = ?",
                        (school, *chunk, h.gateway, h.incarnation, h.request),
                    )

        self._transact(work)

    def release_orphans(self, gateway: str, incarnation: str) -> int:
        def work(cur: Cursor) -> int:
            cur.execute(f"DELETE FROM {TABLE} WHERE state = 0 AND gateway = ? AND incarnation <> ?",
                        (gateway, incarnation))  # fmt: skip
            return max(cur.rowcount, 0)

        return self._transact(work)

    def prune(self, acked_before_ms: int, limit: int) -> int:
        # The keys are made outside the write transaction (JSON parsing, hashing): the
        # store's single writer is held only for the updates. An entry erased meanwhile
        # matches no row; one pruned meanwhile by another gateway is skipped.
        with self.db.transaction(read_only=True) as cur:
            rows = cur.execute(
                f"SELECT school, statement_id, body FROM {TABLE} "
                "WHERE body IS NOT NULL AND compare_key IS NULL AND acked_ms < ? ORDER BY acked_ms LIMIT ?",
                (acked_before_ms, limit),
            ).fetchall()
        if not rows:
            return 0
        pruned, kept = [], []
        for school, sid, body in rows:
            compared = _compared(bytes(body))
            if compared is None:
                kept.append((UNCOMPARABLE, school, sid))
            else:
                pruned.append((*compared, school, sid))

        def work(cur: Cursor) -> int:
            cur.executemany(
                f"UPDATE {TABLE} SET body = NULL, compare_key = ?, timestamp_ms = ? "
                "WHERE school = ? AND statement_id = ? AND body IS NOT NULL",
                pruned,
            )
            # Kept whole, and marked so that later passes do not pick them again.
            cur.executemany(f"UPDATE {TABLE} SET compare_key = ? WHERE school = ? AND statement_id = ?", kept)
            return len(pruned)

        if kept:
            log.warning("%d stored statements kept whole in the accepted-id index: no comparison key", len(kept))
        return self._transact(work)

    def forget_learner(self, school: str | None, learner: str) -> int:
        def work(cur: Cursor) -> int:
            if school is None:
                cur.execute(f"DELETE FROM {TABLE} WHERE learner = ? AND state = 1", (learner,))
            else:
                cur.execute(f"DELETE FROM {TABLE} WHERE school = ? AND learner = ? AND state = 1", (school, learner))
            return max(cur.rowcount, 0)

        return self._transact(work)

    def forget_statements(self, items: Sequence[tuple[str, str]]) -> int:
        by_school: dict[str, list[str]] = {}
        for school, sid in items:
            by_school.setdefault(school, []).append(sid.lower())

        def work(cur: Cursor) -> int:
            erased = 0
            for school, ids in sorted(by_school.items()):
                for chunk in _chunks(sorted(set(ids))):
                    marks = ",".join("?" * len(chunk))
                    cur.execute(f"DELETE FROM {TABLE} WHERE school = ? AND statement_id IN ({marks}) AND state = 1",
                                (school, *chunk))  # fmt: skip
                    erased += max(cur.rowcount, 0)
            return erased

        return self._transact(work) if by_school else 0

    # -- reads -----------------------------------------------------------------------
    def _select(self, cur: Cursor, school: str, ids: Sequence[str]) -> dict[str, IndexEntry]:
        found: dict[str, IndexEntry] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            cur.execute(f"SELECT {_ENTRY_COLUMNS} FROM {TABLE} WHERE school = ? AND statement_id IN ({marks})",
                        (school, *chunk))  # fmt: skip
            for row in cur.fetchall():
                found[row[0]] = _entry(row)
        return found

    def get(self, school: str, ids: Sequence[str]) -> dict[str, IndexEntry]:
        if not ids:
            return {}
        with self.db.transaction(read_only=True) as cur:
            return self._select(cur, school, list(ids))

    def read_one(self, school: str, statement_id: str) -> tuple[IndexEntry | None, bool]:
        # One snapshot for both answers: the entry and whether an accepted statement voids it.
        with self.db.transaction(read_only=True) as cur:
            entry = self._select(cur, school, [statement_id]).get(statement_id)
            return entry, bool(self._voided(cur, school, [statement_id]))

    def voided(self, school: str, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        with self.db.transaction(read_only=True) as cur:
            return self._voided(cur, school, list(ids))

    @staticmethod
    def voided_sql(n: int) -> str:
        """Which of ``n`` ids an accepted statement voids, in one school. ``voids <> ''`` is the
        voids index's own condition: without it SQLite cannot tell the partial index applies
        (the ids are parameters) and scans every entry of the school."""
        marks = ",".join("?" * n)
        return f"SELECT voids FROM {TABLE} WHERE school = ? AND voids <> '' AND voids IN ({marks}) AND state = 1"

    def _voided(self, cur: Cursor, school: str, ids: list[str]) -> set[str]:
        out: set[str] = set()
        for chunk in _chunks(ids):
            cur.execute(self.voided_sql(len(chunk)), (school, *chunk))
            out.update(v for (v,) in cur.fetchall())
        return out

    def oldest_unsunk_ms(self, sunk_through_ms: int) -> int | None:
        with self.db.transaction(read_only=True) as cur:
            pending = cur.execute(f"SELECT MIN(reserved_ms) FROM {TABLE} WHERE state = 0").fetchone()
            recent = cur.execute(f"SELECT MIN(stored_ms) FROM {TABLE} WHERE acked_ms >= ?",
                                 (sunk_through_ms,)).fetchone()  # fmt: skip
        found = [int(v) for v in (pending[0] if pending else None, recent[0] if recent else None) if v is not None]
        return min(found) if found else None
