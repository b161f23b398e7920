"""One copy per statement: the statements sink writes the copy stored first.

How a second copy comes about: a gateway killed after its Kafka transaction committed and
before it recorded the ids as accepted (``producers/lrsstore/statement_index.py``, step 2)
stored statements whose client never got an answer; the client's retry is accepted again,
with a later ``stored``. Both copies reach ``xapi.statements`` under the same learner key,
so in the same partition and in order. Tables keyed by ``(school, stored, id)``
(``statements_raw``, ``lrs_statements``, the ``xapi_events_all`` view) would keep both,
and ``statements`` too when the LRS set ``timestamp`` from ``stored``.

So per ``(school, statement id)`` the sink writes only the copy with the earliest
``stored``: the one ``lrs_statement_ids`` already holds (an earlier batch wrote it), else
the earliest of this batch. A replay of the written copy itself (same ``stored``) is
written again and collapses by key, so a crash anywhere in between stays exact; a batch
is only committed after every table was written, so the look-up never misses a copy an
earlier, committed batch wrote. Rows without ``stored`` (agents, activities, attachment
references of the statement) are the same for every copy: they are written with the
winning copy, and dropped when it was written by an earlier batch.

A statement already written whole (its copy is in ``lrs_statement_ids``, the sink's last
table) is not inserted again at all (:meth:`FirstCopyFilter.unwritten`): a replay by a new
consumer group, or a sink re-reading its uncommitted batch, adds no row anywhere.

The stream stages count each statement id once on their own (``streams/learner/logic.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schemas.clickhouse import tables as T
from schemas.clickhouse.engine import ClickHouse

from .idsets import IDS_IN, ids_text
from .lrs_rows import LRS_STATEMENT_IDS, LRS_STATEMENTS, LRS_VOIDS

Rows = dict[str, list[tuple[Any, ...]]]
Copy = tuple[str, str]  # (school, statement id as lower-case text)

# Per table: (column naming the statement the row belongs to, its stored column).
_OWN_COPY_COLUMNS = {
    T.STATEMENTS_RAW: ("statement_id", "stored"),
    T.STATEMENTS: ("statement_id", "stored"),
    T.STATEMENT_VOIDS: ("voiding_statement_id", "stored"),
    LRS_STATEMENTS: ("statement_id", "stored_ms"),
    LRS_STATEMENT_IDS: ("statement_id", "stored_ms"),
    LRS_VOIDS: ("voiding_id", "stored_ms"),
}
_EPOCH = datetime(1970, 1, 1)
_LOOKUP_CHUNK = 5_000


def stored_ms(value: datetime | int) -> int:
    """``stored`` as epoch ms, from a row's naive-UTC datetime or its ms column."""
    if isinstance(value, datetime):
        return (value.replace(tzinfo=None) - _EPOCH) // timedelta(milliseconds=1)
    return int(value)


def batch_copies(rows: Rows) -> dict[Copy, int]:
    """Earliest ``stored`` (ms) of each statement in the batch, from its index rows."""
    first: dict[Copy, int] = {}
    for school, sid, ms, _voiding in rows.get(LRS_STATEMENT_IDS, ()):
        key = (school, str(sid).lower())
        if key not in first or ms < first[key]:
            first[key] = ms
    return first


def keep_first_copies(
    rows: Rows, columns: dict[str, tuple[str, ...]], written: dict[Copy, int], in_batch: dict[Copy, int] | None = None
) -> Rows:
    """``rows`` with only the first stored copy of each statement (pure).

    ``written``: the ``stored`` (ms) of statements some earlier batch already wrote;
    ``in_batch``: :func:`batch_copies` of ``rows`` if the caller has it already.
    """
    if in_batch is None:
        in_batch = batch_copies(rows)
    if _only_first_copies(rows, in_batch, written):
        return dict(rows)
    first = {key: min(ms, written.get(key, ms)) for key, ms in in_batch.items()}
    # Statements whose first copy is in this batch get their stored-less rows written here.
    written_here = {key for key, ms in first.items() if in_batch[key] == ms}
    out: Rows = {}
    for table, rs in rows.items():
        cols = columns[table]
        if "school" not in cols:
            out[table] = rs
            continue
        i_school = cols.index("school")
        if table in _OWN_COPY_COLUMNS:
            id_col, stored_col = _OWN_COPY_COLUMNS[table]
            i_id, i_st = cols.index(id_col), cols.index(stored_col)
            out[table] = [
                r for r in rs if first.get((r[i_school], str(r[i_id]).lower()), stored_ms(r[i_st])) == stored_ms(r[i_st])
            ]
        elif "statement_id" in cols:
            i_id = cols.index("statement_id")
            out[table] = [
                r for r in rs if (key := (r[i_school], str(r[i_id]).lower())) not in first or key in written_here
            ]
        else:
            out[table] = rs
    return out


