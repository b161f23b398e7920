"""``learnpulse gateway`` serves on the loop ``gateway.event_loop`` names (uvloop by default)."""

from __future__ import annotations

import asyncio

import uvloop

from learnpulse.commands.gateway import event_loop_factory
from learnpulse.settings import GatewaySettings


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_default_loop_is_uvloop():
    factory = event_loop_factory(GatewaySettings().event_loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        assert isinstance(runner.run(_running_loop()), uvloop.Loop)


def test_asyncio_setting_keeps_the_standard_loop(monkeypatch):
    monkeypatch.setenv("LEARNPULSE_GATEWAY__EVENT_LOOP", "asyncio")
    from learnpulse.settings import Settings

    factory = event_loop_factory(Settings().gateway.event_loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        assert not isinstance(runner.run(_running_loop()), uvloop.Loop)
