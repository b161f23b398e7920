"""streams.compression: aiokafka's producer batches compressed at LZ4's fast level."""

from __future__ import annotations

import pytest
from aiokafka import codec
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

import streams.compression as compression

_HEADER = 61  # a v2 record batch's header; the (compressed) records follow it
_LZ4 = 3


def _batch(compression_type: int) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=compression_type, is_transactional=0, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 20,
    )  # fmt: skip
    for i in range(200):
        value = b'{"learner":"%064x","course":"https://courses.example.org/c/%d","statements":%d}' % (i * 7919, i % 13, i)
        builder.append(i, timestamp=1_700_000_000_000 + i, key=b"learner-%d" % i, value=value, headers=[])
    return bytes(builder.build())


@pytest.fixture
def restore_builders():
    saved = [(m, m.lz4_encode) for m in compression._builder_modules()]
    yield
    for module, encode in saved:
        module.lz4_encode = encode


def test_the_producers_batches_are_compressed_at_the_fast_level_and_read_back(restore_builders):
    records = _batch(0)[_HEADER:]
    fast, hc = len(codec.lz4_encode(records, level=1)), len(codec.lz4_encode(records, level=9))
    assert fast != hc, "the sample must tell the two levels apart"
    assert len(_batch(_LZ4)) == _HEADER + hc  # aiokafka on its own: LZ4 HC

    compression.use_fast_lz4()
    batch = _batch(_LZ4)
    assert len(batch) == _HEADER + fast
    read = DefaultRecordBatch(batch)
    values = [r.value for r in read]
    assert len(values) == 200 and values[5].startswith(b'{"learner":')


def test_the_worker_app_switches_to_the_fast_level(restore_builders, tmp_path):
    from streams.app import StreamsParameters, create_app

    for module in compression._builder_modules():
        module.lz4_encode = codec.lz4_encode
    create_app(StreamsParameters(bootstrap="127.0.0.1:1", topic_prefix="t.", app_id="codec-test", datadir=tmp_path,
                                 web_port=1))
    records = _batch(0)[_HEADER:]
    assert len(_batch(_LZ4)) == _HEADER + len(codec.lz4_encode(records, level=1))
