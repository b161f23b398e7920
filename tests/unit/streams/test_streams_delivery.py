"""How the worker's consumer hands a fetched record to the streams (``ReadCommittedConsumer.wait_first``).

Faust 0.15 races each record's delivery against ``suspend_flow`` (a rebalance) in four
asyncio tasks. The consumer runs a delivery's first step inline instead; what must hold:
a delivery that finishes at once returns its result (and the unawaited flow waiter is
closed), one that must wait still finishes, one still waiting when the flow stops is
abandoned and cancelled as Faust's race does, and a stopped flow keeps Faust's race.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

from mode.utils.locks import Event

from streams.transport import Delivery, ReadCommittedConsumer


def consumer() -> ReadCommittedConsumer:
    """The consumer's state ``wait_first`` reads (Faust's Service events), without a Kafka transport."""
    c = ReadCommittedConsumer.__new__(ReadCommittedConsumer)
    c._loop = asyncio.get_running_loop()
    c._stopped, c._crashed, c.suspend_flow = Event(), Event(), Event()
    return c


def test_a_delivery_that_does_not_wait_runs_inline_and_returns_its_result():
    delivered = []

    async def callback(record):
        delivered.append(record)
        return "done"

    async def scenario():
        c = consumer()
        tasks_before = len(asyncio.all_tasks())
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a warning
            result = await c.wait_first(Delivery(callback(1)), c.suspend_flow.wait())
            gc.collect()
        assert len(asyncio.all_tasks()) == tasks_before
        return result

    result = asyncio.run(scenario())
    assert delivered == [1]
    assert result.results == ["done"] and not result.stopped


def test_a_delivery_that_waits_finishes_once_what_it_waits_for_is_there():
    steps = []

    async def callback(record, space):
        steps.append("start")
        await asyncio.sleep(0)  # a bare yield
        steps.append(await space)  # a future: a full buffer, flow control
        return record * 2

    async def scenario():
        c, loop = consumer(), asyncio.get_running_loop()
        space = loop.create_future()
        loop.call_later(0.05, space.set_result, "space")
        return steps, await c.wait_first(Delivery(callback(21, space)), c.suspend_flow.wait())

    steps, result = asyncio.run(scenario())
    assert steps == ["start", "space"]
    assert result.results == [42]


def test_a_delivery_still_waiting_when_the_flow_stops_is_abandoned_and_cancelled():
    async def scenario():
        c = consumer()
        never = asyncio.get_running_loop().create_future()
        ended = []

        async def callback(record):
            try:
                await never
            finally:
                ended.append(record)

        asyncio.get_running_loop().call_later(0.05, c.suspend_flow.set)
        result = await c.wait_first(Delivery(callback(7)), c.suspend_flow.wait())
        await asyncio.sleep(0)
        return result, ended, never

    result, ended, never = asyncio.run(scenario())
    assert all(not isinstance(d, Delivery) for d in result.done)  # the flow won the race
    assert ended == [7] and never.cancelled()


def test_a_stopped_flow_keeps_fausts_race():
    async def scenario():
        c = consumer()
        c.suspend_flow.set()
        started = []

        async def callback(record):
            started.append(record)

        result = await c.wait_first(Delivery(callback(3)), c.suspend_flow.wait())
        return result, started

    result, started = asyncio.run(scenario())
    # As in Faust: both tasks were started; the delivery, created first, ran too.
    assert started == [3] and not result.stopped
