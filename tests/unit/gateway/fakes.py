"""In-memory stand-ins for the gateway's seams: a Kafka producer and the statement store.

``FakeStore`` evaluates the StatementStore contract in plain Python over the rows
``sinks.lrs_rows`` makes, so the same contract suite runs against it and against the
real ClickHouse store (tests/integration/test_gateway_store.py).
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from collections.abc import Sequence

import orjson

from schemas.envelope import StatementEnvelope
from schemas.xapi.timefmt import parse_ms
from sinks.lrs_rows import LRS_ACTIVITIES, LRS_AGENTS, LRS_STATEMENTS, agent_key, lrs_rows


class _Future:
    def __init__(self, error: BaseException | None, offset: int | None = None) -> None:
        self.exception = error
        # kafka-python's RecordMetadata once acknowledged (partition 0 here).
        self.value = SimpleNamespace(partition=0, offset=offset) if error is None and offset is not None else None

    def succeeded(self) -> bool:
        return self.exception is None


class FakeProducer:
    """Enough of kafka-python's transactional KafkaProducer; commits deliver to ``on_commit``."""

    def __init__(
        self,
        on_commit,
        fail_send: BaseException | None = None,
        block: threading.Event | None = None,
        refuse=None,
        fail_commit: BaseException | None = None,
        commit_lands: bool = False,
    ):
        self.on_commit = on_commit
        self.fail_send = fail_send
        # ``fail_commit``: raised by commit_transaction (EndTxn sent, its answer lost or an
        # error); ``commit_lands``: the coordinator had the commit anyway (records delivered).
        self.fail_commit = fail_commit
        self.commit_lands = commit_lands
        # ``refuse(value)``: the error the broker answers for this record, or None.
        self.refuse = refuse
        self.block = block
        self.open: list[tuple[str, bytes, bytes]] | None = None
        self.transactions = 0
        self.closed = False
        self.offset = 0  # of the next record (one partition)
        self.begun = 0  # transactions begun

    def init_transactions(self) -> None:
        pass

    def begin_transaction(self) -> None:
        self.open = []
        self.begun += 1

    def send(self, topic, key=None, value=None):
        self.open.append((topic, key, value))
        # ``fail_send``: an exception, or a callable giving one (or None) at send time.
        if self.refuse is not None and (refused := self.refuse(value)) is not None:
            return _Future(refused)
        self.offset += 1
        return _Future(self.fail_send() if callable(self.fail_send) else self.fail_send, self.offset - 1)

    def flush(self, timeout=None) -> None:
        if self.block is not None:
            self.block.wait()

    def commit_transaction(self) -> None:
        records, self.open = self.open, None
        if self.fail_commit is not None:
            if self.commit_lands:
                self.on_commit(records)
            raise self.fail_commit
        self.transactions += 1
        self.on_commit(records)

    def close(self, timeout=None) -> None:
        self.closed = True


