"""The worker's aiokafka consumer as Faust builds it through ``streams.transport``: it reads committed
records only, and its fetches wait for a few tens of records (``FETCH_MIN_BYTES``, at most
``FETCH_MAX_WAIT_MS``) instead of Faust's one byte, so a live trickle is not fetched record by record.

Built from the real app (``streams.app.create_app``) without a broker: aiokafka connects only in start().
"""

from __future__ import annotations

import asyncio

from streams.app import StreamsParameters, create_app
from streams.transport import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES, READ_COMMITTED


def test_the_worker_consumer_reads_committed_records_and_waits_for_a_few_records_per_fetch(tmp_path):
    async def build():
        app = create_app(StreamsParameters(
            bootstrap="127.0.0.1:9", topic_prefix="t.", app_id="fetch-settings", datadir=tmp_path, web_port=6066,
        ))
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return consumer._isolation_level, consumer._fetch_min_bytes, consumer._fetch_max_wait_ms
        finally:
            await consumer._client.close()

    isolation, min_bytes, max_wait_ms = asyncio.run(build())
    assert isolation == READ_COMMITTED
    assert (min_bytes, max_wait_ms) == (FETCH_MIN_BYTES, FETCH_MAX_WAIT_MS)
    # Many records per fetch, and a wait well below the learner batch window (0.2 s).
    assert min_bytes >= 8 * 1024 and 0 < max_wait_ms <= 100
