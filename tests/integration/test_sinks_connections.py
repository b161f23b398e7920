"""On a ClickHouse server each sink writes through a connection of its own.

A connection runs one query at a time: when every sink of a process shared one, the
statements sink's batch waited for the engagement sink's inserts and recomputes (and they for
it). On chDB the sinks share the process's one session, which serializes them anyway.
"""

from __future__ import annotations

import threading
import time

import pytest

from sinks.engines import ServerEngine, engine_from_url
from sinks.specs import SPECS, SinkParameters, build_sinks

pytestmark = [pytest.mark.clickhouse_server]

# Nothing here reaches Kafka: the sinks are built, not run.
PARAMS = SinkParameters(bootstrap="127.0.0.1:9", topic_prefix="t.", secret=b"s" * 32)


def _running(ch: ServerEngine, marker: str, deadline_s: float = 60.0) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        running = ch.query(
            "SELECT count() FROM system.processes WHERE query LIKE {m:String} AND query NOT LIKE '%system.processes%'",
            {"m": f"%{marker}%"},
        )
        if running[0][0]:
            return True
        time.sleep(0.05)
    return False


def test_on_a_server_each_sink_queries_beside_the_others_not_after_them(server_url):
    ch = engine_from_url(server_url)
    sinks = build_sinks(PARAMS, ch)
    try:
        engines = [s.engine for s in sinks]
        assert len({id(e) for e in engines}) == len(SPECS) and all(e is not ch for e in engines)
        assert all(isinstance(e, ServerEngine) and e.database == ch.database for e in engines)
        slow, other = engines[0], engines[1]
        finished = threading.Event()

        def sleep() -> None:
            slow.query("SELECT sleep(3) AS one_sink_busy, sleep(3), sleep(3), sleep(3)")  # 12 s: room on a busy machine
            finished.set()

        thread = threading.Thread(target=sleep, daemon=True)
        thread.start()
        assert _running(ch, "one_sink_busy"), "the slow query never started"
        assert other.query("SELECT 1") == [(1,)]
        assert not finished.is_set(), "the second sink's query waited for the first sink's"
        thread.join(60)
        assert finished.is_set()
    finally:
        for s in sinks:
            s.engine.close()
        ch.close()


def test_on_chdb_the_sinks_share_the_processs_engine(chdb_url):
    ch = engine_from_url(chdb_url)
    try:
        sinks = build_sinks(PARAMS, ch)
        assert sinks and all(s.engine is ch for s in sinks)
    finally:
        # chDB locks its path per process: left open, it keeps the sink processes that later
        # tests of this worker spawn on the same path from starting.
        ch.close()
