"""Sets of statement ids as one query parameter: a comma-separated String the server splits.

The statements sink asks, on every batch, which of its statements ClickHouse already holds
(sinks/copies.py) and which are voided (sinks/voids.py), with every id of the batch. Given as
an ``Array(String)`` parameter, the 5,000 ids of one look-up are parsed as an array literal
(chDB binds parameters from their text; old servers get them inlined); as one ``String``
they are one literal, split by ``splitByChar`` (on every server version the project runs).
Measured on chDB with 5,000 ids (benchmarks/bench_sinks, issue 16): ~28 ms → ~20 ms a look-up.
"""

from __future__ import annotations

from collections.abc import Sequence

# The ids of parameter {ids:String} as UUIDs, for ``column IN <this>``.
IDS_IN = "(SELECT toUUID(arrayJoin(splitByChar(',', {ids:String}))))"


def ids_text(ids: Sequence[str]) -> str:
    """The ``{ids:String}`` parameter of :data:`IDS_IN`: canonical UUID texts, comma-separated.

    Never empty (an empty text would split into one empty id, which is no UUID).
    """
    if not ids:
        raise ValueError("an id set of a look-up is never empty")
    return ",".join(ids)
