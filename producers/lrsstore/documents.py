"""The document store (``schemas.lrs_store.DocumentStore``) on SQLite and PostgreSQL.

One table, ``lrs_documents``. Each write with a precondition is ONE SQL statement, so the
compare-and-set is atomic on both engines without explicit locking:

- no precondition: ``INSERT … ON CONFLICT DO UPDATE`` (upsert);
- must be absent (If-None-Match: *): ``INSERT … ON CONFLICT DO NOTHING``, none inserted = failed;
- must exist / must have this ETag: ``UPDATE … WHERE key [AND etag = ?]``, none updated = failed.

On PostgreSQL under READ COMMITTED a concurrent ``UPDATE … WHERE etag = ?`` waits for the
row lock and re-checks its WHERE on the row the other writer committed, so two writers
holding the same ETag cannot both succeed; on SQLite every write transaction holds the
database's write lock (``BEGIN IMMEDIATE``), across processes sharing the file.

Keys: activity IRIs and document ids are client strings of any length, too long together
for a PostgreSQL btree entry, so rows are found by ``key_sha`` (SHA-256 of the whole key)
and listed by ``scope_sha`` (SHA-256 of school, kind, activity and agent); the parts are
stored beside them in full. The ETag is the hex SHA-1 of the content, as xAPI 1.0.3
Communication §3.1.s4.b2 requires.
"""

from __future__ import annotations

import hashlib
import queue
from collections.abc import Iterator
from contextlib import contextmanager

from schemas.lrs_store import Document, DocumentKey, DocumentKind, Precondition, PreconditionFailed

from .database import Cursor, Database

_COLUMNS = "school, kind, activity_id, agent, registration, document_id"


