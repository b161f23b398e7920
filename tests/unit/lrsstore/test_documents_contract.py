"""The DocumentStore contract on the in-memory fake and on SQLite (a file per test)."""

from __future__ import annotations

import pytest

from producers.lrsstore.documents import SqlDocumentStore

from .contract import DocumentStoreContract
from .fake_documents import MemoryDocumentStore


class TestMemoryStore(DocumentStoreContract):
    @pytest.fixture
    def store(self):
        return MemoryDocumentStore()


class TestSqliteStore(DocumentStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        s = SqlDocumentStore(f"sqlite:///{tmp_path / 'lrs.sqlite3'}")
        yield s
        s.close()

    def test_two_stores_on_one_file_see_each_others_writes_and_conflicts(self, tmp_path):
        from schemas.lrs_store import Precondition, PreconditionFailed

        from .contract import key

        url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
        one, two = SqlDocumentStore(url), SqlDocumentStore(url)
        try:
            doc = one.put(key(), b"v1", "text/plain", 1)
            assert two.get(key()).content == b"v1"
            two.put(key(), b"v2", "text/plain", 2, Precondition.ETAG, doc.etag)
            with pytest.raises(PreconditionFailed):
                one.put(key(), b"v3", "text/plain", 3, Precondition.ETAG, doc.etag)
        finally:
            one.close()
            two.close()
