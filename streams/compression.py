"""The worker's Kafka producer compresses with LZ4's fast mode, not LZ4 HC.

aiokafka 0.14 compresses every lz4 record batch at level 9 (``aiokafka.codec.lz4_encode``'s
default, the Java client's default since KIP-390: LZ4 HC) and has no setting for the level.
The worker sends many small batches (a few learners' changelog and derived records per
partition and flush); live, at 750 single-statement POSTs/s, LZ4 HC was 4-7 % of the worker's
CPU (py-spy). On an 18 KB batch of JSON records level 1 took 19 µs against 99 for level 9,
for a batch 12 % larger (cramjam, as aiokafka calls it). librdkafka, the gateway's client, also
compresses lz4 in its fast mode by default. Readers are unaffected: an LZ4 frame decodes the
same whatever level wrote it.

aiokafka's batch builder (its C extension, and the pure-Python one without it) calls the
module-level ``lz4_encode`` of its module, so :func:`use_fast_lz4` replaces that name there;
``tests/unit/streams/test_compression.py`` checks the batches it builds.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

from aiokafka import codec

FAST_LZ4_LEVEL = 1
_BUILDER_MODULES = ("aiokafka.record.default_records", "aiokafka.record._crecords.default_records")


def _builder_modules() -> list[ModuleType]:
    found = []
    for name in _BUILDER_MODULES:
        try:
            found.append(importlib.import_module(name))
        except ImportError:  # built without its C extension
            continue
    return found


def use_fast_lz4(level: int = FAST_LZ4_LEVEL) -> None:
    """Make this process's aiokafka producers compress lz4 batches at ``level``."""
    encode = functools.partial(codec.lz4_encode, level=level)
    for module in _builder_modules():
        if not hasattr(module, "lz4_encode"):
            raise RuntimeError(f"{module.__name__} has no lz4_encode: aiokafka changed, see streams/compression.py")
        module.lz4_encode = encode