def _only_first_copies(rows: Rows, in_batch: dict[Copy, int], written: dict[Copy, int]) -> bool:
    """Whether every copy in the batch is its statement's first: then every row is kept.

    The usual batch (no statement accepted twice) needs no look at each row: each copy
    has its one ``lrs_statement_ids`` row, and a statement's rows in every table carry
    that copy's ``stored``.
    """
    if any(written.get(key, ms) < ms for key, ms in in_batch.items()):
        return False
    ids = rows.get(LRS_STATEMENT_IDS, ())
    # More rows than statements: some statement came twice; each copy's stored is checked.
    return len(ids) == len(in_batch) or all(
        in_batch[(school, str(sid).lower())] == ms for school, sid, ms, _voiding in ids
    )


def drop_statements(rows: Rows, columns: dict[str, tuple[str, ...]], statements: set[Copy]) -> Rows:
    """``rows`` without any row of these statements (pure; rows of one copy per statement)."""
    out: Rows = {}
    for table, rs in rows.items():
        cols = columns[table]
        id_col = _OWN_COPY_COLUMNS.get(table, ("statement_id",))[0]
        if "school" not in cols or id_col not in cols:
            out[table] = rs
            continue
        i_school, i_id = cols.index("school"), cols.index(id_col)
        out[table] = [r for r in rs if (r[i_school], str(r[i_id]).lower()) not in statements]
    return out


