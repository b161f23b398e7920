"""The real gateway app on a loopback port, with in-memory Kafka producer and store."""

from __future__ import annotations

import asyncio
import base64
import tempfile
import threading
import time
import uuid
from typing import Any

import requests
from aiohttp import web

from benchmarks.ports import free_port
from producers.gateway.app import GATEWAY_KEY, GatewayConfig, make_gateway_app, make_runner
from producers.gateway.sender import TransactionalParameters, TransactionalSender
from producers.lrsstore.attachments import SqlAttachmentStore
from producers.lrsstore.statement_index import SqlStatementIndex

from .fakes import FakeAuth, FakeProducer, FakeStore

KEYS = {"key-a": "school-a", "key-b": "school-b"}


def basic(key: str, secret: str | None = None) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret or 'secret-' + key}".encode()).decode()


def statement(**extra: Any) -> dict[str, Any]:
    st = {
        "actor": {"objectType": "Agent", "mbox": "mailto:ada@example.com", "name": "Ada"},
        "verb": {
            "id": "http://adlnet.gov/expapi/verbs/completed",
            "display": {"en-US": "completed", "fr-FR": "terminé"},
        },
        "object": {
            "objectType": "Activity",
            "id": "http://example.com/activities/geology",
            "definition": {"name": {"en-US": "Geology", "fr-FR": "Géologie"}},
        },
    }
    st.update(extra)
    return st


class ServedApp:
    """Serves ``self.app`` on a free loopback port from a thread; ``post/put/get`` speak HTTP to it."""

    app: web.Application
    config: GatewayConfig

    def start(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.runner = make_runner(self.app)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.runner.setup())
            self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("gateway did not start")
        self.http = requests.Session()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.http.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the gateway's event loop (its state is loop-owned)."""

        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    @property
    def gateway(self):
        return self.app[GATEWAY_KEY]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.config.prefix}/statements"

    def auth(self, key: str) -> str:
        return basic(key)

    def headers(self, key: str = "key-a", version: str | None = "1.0.3", **extra: str) -> dict[str, str]:
        h = {"Authorization": self.auth(key)}
        if version is not None:
            h["X-Experience-API-Version"] = version
        h.update(extra)
        return h

    def post(self, body: Any, key: str = "key-a", version: str = "1.0.3", **kw: Any) -> requests.Response:
        return self.http.post(self.url, json=body, headers=self.headers(key, version), **kw)

    def put(self, body: Any, sid: str, key: str = "key-a", version: str = "1.0.3") -> requests.Response:
        return self.http.put(self.url, params={"statementId": sid}, json=body, headers=self.headers(key, version))

    def get(self, params: dict[str, str] | None = None, key: str = "key-a", version: str = "1.0.3", **headers: str):
        return self.http.get(self.url, params=params, headers=self.headers(key, version, **headers))


class Harness(ServedApp):
    """The real app with an in-memory Kafka producer and store; ``with Harness() as h:``."""

    def __init__(
        self, config: GatewayConfig | None = None, documents=None, origins=None, policies=None, versions=None,
        index_url: str | None = None, authenticator=None, read_committed=None, **producer_kw: Any,
    ) -> None:  # fmt: skip
        self.config = config or GatewayConfig()
        self.store = FakeStore()
        self.documents = documents
        # The accepted-id index: a private SQLite file (an embedded library, not a service).
        self._index_dir = tempfile.TemporaryDirectory(prefix="lp-index-")
        self.index_url = index_url or f"sqlite:///{self._index_dir.name}/index.sqlite3"
        self.index = SqlStatementIndex.open(self.index_url)
        self.producers: list[FakeProducer] = []
        self.committed: list[tuple[str, bytes, bytes]] = []
        self.sink_through: int | None = None
        self.producer_kw = producer_kw

        def on_commit(records):
            self.committed.extend(records)
            self.store.ingest_records(records)

        def factory(_transactional_id):
            p = FakeProducer(on_commit, **self.producer_kw)
            self.producers.append(p)
            return p

        self.sender = TransactionalSender(
            TransactionalParameters("unused:9092", "xapi.statements", "txn-test", timeout_s=1.0, outcome_timeout_s=1.0),
            producer_factory=factory,
            # What reading a failed commit's record back finds (see sender.was_committed).
            read_committed=read_committed or (lambda *a: None),
        )
        self.app = make_gateway_app(
            self.config,
            authenticator=authenticator or FakeAuth(KEYS, policies, versions),
            sender=self.sender,
            store=self.store,
            consistent_through=lambda: self.sink_through,
            pseudonym_secret=b"test-secret",
            documents=documents,
            origins=origins,
            index=self.index,
            attachments=SqlAttachmentStore(self.index.db),
        )

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.index.close()
            self._index_dir.cleanup()

    def statements_in_kafka(self) -> list[dict[str, Any]]:
        import orjson

        return [s["statement"] for _, _, v in self.committed for s in orjson.loads(v)["statements"]]


class LiveGateway(ServedApp):
    """The gateway as ``learnpulse gateway`` wires it: real Kafka, sinks and ClickHouse in this process.

    ``schools`` get credentials in a real (hashed) credentials file; ``keys[school]`` is
    ``(key, secret)``. Used only by integration tests.
    """

    def __init__(self, settings, schools: list[str], consistent_through=None) -> None:
        from learnpulse.commands.gateway import build_gateway_app, credentials_path
        from learnpulse.credentials import add_credential
        from learnpulse.pipeline import open_clickhouse, start_sinks

        self.settings = settings
        self.keys = {school: add_credential(credentials_path(settings), school) for school in schools}
        self.ch = open_clickhouse(settings)
        self.sinks = start_sinks(settings, self.ch)
        self.app = build_gateway_app(settings, self.ch, consistent_through)
        self.config = self.gateway.config

    def auth(self, school: str) -> str:
        return basic(*self.keys[school])

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.sinks.join()
            self.ch.close()
        if self.sinks.errors:
            raise AssertionError(f"sink failed: {self.sinks.errors[0]!r}") from self.sinks.errors[0]

    def wait_readable(self, school: str, sid: str, timeout: float = 60.0, voided: bool = False) -> requests.Response:
        """GET the statement once the sink has written it to ClickHouse (fails after ``timeout``).

        The gateway answers reads by id from its accepted-statement index before the sink
        writes, so a readable statement is not yet a row: callers count rows next.
        """
        deadline = time.monotonic() + timeout
        name = "voidedStatementId" if voided else "statementId"
        while True:
            self._raise_sink_errors()
            r = self.get({name: sid}, key=school)
            if time.monotonic() > deadline or (r.status_code != 404 and self._stored(school, sid)):
                return r
            time.sleep(0.2)

    def _stored(self, school: str, sid: str) -> bool:
        ((n,),) = self.ch.query(
            "SELECT count() FROM {db}.statements_raw WHERE school = {s:String} AND statement_id = toUUID({i:String})",
            {"s": school, "i": sid},
        )
        return int(n) > 0

    def _raise_sink_errors(self) -> None:
        if self.sinks.errors:
            raise AssertionError(f"sink failed: {self.sinks.errors[0]!r}") from self.sinks.errors[0]


def new_id() -> str:
    return str(uuid.uuid4())
