"""When has the pipeline caught up? Every consumer group's committed offsets at the end of
their partitions (within one offset: a transaction's commit marker takes one), or a lag that
has not moved for 90 s (the markers of an aborted transaction are never consumed); where
ClickHouse can be read while the pipeline runs, also every acknowledged statement in
``statements``; and all of it unchanged for a while (the worker emits figures after the load)."""

from __future__ import annotations

import logging
import time

from . import tables

logging.getLogger("kafka").setLevel(logging.CRITICAL)


# Groups of ours that stop on purpose: the replay scenario's sink reads every topic once and
# is stopped, so its lag grows with every later record and is not the pipeline's.
STOPPED_GROUP_PREFIXES = ("faults-replay-",)


def group_offsets(bootstrap: str) -> dict[tuple[str, str, int], tuple[int, int]]:
    """``(group, topic, partition) → (committed, end)`` for every group on the cluster."""
    from kafka import KafkaAdminClient, KafkaConsumer

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        return read_group_offsets(admin, consumer)
    finally:
        consumer.close()
        admin.close()


def read_group_offsets(admin, consumer) -> dict[tuple[str, str, int], tuple[int, int]]:
    """:func:`group_offsets` through clients the caller keeps (a sampler asking every 2 s)."""
    consumer.topics()  # metadata of every topic (internal ones too), or end_offsets fails on them
    out = {}
    for found in admin.list_groups():
        group = found["group_id"] if isinstance(found, dict) else found[0]
        committed = admin.list_group_offsets({group: None}).get(group, {})
        if not committed:
            continue
        ends = consumer.end_offsets(list(committed))
        for tp, meta in committed.items():
            out[(group, tp.topic, tp.partition)] = (meta.offset, ends.get(tp, meta.offset))
    return out


def wait_caught_up(pipeline, schools: list[str], acked: int, deadline_s: float, echo, quiet_s: float = 15):
    """``(seconds, True)`` once caught up (see module doc), ``(deadline_s, False)`` if not by then."""
    started = time.monotonic()
    last: object = None
    same_since = time.monotonic()
    while True:
        state = _state(pipeline, schools, acked)
        if state != last:
            last, same_since = state, time.monotonic()
        elapsed = time.monotonic() - started
        # A lag that stays: wait out a dead member's session (60 s) before believing it.
        quiet = quiet_s if state is not None and state[1] == 0 else max(quiet_s, 90)
        if state is not None and state[0] and time.monotonic() - same_since >= quiet:
            if state[1]:
                echo(f"    {state[1]} records never consumed (aborted transactions' markers, or stuck): going on")
            return time.monotonic() - started - quiet, True
        if elapsed > deadline_s:
            echo(f"    NOT caught up after {deadline_s:.0f}s: {_describe(state)}")
            return deadline_s, False
        if int(elapsed) % 15 < 3:
            echo(f"    waiting to catch up ({elapsed:.0f}s): {_describe(state)}")
        time.sleep(3)


def _state(pipeline, schools: list[str], acked: int):
    try:
        offsets = group_offsets(pipeline.kafka_bootstrap)
    except Exception as err:  # noqa: BLE001 - Kafka still coming back: not caught up
        _last_error[:] = [f"Kafka: {err!r}"[:160]]
        return None
    behind = sum(
        max(0, end - committed - 1)
        for (group, _topic, _partition), (committed, end) in offsets.items()
        if not group.startswith(STOPPED_GROUP_PREFIXES)
    )
    counts: tuple[int, ...] = ()
    in_ch = True
    if pipeline.clickhouse_live():
        try:
            with pipeline.clickhouse() as ch:
                counts = (tables.statements_final(ch, schools), tables.engagement_day_sum(ch, schools))
            in_ch = counts[0] >= acked
        except Exception as err:  # noqa: BLE001 - ClickHouse still coming back
            _last_error[:] = [f"ClickHouse: {err!r}"[:160]]
            return None
    # Caught up: nothing left to read, or what is left stays the same (a partition ending in
    # an aborted transaction keeps a lag of its markers), and every acknowledged statement
    # stored; decided once this holds for `quiet_s` (the worker emits figures for a while).
    return (in_ch, behind, counts)


_last_error: list[str] = []


def _describe(state) -> str:
    if state is None:
        return f"not answering ({_last_error[0] if _last_error else '?'})"
    _, behind, counts = state
    text = f"{behind} records behind"
    if counts:
        text += f", {counts[0]} statements stored, engagement day sum {counts[1]}"
    return text
