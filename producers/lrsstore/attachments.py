"""Statement attachment contents in the transactional store (``schemas.lrs_store.AttachmentStore``).

Content-addressed per school: the gateway writes them before the statements' Kafka
transaction and reads them back for ``attachments=true``, on SQLite or PostgreSQL,
without ClickHouse (writes keep working while it is down).
"""

from __future__ import annotations

from collections.abc import Sequence

from .database import Database

TABLE = "lrs_statement_attachments"
CHUNK = 400


def _ddl(dialect: str) -> list[str]:
    blob = "BLOB" if dialect == "sqlite" else "BYTEA"
    return [
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            school TEXT NOT NULL,
            sha2 TEXT NOT NULL,
            content_type TEXT NOT NULL,
            content {blob} NOT NULL,
            stored_ms BIGINT NOT NULL,
            PRIMARY KEY (school, sha2)
        )"""
    ]


class SqlAttachmentStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure(_ddl(db.dialect))

    @classmethod
    def open(cls, url: str) -> SqlAttachmentStore:
        return cls(Database(url))

    def close(self) -> None:
        self.db.close()

    def put(self, school: str, items: Sequence[tuple[str, str, bytes]], stored_ms: int) -> None:
        with self.db.transaction() as cur:
            for sha, ctype, content in sorted(items):
                cur.execute(
                    f"INSERT INTO {TABLE} (school, sha2, content_type, content, stored_ms) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (school, sha2) DO NOTHING",
                    (school, sha.lower(), ctype, content, stored_ms),
                )

    def delete(self, items: Sequence[tuple[str, str]]) -> int:
        """Erase the contents ``(school, sha2)`` (forget-learner: no statement declares them any more)."""
        erased = 0
        with self.db.transaction() as cur:
            for school, sha in sorted(items):
                cur.execute(f"DELETE FROM {TABLE} WHERE school = ? AND sha2 = ?", (school, sha.lower()))
                erased += max(cur.rowcount, 0)
        return erased

    def get(self, school: str, sha2s: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        wanted = sorted({s.lower() for s in sha2s})
        found: dict[str, tuple[str, bytes]] = {}
        with self.db.transaction(read_only=True) as cur:
            for i in range(0, len(wanted), CHUNK):
                chunk = wanted[i : i + CHUNK]
                marks = ",".join("?" * len(chunk))
                cur.execute(f"SELECT sha2, content_type, content FROM {TABLE} WHERE school = ? AND sha2 IN ({marks})",
                            (school, *chunk))  # fmt: skip
                for sha, ctype, content in cur.fetchall():
                    found[sha] = (ctype, bytes(content))
        return found