class FakeRdProducer:
    """Enough of confluent-kafka's transactional Producer, with FakeProducer's parameters.

    ``refuse(value)``/``fail_send`` give kafka-python errors (the tests are shared): a
    MessageSizeTooLargeError becomes librdkafka's MSG_SIZE_TOO_LARGE delivery error, any
    other a transport error. As in librdkafka, a failed delivery makes the commit abortable.
    ``fail_commit``: a confluent-kafka KafkaError raised by commit_transaction as is, or a
    kafka-python error raised as a fatal one (EndTxn sent, then the producer failed);
    ``commit_lands``: the coordinator had the commit anyway; ``fail_abort``: abort_transaction
    raises it (a confluent-kafka KafkaError).
    ``hold_after_failure``: as librdkafka once a delivery failed (the transaction must be aborted),
    the transaction's other records are not sent: flush waits its whole timeout for them.
    ``purge_first``: as librdkafka may, the transaction's other records are purged as soon as one
    failed, and their ``_PURGE_QUEUE`` reports come before the failed record's own.
    """

    def __init__(self, conf: dict, on_commit, fail_send=None, block: threading.Event | None = None, refuse=None,
                 fail_commit=None, commit_lands: bool = False, fail_abort=None,
                 hold_after_failure: bool = False, purge_first: bool = False):  # fmt: skip
        self.delivered = conf["on_delivery"]
        self.only_errors = conf.get("delivery.report.only.error", False)
        self.offset = 0  # of the next record (one partition)
        self.on_commit = on_commit
        self.fail_send = fail_send
        self.fail_commit = fail_commit
        self.commit_lands = commit_lands
        self.fail_abort = fail_abort
        self.refuse = refuse
        self.block = block
        self.open: list[tuple[str, bytes, bytes]] | None = None
        self.failures: list = []
        self.failed = False
        self.hold_after_failure = hold_after_failure
        self.purge_first = purge_first
        self.transactions = 0
        self.begun = 0  # transactions begun
        self.closed = False

    @staticmethod
    def _rd_error(err: BaseException):
        from confluent_kafka import KafkaError as RdError
        from kafka.errors import MessageSizeTooLargeError

        code = RdError.MSG_SIZE_TOO_LARGE if isinstance(err, MessageSizeTooLargeError) else RdError._TRANSPORT
        return RdError(code, str(err))

    def init_transactions(self, timeout=None) -> None:
        pass

    def list_topics(self, topic=None, timeout=None):
        return SimpleNamespace(topics={})  # partitions unknown: the client's own partitioner

    def begin_transaction(self) -> None:
        self.open, self.failures, self.failed, self.sent = [], [], False, []
        self.begun += 1

    def produce(self, topic, value=None, key=None, partition=None) -> None:
        self.open.append((topic, key, value))
        error = self.refuse(value) if self.refuse is not None else None
        if error is None:
            error = self.fail_send() if callable(self.fail_send) else self.fail_send
        if error is not None:
            self.failures.append(self._rd_error(error))
        else:
            self.sent.append(self.offset)
            self.offset += 1

    def flush(self, timeout=None) -> int:
        if self.block is not None:
            self.block.wait()
        failures, self.failures = self.failures, []
        if failures and self.purge_first:
            from confluent_kafka import KafkaError as RdError

            purged, self.sent = getattr(self, "sent", []), []
            for _ in purged:
                self.delivered(RdError(RdError._PURGE_QUEUE, "purged"), None)
        for err in failures:
            self.failed = True
            self.delivered(err, None)
        if self.failed and self.hold_after_failure and getattr(self, "sent", []):
            time.sleep(timeout if timeout is not None and timeout >= 0 else 3600)
            return len(self.sent)
        sent, self.sent = getattr(self, "sent", []), []
        if not self.only_errors:
            for offset in sent:
                self.delivered(None, SimpleNamespace(partition=lambda: 0, offset=lambda o=offset: o))
        return 0

    def commit_transaction(self, timeout=None) -> None:
        from confluent_kafka import KafkaError as RdError
        from confluent_kafka import KafkaException

        self.flush(timeout)
        if self.failed:
            raise KafkaException(RdError(RdError._STATE, "a record failed", txn_requires_abort=True))
        records, self.open = self.open, None
        if self.fail_commit is not None:
            if self.commit_lands:
                self.on_commit(records)
            err = self.fail_commit
            if not isinstance(err, RdError):
                err = RdError(RdError._FENCED, str(err), fatal=True)
            raise KafkaException(err)
        self.transactions += 1
        self.on_commit(records)

    def abort_transaction(self, timeout=None) -> None:
        from confluent_kafka import KafkaException

        if self.fail_abort is not None:
            raise KafkaException(self.fail_abort)
        self.open, self.sent, self.failures, self.failed = None, [], [], False

    def purge(self, *a, **kw) -> None:
        self.failures = []

    def close(self) -> bool:
        self.closed = True
        return True


def fake_factory(client: str, producers: list, on_commit, make=None, **kw):
    """A sender's producer factory on a stand-in of ``client``'s producer ("kafka-python" or
    "librdkafka": the real adapter over a stand-in librdkafka); the stand-ins go to ``producers``.

    ``make(client_class)``: the stand-in's class (a subclass of FakeProducer/FakeRdProducer).
    """

    def factory(_transactional_id):
        if client == "kafka-python":
            p = (make(FakeProducer) if make else FakeProducer)(on_commit, **kw)
            producers.append(p)
            return p
        from producers.gateway.rdkafka import RdKafkaTransactionalProducer

        def inner(conf):
            producers.append((make(FakeRdProducer) if make else FakeRdProducer)(conf, on_commit, **kw))
            return producers[-1]

        return RdKafkaTransactionalProducer({}, "t", init_timeout_s=1, commit_timeout_s=1, producer_class=inner)

    return factory


CLIENTS = ("kafka-python", "librdkafka")


