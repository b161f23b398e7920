"""Faust's per-record work the worker leaves out (``streams.faustutil.RawSchema``,
``streams.app.WorkerApp``): the same events reach the stages, with fewer calls per record."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types.tuples import Message

from streams.app import StreamsParameters, create_app
from streams.faustutil import RawSchema


@pytest.fixture
def app(tmp_path):
    return create_app(StreamsParameters(
        bootstrap="127.0.0.1:9", topic_prefix="t.", app_id="faust-calls", datadir=tmp_path, web_port=6066,
    ))


def message(key: bytes | None, value: bytes | None) -> Message:
    return Message("t.xapi.statements", 3, 17, 1_767_225_600.0, 0, [("h", b"v")], key, value, None)


@pytest.mark.parametrize(("key", "value"), [(b"learner", b'{"v":1}'), (None, b"x"), (b"k", None), (b"", b"")])
def test_the_raw_schema_makes_the_event_faust_makes_for_raw_bytes(app, key, value):
    faust_decode = faust.Schema(key_type=bytes, value_type=bytes).compile(app)
    raw_decode = RawSchema().compile(app)
    msg = message(key, value)
    theirs, ours = asyncio.run(faust_decode(msg)), asyncio.run(raw_decode(msg))
    assert type(ours) is type(theirs)
    assert (ours.key, ours.value, ours.headers, ours.message) == (theirs.key, theirs.value, theirs.headers, msg)
    assert ours.app is app


def test_every_topic_the_worker_reads_decodes_with_the_raw_schema(app):
    read = [topic for agent in app.agents.values() for topic in [agent.channel]]
    assert read  # the learner and cohort agents
    for channel in read:
        assert isinstance(channel.schema, RawSchema), channel


def test_faust_monitor_is_not_a_sensor_of_the_worker(app):
    list(app.on_init_dependencies())  # what the app does when it starts
    assert app.monitor not in set(app.sensors)
    assert not list(app.sensors)  # no sensor is called per record
