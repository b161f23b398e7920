"""The real gateway app on a loopback port, with in-memory Kafka producer and store."""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import uuid
from typing import Any, Self

import requests
from aiohttp import web

from producers.gateway.app import GATEWAY_KEY, GatewayConfig, make_gateway_app
from producers.gateway.sender import TransactionalParameters, TransactionalSender

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


class Harness:
    """Start with ``with Harness() as h:``; ``h.post/put/get`` speak HTTP to it."""

    def __init__(self, config: GatewayConfig | None = None, **producer_kw: Any) -> None:
        self.config = config or GatewayConfig()
        self.store = FakeStore()
        self.producers: list[FakeProducer] = []
        self.committed: list[tuple[str, bytes, bytes]] = []
        self.sink_through: int | None = None
        self.producer_kw = producer_kw

        def on_commit(records):
            self.committed.extend(records)
            self.store.ingest_records(records)

        def factory():
            p = FakeProducer(on_commit, **self.producer_kw)
            self.producers.append(p)
            return p

        self.sender = TransactionalSender(
            TransactionalParameters("unused:9092", "xapi.statements", "txn-test", timeout_s=1.0, outcome_timeout_s=1.0),
            producer_factory=factory,
        )
        self.app = make_gateway_app(
            self.config,
            authenticator=FakeAuth(KEYS),
            sender=self.sender,
            store=self.store,
            consistent_through=lambda: self.sink_through,
            pseudonym_secret=b"test-secret",
        )
        self.gateway = self.app[GATEWAY_KEY]

    def __enter__(self) -> Self:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(self.app, access_log=None)
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
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.http.close()

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the gateway's event loop (its state is loop-owned)."""

        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.config.prefix}/statements"

    def headers(self, key: str = "key-a", version: str | None = "1.0.3", **extra: str) -> dict[str, str]:
        h = {"Authorization": basic(key)}
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

    def statements_in_kafka(self) -> list[dict[str, Any]]:
        import orjson

        return [s["statement"] for _, _, v in self.committed for s in orjson.loads(v)["statements"]]


def new_id() -> str:
    return str(uuid.uuid4())
