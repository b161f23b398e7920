"""Reading ``sink_progress`` rows back: one reading for the sinks and for reporting.

A restarted sink reads its previous rows (``sinks/progress.py``) and the gateway's
Consistent-Through and the dashboard read everyone's (``reporting/progress.py``); both must
take the same instant from a row. ``caught_up_at`` is a ``DateTime64(3)`` that Debian's
18.16 keeps as a whole-second ``DateTime``, so migration 0024 added ``caught_up_ms``; rows
written before it have 0 there and fall back to ``caught_up_at``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

_NAIVE_EPOCH = datetime(1970, 1, 1)


def read_ms(value: Any) -> int:
    """Epoch ms of a DateTime64 as read back: a datetime from clickhouse-driver (naive is UTC,
    the column's zone), text from chDB (``YYYY-MM-DD hh:mm:ss[.fff]``), or ms already."""
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return round(value.timestamp() * 1000)
        return round((value - _NAIVE_EPOCH).total_seconds() * 1000)
    base, _, frac = str(value).replace("T", " ").partition(".")
    whole = datetime.strptime(base[:19], "%Y-%m-%d %H:%M:%S")
    return round((whole - _NAIVE_EPOCH).total_seconds() * 1000) + (int((frac + "000")[:3]) if frac else 0)


def caught_up_ms(ms_column: Any, at_column: Any) -> int:
    """A progress row's caught-up instant in epoch ms: ``caught_up_ms`` where set, else
    ``caught_up_at`` (whole seconds on 18.16); 0 (the epoch) when neither was ever set."""
    ms = int(ms_column or 0)
    return ms if ms > 0 else max(0, read_ms(at_column))