class FakeStore:
    """StatementStore over in-memory rows; ``ingest`` plays the Kafka → sink part."""

    def __init__(self) -> None:
        self.raw: dict[tuple[str, str], tuple[bytes, int]] = {}
        self.rows: dict[str, list[tuple]] = {}
        self.files: dict[tuple[str, str], tuple[str, bytes]] = {}

    def ingest(self, value: bytes) -> None:
        env = StatementEnvelope.decode(value)
        for entry in env.entries:
            st = entry.statement
            self.raw.setdefault((env.school, st["id"].lower()), (orjson.dumps(st), parse_ms(st["stored"])))
        for table, rows in lrs_rows(env).items():
            self.rows.setdefault(table, []).extend(rows)

    def ingest_records(self, records) -> None:
        for _topic, _key, value in records:
            self.ingest(value)

    # -- StatementStore ----------------------------------------------------------------
    def _voided(self, school: str) -> set[str]:
        return {str(r[6]) for r in self.rows.get(LRS_STATEMENTS, []) if r[0] == school and r[7]}

    def lookup(self, school: str, ids: Sequence[str]) -> dict[str, bytes]:
        return {sid: self.raw[(school, sid)][0] for sid in ids if (school, sid) in self.raw}

    def get(self, school: str, statement_id: str, voided: bool) -> tuple[bytes, int] | None:
        found = self.raw.get((school, statement_id))
        if found is None or (statement_id in self._voided(school)) != voided:
            return None
        return found

    def _matches(self, school, sid, agent, verb, activity, registration, related_agents, related_activities, depth):
        row = self._row(school, sid)
        if row is None:
            return False
        direct = (
            (verb is None or row[3] == verb)
            and (registration is None or row[4] == registration)
            and (agent is None or any(
                r[0] == school and r[1] == agent_key(agent) and str(r[2]) == sid and (related_agents or r[3])
                for r in self.rows.get(LRS_AGENTS, [])))
            and (activity is None or any(
                r[0] == school and r[1] == activity and str(r[2]) == sid and (related_activities or r[3])
                for r in self.rows.get(LRS_ACTIVITIES, [])))
        )  # fmt: skip
        if direct or depth == 0 or not row[5]:
            return direct
        return self._matches(
            school, str(row[6]), agent, verb, activity, registration, related_agents, related_activities, depth - 1
        )

    def _row(self, school: str, sid: str):
        for r in self.rows.get(LRS_STATEMENTS, []):
            if r[0] == school and str(r[2]) == sid:
                return r
        return None

    def query(self, school, *, agent, verb, activity, registration, related_activities, related_agents,
              since_ms, until_ms, ascending, after, limit):  # fmt: skip
        voided = self._voided(school)
        keys = sorted(
            {(r[1], str(r[2])) for r in self.rows.get(LRS_STATEMENTS, []) if r[0] == school}, reverse=not ascending
        )
        out = []
        for ms, sid in keys:
            if sid in voided or (since_ms is not None and ms <= since_ms) or (until_ms is not None and ms > until_ms):
                continue
            if after is not None and ((ms, sid) <= after if ascending else (ms, sid) >= after):
                continue
            if not self._matches(
                school, sid, agent, verb, activity, registration, related_agents, related_activities, 3
            ):
                continue
            out.append((ms, sid, self.raw[(school, sid)][0]))
        return out[:limit], len(out) > limit

    def attachments(self, school: str, sha2s: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        return {sha: self.files[(school, sha)] for sha in sha2s if (school, sha) in self.files}

    def put_attachments(self, school: str, items, stored_ms: int) -> None:
        for sha, ctype, data in items:
            self.files[(school, sha)] = (ctype, data)


class FakeAuth:
    """``key`` → school; the secret is ``secret-<key>``."""

    def __init__(self, keys: dict[str, str], policies=None, versions=None) -> None:
        self.keys = keys
        self.policies = policies or {}
        self.versions = versions or {}

    def cached(self, key: str, secret: str) -> tuple[bool, str | None]:
        return True, self.keys.get(key) if secret == f"secret-{key}" else None

    def policy(self, key: str):
        from schemas.policy import STRICT_POLICY

        return self.policies.get(key, STRICT_POLICY)

    def xapi_version(self, key: str, secret: str) -> str | None:
        return self.versions.get(key) if self.cached(key, secret)[1] is not None else None

    def authenticate(self, key: str, secret: str) -> str | None:
        return self.cached(key, secret)[1]
