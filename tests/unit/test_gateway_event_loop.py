"""``learnpulse gateway`` serves on the loop ``gateway.event_loop`` names (uvloop by default)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from learnpulse.commands.gateway import event_loop_factory
from learnpulse.settings import GatewaySettings


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


# A dependency (pyproject.toml): a fresh install always has it; a worktree whose .venv
# predates it skips until `make setup` runs again.
uvloop = pytest.importorskip("uvloop", reason="uvloop is a dependency: run `make setup` again")


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


def test_without_uvloop_installed_the_standard_loop_serves(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert event_loop_factory("uvloop") is None
    assert "uvloop is not installed" in caplog.text