class FirstCopyFilter:
    """The statements sink's row filter: :func:`keep_first_copies` against what is written.

    Reads ``lrs_statement_ids`` for the batch's ids on every batch (a primary-key look-up:
    the table is ordered by ``(school, statement_id)``). If it cannot be read the error
    propagates and the sink retries the batch later; it never writes without knowing.
    """

    def __init__(self, engine: ClickHouse, columns: dict[str, tuple[str, ...]]) -> None:
        self.engine = engine
        self.columns = columns
        # What the row filter just read, for the insert filter that follows it (one use).
        self._just_read: _JustRead | None = None

    def stored_copies(self, copies: Iterable[Copy]) -> dict[Copy, set[int]]:
        """The ``stored`` (ms) of every copy of these statements ``lrs_statement_ids`` holds."""
        wanted = set(copies)
        ids = sorted({sid for _school, sid in wanted})
        # Both key columns in the condition: a primary-key range per school, not a scan.
        schools = sorted({school for school, _sid in wanted})
        found: dict[Copy, set[int]] = {}
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            rows = self.engine.query(
                f"SELECT DISTINCT school, toString(statement_id), stored_ms FROM {{db}}.{LRS_STATEMENT_IDS} "
                "WHERE school IN (SELECT arrayJoin({schools:Array(String)})) "
                f"AND statement_id IN {IDS_IN}",
                {"schools": schools, "ids": ids_text(ids[start : start + _LOOKUP_CHUNK])},
            )
            for school, sid, ms in rows:
                key = (str(school), str(sid).lower())
                if key in wanted:
                    found.setdefault(key, set()).add(int(ms))
        return found

    def written(self, copies: Iterable[Copy]) -> dict[Copy, int]:
        """The first ``stored`` (ms) of the statements some batch already wrote."""
        return {key: min(stored) for key, stored in self.stored_copies(copies).items()}

    def __call__(self, rows: Rows) -> Rows:
        self._just_read = None
        copies = batch_copies(rows)
        if not copies:
            return rows
        stored = self.stored_copies(copies)
        kept = keep_first_copies(rows, self.columns, {key: min(found) for key, found in stored.items()}, copies)
        ids = kept.get(LRS_STATEMENT_IDS)
        self._just_read = _JustRead(copies, stored, ids if ids is rows.get(LRS_STATEMENT_IDS) else None)
        return kept

    def not_in_table(self, table: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The sink's retry filter: ``rows`` of ``table`` whose statement has no row there yet.

        Called only to retry an insert whose outcome was unknown (a server without insert
        deduplication tokens may have written it). The sink writes one copy per statement
        and a statement's rows of a table in one insert, so a statement id present in the
        table means all its rows of that table are there.
        """
        cols = self.columns[table]
        id_col = _OWN_COPY_COLUMNS.get(table, ("statement_id",))[0]
        if "school" not in cols or id_col not in cols or not rows:
            return rows
        i_school, i_id = cols.index("school"), cols.index(id_col)
        ids = sorted({str(r[i_id]).lower() for r in rows})
        schools = sorted({r[i_school] for r in rows})
        present: set[Copy] = set()
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            present.update(
                (str(school), str(sid).lower())
                for school, sid in self.engine.query(
                    f"SELECT DISTINCT school, toString({id_col}) FROM {{db}}.{table} "
                    "WHERE school IN (SELECT arrayJoin({schools:Array(String)})) "
                    f"AND {id_col} IN (SELECT toUUID(arrayJoin({{ids:Array(String)}})))",
                    {"schools": schools, "ids": ids[start : start + _LOOKUP_CHUNK]},
                )
            )
        return [r for r in rows if (r[i_school], str(r[i_id]).lower()) not in present]

    def unwritten(self, rows: Rows) -> Rows:
        """The sink's insert filter: ``rows`` without the statements already written whole.

        ``lrs_statement_ids`` is the statements sink's last table, so a copy found there
        has every row of it in every table: a replay (a new consumer group, a restarted
        sink re-reading its last batch) inserts nothing for it. The after-insert steps
        (voids) still see it: they run on the rows before this filter.
        """
        just_read, self._just_read = self._just_read, None
        if just_read is not None and just_read.unchanged(rows):
            copies, stored = just_read.copies, just_read.stored
        else:
            copies = batch_copies(rows)
            if not copies:
                return rows
            stored = _reuse(just_read, copies)
            if stored is None:
                stored = self.stored_copies(copies)
        complete = {key for key, ms in copies.items() if ms in stored.get(key, ())}
        return drop_statements(rows, self.columns, complete) if complete else rows


@dataclass(frozen=True)
class _JustRead:
    """What the row filter read and kept, for the insert filter that follows it.

    The sink calls the insert filter on the row filter's output with no insert in between
    (``KafkaClickHouseSink._write``/``_isolate``), so the table is as it was read: one
    look-up per batch instead of two. Used once; anything else reads again.
    """

    copies: dict[Copy, int]  # batch_copies of the rows the row filter was given
    stored: dict[Copy, set[int]]  # what it read for them
    # The lrs_statement_ids rows it returned if they are the very list it was given (it
    # dropped no copy), else None; held here, so no other list can take its identity.
    kept_ids: list[tuple[Any, ...]] | None

    def unchanged(self, rows: Rows) -> bool:
        """Whether ``rows`` are the row filter's output with every copy kept: then their
        :func:`batch_copies` are ``copies`` (a statement's copies are its ``lrs_statement_ids``
        rows), without walking them again."""
        ids = rows.get(LRS_STATEMENT_IDS)
        return ids is not None and ids is self.kept_ids


def _reuse(just_read: _JustRead | None, copies: dict[Copy, int]) -> dict[Copy, set[int]] | None:
    """What the row filter read just before, if it asked for every one of ``copies``."""
    if just_read is None or not copies.keys() <= just_read.copies.keys():
        return None
    return just_read.stored


__all__ = ["FirstCopyFilter", "batch_copies", "drop_statements", "keep_first_copies", "stored_ms"]
