"""The worker app's flow control into the streams' queues (``streams.transport.ResumingFlowControl``).

faust-streaming 0.15 resumes the flow a second time at the end of a table recovery, after
the fetcher, running since the first resume, has queued records of the stream partitions;
mode's flow control cleared every stream queue at each resume, so those records were thrown
away unacknowledged and never read again (a restarted worker whose recovery read its
changelogs processed nothing). What must hold: a resume of a running flow keeps what is
queued; the resume that ends a suspension (a rebalance) still clears it.
"""

from __future__ import annotations

import asyncio

import pytest

from streams.app import StreamsParameters, create_app


@pytest.fixture
def app(tmp_path):
    return create_app(StreamsParameters(
        bootstrap="127.0.0.1:9", topic_prefix="t.", app_id="flow-control", datadir=tmp_path, web_port=6067,
    ))


def stream_queue(app):
    """The queue a stream reads from (a channel's: ``clear_on_resume``, managed by the app's flow control)."""
    return app.channel().clone(is_iterator=True).queue


def test_a_second_resume_keeps_what_the_fetcher_queued_since_the_first(app):
    async def scenario():
        queue = stream_queue(app)
        app.flow_control.resume()  # the recovery resumes the flow and starts the fetcher
        queue.put_nowait("a record fetched while the recovery seeks to the committed offsets")
        app.flow_control.resume()  # Recovery.on_recovery_completed, after that seek
        assert app.flow_control.is_active()
        assert queue.qsize() == 1, "the record was dropped unacknowledged: nothing reads it again"

    asyncio.run(scenario())


def test_the_resume_after_a_rebalance_still_clears_what_the_revoked_assignment_left(app):
    async def scenario():
        queue = stream_queue(app)
        app.flow_control.resume()
        queue.put_nowait("a record of the assignment being revoked")
        app.flow_control.suspend()  # App._on_partitions_revoked
        assert not app.flow_control.is_active()
        app.flow_control.resume()
        assert app.flow_control.is_active()
        assert queue.qsize() == 0

    asyncio.run(scenario())
