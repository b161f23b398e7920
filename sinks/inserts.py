"""Writing one batch's rows into a sink's tables: in order, the tables of a wave side by side.

A sink's tables are inserted in the order its spec gives (``sinks/specs.py``): the order
carries promises (the statements sink writes ``statements_raw`` first, because the LRS
read index expects the JSON there when an id is indexed, and ``lrs_statement_ids`` last,
because a statement found there is written whole). The tables between such fixed points
promise nothing to each other, so a spec may name them ``side_by_side``: consecutive such
tables form one wave, inserted at once over the sink's extra connections (each connection
runs one query at a time); a wave ends before the next table starts. With no extra
connection (chDB: one session per process) every table goes one after the other.

Outcomes are kept per table, as before: a table whose insert failed transiently is
``uncertain`` (it may have been written: the retry drops what is there, or its
deduplication token does), tables of the wave that succeeded are ``inserted`` and are not
written again, and the batch's error is raised once the whole wave has ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from schemas import metrics
from schemas.clickhouse.engine import ClickHouse, ClickHouseError, ClickHouseUnavailable

Rows = dict[str, list[tuple[Any, ...]]]
RetryFilter = Callable[[str, list[tuple[Any, ...]]], list[tuple[Any, ...]]]


class TableInserts:
    """The inserts of one sink: ``engine`` for every table, ``extra`` connections for waves."""

    def __init__(self, sink: str, engine: ClickHouse, columns: dict[str, tuple[str, ...]], tables: Sequence[str],
                 side_by_side: Sequence[str] = (), extra: Sequence[ClickHouse] = ()) -> None:  # fmt: skip
        self.sink = sink
        self.engine = engine
        self.columns = columns
        self.tables = tuple(tables)
        self.side_by_side = frozenset(side_by_side)
        self.extra = tuple(extra)

    def order(self, rows: Rows) -> list[str]:
        """Insert order: the configured tables, then any other table the builder filled."""
        return list(self.tables) + sorted(t for t in rows if t not in self.tables)

    def waves(self, rows: Rows) -> list[list[str]]:
        """The insert order in waves: consecutive side-by-side tables together, any other alone."""
        out: list[list[str]] = []
        for table in self.order(rows):
            if out and table in self.side_by_side and out[-1][-1] in self.side_by_side:
                out[-1].append(table)
            else:
                out.append([table])
        return out

    def insert(self, table: str, rows: list[tuple[Any, ...]], content: str, engine: ClickHouse | None = None) -> None:
        """Insert ``rows``; ``content`` (the digest of the records they came from) makes the
        deduplication token, so a retry of an insert whose outcome was unknown adds nothing
        (a replay in other batch boundaries gets other tokens: the table keys collapse it)."""
        engine = engine or self.engine
        token = f"{self.sink}:{table}:{len(rows)}:{content}"
        started = time.perf_counter()
        engine.insert(f"{engine.database}.{table}", self.columns[table], [list(c) for c in zip(*rows)], token)
        metrics.INSERT_SECONDS.labels(table).observe(time.perf_counter() - started)
        metrics.BATCH_ROWS.labels(table).observe(len(rows))
        metrics.ROWS_WRITTEN.labels(table).inc(len(rows))

    def insert_all(self, rows: Rows, content: str, inserted: set[str], uncertain: set[str],
                   retry_filter: RetryFilter | None) -> None:  # fmt: skip
        """Insert every table not yet ``inserted``, wave by wave; updates ``inserted`` and
        ``uncertain`` (on this thread) and raises the first failure of the wave it ends."""
        for wave in self.waves(rows):
            todo: dict[str, list[tuple[Any, ...]]] = {}
            for table in wave:
                if table in inserted:
                    continue
                data = rows.get(table) or []
                if data and table in uncertain and retry_filter is not None:
                    data = retry_filter(table, data)  # here: it queries through self.engine
                if data:
                    todo[table] = data
                else:
                    inserted.add(table)
                    uncertain.discard(table)
            written, failed = self._run_wave(todo, content)
            for table in written:
                inserted.add(table)
                uncertain.discard(table)
            for table, err in failed.items():
                if isinstance(err, ClickHouseUnavailable):
                    uncertain.add(table)  # it may have been written all the same
            if failed:
                # A transient failure first: the retry may write everything; a rejection
                # recurs then and the batch is split record by record.
                errors = list(failed.values())
                raise next((e for e in errors if isinstance(e, ClickHouseUnavailable)), errors[0])

    def _run_wave(self, todo: dict[str, list[tuple[Any, ...]]], content: str
                  ) -> tuple[list[str], dict[str, ClickHouseUnavailable | ClickHouseError]]:  # fmt: skip
        """Insert the tables of ``todo``, side by side when there are extra connections: each
        connection takes its share in order and stops at its first failure (the tables after
        it are not tried). The tables written, and the failures per table."""
        tables = list(todo)
        engines = [self.engine, *self.extra][: max(1, len(tables))]
        shares = [tables[i :: len(engines)] for i in range(len(engines))]
        written: list[list[str]] = [[] for _ in engines]
        failed: dict[str, ClickHouseUnavailable | ClickHouseError] = {}
        crashed: list[BaseException] = []

        def run(i: int) -> None:
            try:
                for table in shares[i]:
                    try:
                        self.insert(table, todo[table], content, engines[i])
                    except (ClickHouseUnavailable, ClickHouseError) as err:
                        failed[table] = err
                        return
                    written[i].append(table)
            except BaseException as err:  # noqa: BLE001 - raised on the caller's thread below
                crashed.append(err)

        # Daemon threads, as the sink's writer: an insert hung at shutdown never holds the process.
        others = [threading.Thread(target=run, args=(i,), name=f"sink-{self.sink}-insert-{i}", daemon=True)
                  for i in range(1, len(engines))]  # fmt: skip
        for thread in others:
            thread.start()
        run(0)
        for thread in others:
            thread.join()  # the whole wave ends before anything after it
        if crashed:
            raise crashed[0]
        return [t for share in written for t in share], failed

    def close(self) -> None:
        """Close the extra connections (this object's own)."""
        for engine in self.extra:
            engine.close()

