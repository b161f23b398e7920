"""The DocumentStore contract, run against the in-memory fake, SQLite and PostgreSQL.

A subclass provides the ``store`` fixture; every test here must hold for every store.
"""

from __future__ import annotations

import hashlib
import threading

import pytest

from schemas.lrs_store import DocumentKey, DocumentKind, Precondition, PreconditionFailed

STATE = DocumentKind.STATE
ACT = "http://example.com/activities/geology?lesson=1"
AGENT = "a" * 64


def key(doc_id: str = "resume", school: str = "school-a", kind: DocumentKind = STATE, registration: str = "",
        agent: str = AGENT, activity: str = ACT) -> DocumentKey:  # fmt: skip
    if kind is DocumentKind.ACTIVITY_PROFILE:
        agent, registration = "", ""
    if kind is DocumentKind.AGENT_PROFILE:
        activity, registration = "", ""
    return DocumentKey(school, kind, activity, agent, registration, doc_id)


class DocumentStoreContract:
    def test_put_then_get_returns_bytes_type_sha1_etag_and_time(self, store):
        content = bytes(range(256)) * 3
        doc = store.put(key(), content, "application/octet-stream", 1_000)
        assert doc.etag == hashlib.sha1(content).hexdigest()
        got = store.get(key())
        assert (got.content, got.content_type, got.etag, got.updated_ms) == (
            content, "application/octet-stream", doc.etag, 1_000,
        )  # fmt: skip

    def test_get_of_absent_is_none(self, store):
        assert store.get(key("nothing")) is None

    def test_put_without_precondition_replaces(self, store):
        store.put(key(), b"one", "text/plain", 1)
        store.put(key(), b'{"a":1}', "application/json", 2)
        got = store.get(key())
        assert (got.content, got.content_type, got.updated_ms) == (b'{"a":1}', "application/json", 2)

    def test_absent_precondition_creates_once(self, store):
        store.put(key(), b"first", "text/plain", 1, Precondition.ABSENT)
        with pytest.raises(PreconditionFailed):
            store.put(key(), b"second", "text/plain", 2, Precondition.ABSENT)
        assert store.get(key()).content == b"first"

    def test_exists_precondition(self, store):
        with pytest.raises(PreconditionFailed):
            store.put(key(), b"x", "text/plain", 1, Precondition.EXISTS)
        assert store.get(key()) is None
        store.put(key(), b"x", "text/plain", 1)
        store.put(key(), b"y", "text/plain", 2, Precondition.EXISTS)
        assert store.get(key()).content == b"y"

    def test_etag_precondition_is_compare_and_set(self, store):
        first = store.put(key(), b"v1", "text/plain", 1)
        second = store.put(key(), b"v2", "text/plain", 2, Precondition.ETAG, first.etag)
        with pytest.raises(PreconditionFailed):
            store.put(key(), b"v3", "text/plain", 3, Precondition.ETAG, first.etag)
        assert store.get(key()).content == b"v2"
        # ETags compare case-insensitively (hex).
        store.put(key(), b"v4", "text/plain", 4, Precondition.ETAG, second.etag.upper())
        with pytest.raises(PreconditionFailed):
            store.put(key("absent"), b"v", "text/plain", 1, Precondition.ETAG, first.etag)

    def test_delete_preconditions(self, store):
        doc = store.put(key(), b"v1", "text/plain", 1)
        with pytest.raises(PreconditionFailed):
            store.delete(key(), Precondition.ETAG, "0" * 40)
        with pytest.raises(PreconditionFailed):
            store.delete(key(), Precondition.ABSENT)
        assert store.get(key()) is not None
        assert store.delete(key(), Precondition.ETAG, doc.etag) is True
        assert store.delete(key()) is False
        with pytest.raises(PreconditionFailed):
            store.delete(key(), Precondition.EXISTS)

    def test_keys_are_distinct_by_every_part(self, store):
        keys = [
            key(), key(school="school-b"), key(registration="6f1b3a52-4d27-4f50-9a6c-1a2b3c4d5e6f"),
            key(agent="b" * 64), key(activity=ACT + "x"), key("resume2"),
            key(kind=DocumentKind.ACTIVITY_PROFILE), key(kind=DocumentKind.AGENT_PROFILE),
        ]  # fmt: skip
        for i, k in enumerate(keys):
            store.put(k, str(i).encode(), "text/plain", i)
        assert [store.get(k).content for k in keys] == [str(i).encode() for i in range(len(keys))]

    def test_long_ids_are_stored_whole(self, store):
        long_activity = "http://example.com/" + "x" * 5000
        long_id = "id-" + "é" * 3000
        k = key(long_id, activity=long_activity)
        store.put(k, b"v", "text/plain", 1)
        assert store.get(k).content == b"v"
        assert [i for i, _ in store.list_ids("school-a", STATE, long_activity, AGENT, None, None)] == [long_id]

    def test_list_ids_since_registration_and_school(self, store):
        reg = "6f1b3a52-4d27-4f50-9a6c-1a2b3c4d5e6f"
        store.put(key("a"), b"1", "text/plain", 100)
        store.put(key("b", registration=reg), b"1", "text/plain", 200)
        store.put(key("a", registration=reg), b"1", "text/plain", 300)
        store.put(key("c", school="school-b"), b"1", "text/plain", 400)
        assert sorted(store.list_ids("school-a", STATE, ACT, AGENT, None, None)) == [("a", 300), ("b", 200)]
        assert sorted(store.list_ids("school-a", STATE, ACT, AGENT, reg, None)) == [("a", 300), ("b", 200)]
        assert store.list_ids("school-a", STATE, ACT, AGENT, "", None) == [("a", 100)]
        # since is exclusive
        assert sorted(store.list_ids("school-a", STATE, ACT, AGENT, None, 200)) == [("a", 300)]
        assert store.list_ids("school-a", STATE, ACT, AGENT, "", 100) == []
        assert store.list_ids("school-b", STATE, ACT, AGENT, None, None) == [("c", 400)]

    def test_delete_states_by_registration_or_all(self, store):
        reg = "6f1b3a52-4d27-4f50-9a6c-1a2b3c4d5e6f"
        store.put(key("a"), b"1", "text/plain", 1)
        store.put(key("b", registration=reg), b"1", "text/plain", 1)
        store.put(key("c", agent="b" * 64), b"1", "text/plain", 1)
        store.put(key("p", kind=DocumentKind.ACTIVITY_PROFILE), b"1", "text/plain", 1)
        assert store.delete_states("school-a", ACT, AGENT, reg) == 1
        assert store.get(key("a")) is not None
        assert store.delete_states("school-a", ACT, AGENT, None) == 1
        assert store.get(key("a")) is None
        assert store.get(key("c", agent="b" * 64)) is not None
        assert store.get(key("p", kind=DocumentKind.ACTIVITY_PROFILE)) is not None

    def test_forget_agent_erases_states_and_agent_profiles_of_that_school_only(self, store):
        store.put(key("s"), b"1", "text/plain", 1)
        store.put(key("p", kind=DocumentKind.AGENT_PROFILE), b"1", "text/plain", 1)
        store.put(key("s", school="school-b"), b"1", "text/plain", 1)
        store.put(key("s", agent="b" * 64), b"1", "text/plain", 1)
        store.put(key("ap", kind=DocumentKind.ACTIVITY_PROFILE), b"1", "text/plain", 1)
        assert store.forget_agent("school-a", AGENT) == 2
        assert store.get(key("s")) is None and store.get(key("p", kind=DocumentKind.AGENT_PROFILE)) is None
        assert store.get(key("s", school="school-b")) is not None
        assert store.get(key("s", agent="b" * 64)) is not None
        assert store.get(key("ap", kind=DocumentKind.ACTIVITY_PROFILE)) is not None
        # None: in every school
        assert store.forget_agent(None, AGENT) == 1
        assert store.get(key("s", school="school-b")) is None
        assert store.get(key("s", agent="b" * 64)) is not None

    def test_concurrent_compare_and_set_loses_no_update(self, store):
        """Threads increment one counter by read + put-if-ETag, retrying on failure."""
        store.put(key("counter"), b"0", "text/plain", 0)
        per_thread, threads = 25, 4
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(per_thread):
                    while True:
                        doc = store.get(key("counter"))
                        try:
                            store.put(key("counter"), str(int(doc.content) + 1).encode(), "text/plain", 1,
                                      Precondition.ETAG, doc.etag)  # fmt: skip
                            break
                        except PreconditionFailed:
                            continue
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(120)
        assert not errors
        assert int(store.get(key("counter")).content) == per_thread * threads
