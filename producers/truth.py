"""Where the simulator's ground truth goes: a JSON Lines file and/or a ClickHouse table.

Both take records one at a time (:meth:`write`) and must be closed; the file is written
to ``<path>.part`` and renamed on close, so a reader never sees half a truth file.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

from schemas.clickhouse.ddl import render
from schemas.clickhouse.engine import ClickHouse
from schemas.truth import TRUTH_COLUMNS, TRUTH_TABLE, TRUTH_TABLE_DDL, TruthRecord, encode_record, truth_row


class TruthSink(Protocol):
    def write(self, record: TruthRecord) -> None:
        """Accept one record; may buffer."""
        ...

    def close(self) -> None:
        """Make everything written durable and visible."""
        ...


class JsonlTruthWriter:
    """One record per line; gzip when the path ends in ``.gz``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".part")
        raw = open(self._tmp, "wb")  # noqa: SIM115  (closed in close(), renamed into place there)
        self._f: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if self.path.suffix == ".gz" else raw
        self._raw = raw
        self.records = 0

    def write(self, record: TruthRecord) -> None:
        self._f.write(encode_record(record) + b"\n")
        self.records += 1

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.close()
        if self._raw is not self._f:
            self._raw.close()
        os.replace(self._tmp, self.path)


class ClickHouseTruthWriter:
    """Rows of ``sim_truth`` (see :mod:`schemas.truth`), inserted in blocks of ``block_rows``."""

    def __init__(self, ch: ClickHouse, run_id: str, block_rows: int = 50_000) -> None:
        self.ch = ch
        self.run_id = run_id
        self.block_rows = block_rows
        ch.execute("CREATE DATABASE IF NOT EXISTS {db}")
        ch.execute(render(TRUTH_TABLE_DDL, ch.server_version(), "{db}"))
        self._rows: list[tuple] = []
        self.records = 0

    def write(self, record: TruthRecord) -> None:
        self._rows.append(truth_row(self.run_id, record))
        self.records += 1
        if len(self._rows) >= self.block_rows:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            columns: Sequence[Sequence] = list(zip(*self._rows))
            self.ch.insert(f"{self.ch.database}.{TRUTH_TABLE}", TRUTH_COLUMNS, columns)
            self._rows = []

    def close(self) -> None:
        self._flush()


class TruthFanout:
    """Writes each record to several sinks."""

    def __init__(self, sinks: Sequence[TruthSink]) -> None:
        self.sinks = list(sinks)

    def write(self, record: TruthRecord) -> None:
        for s in self.sinks:
            s.write(record)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