def _ddl(dialect: str) -> list[str]:
    blob = "BLOB" if dialect == "sqlite" else "BYTEA"
    return [
        f"""CREATE TABLE IF NOT EXISTS lrs_documents (
            key_sha TEXT PRIMARY KEY,
            scope_sha TEXT NOT NULL,
            school TEXT NOT NULL,
            kind TEXT NOT NULL,
            activity_id TEXT NOT NULL,
            agent TEXT NOT NULL,
            registration TEXT NOT NULL,
            document_id TEXT NOT NULL,
            content {blob} NOT NULL,
            content_type TEXT NOT NULL,
            etag TEXT NOT NULL,
            updated_ms BIGINT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS lrs_documents_scope ON lrs_documents (scope_sha, updated_ms)",
        # forget-learner erases by agent pseudonym (in every school, or one).
        "CREATE INDEX IF NOT EXISTS lrs_documents_agent ON lrs_documents (agent, school)",
    ]


def _sha(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        raw = p.encode("utf-8", "surrogatepass")
        # Length-prefixed, so no two different keys hash the same bytes.
        h.update(b"%d:" % len(raw))
        h.update(raw)
    return h.hexdigest()


def scope_sha(school: str, kind: DocumentKind, activity_id: str, agent: str) -> str:
    return _sha(school, str(kind), activity_id, agent)


def key_sha(key: DocumentKey) -> str:
    return _sha(key.school, str(key.kind), key.activity_id, key.agent, key.registration, key.document_id)


def content_etag(content: bytes) -> str:
    """Hex SHA-1 of the content (xAPI 1.0.3 Communication §3.1.s4.b2), lower case."""
    return hashlib.sha1(content, usedforsecurity=False).hexdigest()


class SqlDocumentStore:
    """:class:`schemas.lrs_store.DocumentStore` over ``sqlite:///…`` or ``postgresql://…``.

    Holds ``connections`` connections (each used by one thread at a time), so concurrent
    gateway requests do not queue behind one connection; several processes may share the
    store (the SQLite file or the PostgreSQL database). Reads are snapshot transactions
    that take no write lock. On SQLite, where one writer at a time holds the file, this
    process's writes share one more connection: they queue on its lock, handed over at
    once, instead of polling SQLite's busy timeout against each other.
    """

    def __init__(self, url: str, connections: int = 4) -> None:
        first = Database(url)
        self.dialect = first.dialect
        first.ensure(_ddl(first.dialect))
        self._all = [first]
        self._readers = self._pool([first] + [Database(url) for _ in range(max(connections, 1) - 1)])
        self._writers = self._pool([Database(url)]) if self.dialect == "sqlite" else self._readers

    def _pool(self, dbs: list[Database]) -> queue.LifoQueue[Database]:
        pool: queue.LifoQueue[Database] = queue.LifoQueue()
        for db in dbs:
            if db not in self._all:
                self._all.append(db)
            pool.put(db)
        return pool

    @contextmanager
    def _tx(self, read_only: bool = False) -> Iterator[Cursor]:
        pool = self._readers if read_only else self._writers
        db = pool.get()
        try:
            with db.transaction(read_only=read_only) as cur:
                yield cur
        finally:
            pool.put(db)

    def close(self) -> None:
        for db in self._all:
            db.close()

    # -- reads -------------------------------------------------------------------------
    def get(self, key: DocumentKey) -> Document | None:
        with self._tx(read_only=True) as cur:
            row = cur.execute(
                "SELECT content, content_type, etag, updated_ms FROM lrs_documents WHERE key_sha = ?",
                (key_sha(key),),
            ).fetchone()
        if row is None:
            return None
        return Document(bytes(row[0]), row[1], row[2], int(row[3]))

    def list_ids(
        self,
        school: str,
        kind: DocumentKind,
        activity_id: str,
        agent: str,
        registration: str | None,
        since_ms: int | None,
    ) -> list[tuple[str, int]]:
        sql = "SELECT document_id, updated_ms FROM lrs_documents WHERE scope_sha = ?"
        params: list[object] = [scope_sha(school, kind, activity_id, agent)]
        if registration is not None:
            sql += " AND registration = ?"
            params.append(registration)
        if since_ms is not None:
            sql += " AND updated_ms > ?"
            params.append(since_ms)
        with self._tx(read_only=True) as cur:
            rows = cur.execute(sql + " ORDER BY document_id", params).fetchall()
        # The same id under two registrations is listed once, with its latest update.
        latest: dict[str, int] = {}
        for doc_id, updated in rows:
            latest[doc_id] = max(int(updated), latest.get(doc_id, 0))
        return list(latest.items())

    # -- writes ------------------------------------------------------------------------
    def put(
        self,
        key: DocumentKey,
        content: bytes,
        content_type: str,
        updated_ms: int,
        precondition: Precondition = Precondition.NONE,
        etag: str | None = None,
    ) -> Document:
        new_etag = content_etag(content)
        ksha = key_sha(key)
        values = (content, content_type, new_etag, updated_ms)
        with self._tx() as cur:
            if precondition in (Precondition.NONE, Precondition.ABSENT):
                on_conflict = (
                    "DO UPDATE SET content = excluded.content, content_type = excluded.content_type, "
                    "etag = excluded.etag, updated_ms = excluded.updated_ms"
                    if precondition is Precondition.NONE
                    else "DO NOTHING"
                )
                cur.execute(
                    f"INSERT INTO lrs_documents (key_sha, scope_sha, {_COLUMNS}, content, content_type, etag, "
                    f"updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key_sha) {on_conflict}",
                    (ksha, scope_sha(key.school, key.kind, key.activity_id, key.agent), key.school, str(key.kind),
                     key.activity_id, key.agent, key.registration, key.document_id, *values),
                )  # fmt: skip
            else:
                sql = "UPDATE lrs_documents SET content = ?, content_type = ?, etag = ?, updated_ms = ? WHERE key_sha = ?"
                params: tuple[object, ...] = (*values, ksha)
                if precondition is Precondition.ETAG:
                    if etag is None:
                        raise ValueError("Precondition.ETAG needs the expected etag")
                    sql += " AND etag = ?"
                    params += (etag.lower(),)
                cur.execute(sql, params)
            if cur.rowcount == 0:
                raise PreconditionFailed(f"{precondition.value} did not hold for {key.document_id!r}")
        return Document(content, content_type, new_etag, updated_ms)

    def delete(self, key: DocumentKey, precondition: Precondition = Precondition.NONE, etag: str | None = None) -> bool:
        ksha = key_sha(key)
        with self._tx() as cur:
            if precondition is Precondition.ABSENT:
                if cur.execute("SELECT 1 FROM lrs_documents WHERE key_sha = ?", (ksha,)).fetchone() is not None:
                    raise PreconditionFailed(f"{key.document_id!r} exists")
                return False
            sql = "DELETE FROM lrs_documents WHERE key_sha = ?"
            params: tuple[object, ...] = (ksha,)
            if precondition is Precondition.ETAG:
                if etag is None:
                    raise ValueError("Precondition.ETAG needs the expected etag")
                sql += " AND etag = ?"
                params += (etag.lower(),)
            deleted = cur.execute(sql, params).rowcount
            if deleted == 0 and precondition is not Precondition.NONE:
                raise PreconditionFailed(f"{precondition.value} did not hold for {key.document_id!r}")
        return deleted > 0

    def delete_states(self, school: str, activity_id: str, agent: str, registration: str | None) -> int:
        sql = "DELETE FROM lrs_documents WHERE scope_sha = ?"
        params: list[object] = [scope_sha(school, DocumentKind.STATE, activity_id, agent)]
        if registration is not None:
            sql += " AND registration = ?"
            params.append(registration)
        with self._tx() as cur:
            return cur.execute(sql, params).rowcount

    def forget_agent(self, school: str | None, agent: str) -> int:
        kinds = (str(DocumentKind.STATE), str(DocumentKind.AGENT_PROFILE))
        with self._tx() as cur:
            if school is None:
                return cur.execute(
                    "DELETE FROM lrs_documents WHERE agent = ? AND kind IN (?, ?)", (agent, *kinds)
                ).rowcount
            return cur.execute(
                "DELETE FROM lrs_documents WHERE school = ? AND agent = ? AND kind IN (?, ?)", (school, agent, *kinds)
            ).rowcount


__all__ = ["SqlDocumentStore", "content_etag", "key_sha", "scope_sha"]
