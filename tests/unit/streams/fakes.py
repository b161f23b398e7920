"""Fakes of what a stream stage needs from Faust and Kafka: events, a table, a sender."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(eq=False)
class Event:
    message: Message


class FakeTable:
    """A Faust table's local store and its item assignment."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def state(self, key: bytes) -> dict[str, Any]:
        return orjson.loads(self.data[key])


class FakeSender:
    """Records what is sent; each delivery is a future the test acknowledges (or not)."""

    def __init__(self, acknowledge: bool = True) -> None:
        self.acknowledge = acknowledge
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []
        self.dead: list[tuple[str, Any, Any, str]] = []
        self.pending: list[asyncio.Future] = []

    def _delivery(self) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if self.acknowledge:
            future.set_result(None)
        else:
            self.pending.append(future)
        return future

    async def send(self, topic, key, value, partition=None, headers=None):
        self.sent.append((topic, key, value, partition))
        return self._delivery()

    async def dead_letter(self, topic, msg, err, stage):
        self.dead.append((topic, msg, err, stage))
        return self._delivery()

    def to(self, topic: str) -> list[tuple[str, bytes | None, bytes, int | None]]:
        return [s for s in self.sent if s[0] == topic]
