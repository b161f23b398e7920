"""An in-memory :class:`schemas.lrs_store.DocumentStore` for unit tests of the HTTP layer.

It passes the same contract suite (``contract.py``) as the SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import hashlib
import threading

from schemas.lrs_store import Document, DocumentKey, DocumentKind, Precondition, PreconditionFailed


class MemoryDocumentStore:
    def __init__(self) -> None:
        self._docs: dict[DocumentKey, Document] = {}
        self._lock = threading.Lock()

    def get(self, key: DocumentKey) -> Document | None:
        with self._lock:
            return self._docs.get(key)

    def _check(self, key: DocumentKey, precondition: Precondition, etag: str | None) -> None:
        current = self._docs.get(key)
        ok = {
            Precondition.NONE: True,
            Precondition.ABSENT: current is None,
            Precondition.EXISTS: current is not None,
            Precondition.ETAG: current is not None and etag is not None and current.etag == etag.lower(),
        }[precondition]
        if not ok:
            raise PreconditionFailed(precondition.value)

    def put(self, key, content, content_type, updated_ms, precondition=Precondition.NONE, etag=None) -> Document:
        with self._lock:
            self._check(key, precondition, etag)
            doc = Document(bytes(content), content_type, hashlib.sha1(content).hexdigest(), updated_ms)
            self._docs[key] = doc
            return doc

    def delete(self, key, precondition=Precondition.NONE, etag=None) -> bool:
        with self._lock:
            self._check(key, precondition, etag)
            return self._docs.pop(key, None) is not None

    def _scope(self, school, kind, activity_id, agent, registration):
        return [
            k for k in self._docs
            if (k.school, k.kind, k.activity_id, k.agent) == (school, kind, activity_id, agent)
            and (registration is None or k.registration == registration)
        ]  # fmt: skip

    def delete_states(self, school, activity_id, agent, registration) -> int:
        with self._lock:
            keys = self._scope(school, DocumentKind.STATE, activity_id, agent, registration)
            for k in keys:
                del self._docs[k]
            return len(keys)

    def list_ids(self, school, kind, activity_id, agent, registration, since_ms) -> list[tuple[str, int]]:
        with self._lock:
            latest: dict[str, int] = {}
            for k in sorted(self._scope(school, kind, activity_id, agent, registration), key=lambda k: k.document_id):
                updated = self._docs[k].updated_ms
                if since_ms is None or updated > since_ms:
                    latest[k.document_id] = max(updated, latest.get(k.document_id, 0))
            return list(latest.items())

    def forget_agent(self, school, agent) -> int:
        with self._lock:
            keys = [
                k for k in self._docs
                if (school is None or k.school == school) and k.agent == agent and k.kind in (DocumentKind.STATE, DocumentKind.AGENT_PROFILE)
            ]  # fmt: skip
            for k in keys:
                del self._docs[k]
            return len(keys)
