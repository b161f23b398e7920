"""The DocumentStore contract on Debian's PostgreSQL (the store for several gateways)."""

from __future__ import annotations

import pytest

from producers.lrsstore.documents import SqlDocumentStore
from tests.unit.lrsstore.contract import DocumentStoreContract


@pytest.mark.postgres
class TestPostgresStore(DocumentStoreContract):
    @pytest.fixture
    def store(self, postgres_url):
        s = SqlDocumentStore(postgres_url)
        yield s
        s.close()

    def test_two_stores_on_one_database_share_documents_and_conflicts(self, postgres_url):
        from schemas.lrs_store import Precondition, PreconditionFailed
        from tests.unit.lrsstore.contract import key

        one, two = SqlDocumentStore(postgres_url), SqlDocumentStore(postgres_url)
        try:
            doc = one.put(key(), b"v1", "text/plain", 1)
            assert two.get(key()).content == b"v1"
            two.put(key(), b"v2", "text/plain", 2, Precondition.ETAG, doc.etag)
            with pytest.raises(PreconditionFailed):
                one.put(key(), b"v3", "text/plain", 3, Precondition.ETAG, doc.etag)
        finally:
            one.close()
            two.close()
