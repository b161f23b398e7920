"""Could chDB shape the statements sink's rows from the envelopes' bytes? A probe (issue 16, aim 2).

Run as ``python -m benchmarks.bench_sink_sql_shape`` (``--statements N``, ``--batch``,
``--rounds``). chDB only, no Kafka. Simulator statements, grouped as the publisher groups
them (≤ 20 per learner envelope), are written into ``statements`` and ``statements_raw``
two ways, each into a fresh database migrated as the sink's, alternately ``--rounds`` times:

- ``python rows + arrow``: as the sink does today: ``sinks.rows.statement_rows`` per
  envelope (which also builds the LRS index, voids and name rows the sink writes beside
  them: the ``rows`` column shows that part), then the two tables' columns inserted as
  Arrow (``ChdbEngine.insert``), in blocks of ``--batch`` statements;
- ``envelope bytes + views``: the envelopes' bytes as they are, one ``JSONEachRow`` insert
  per block into a ``Null`` table whose statement objects the input format keeps as text
  (``input_format_json_read_objects_as_strings``); materialized views shape the rows,
  each statement parsed once (``JSONExtract`` into a named ``Tuple``, chained views), the pseudonym of the
  authority by ``HMAC``, the ISO 8601 duration by the same sum as ``schemas.xapi.duration``.

- ``envelope bytes, no views``: the same inserts into the ``Null`` table alone (the input
  format's parse, the floor of the second way).

Then every column of both tables is compared, statement by statement (``EXCEPT``), and the
benchmark says whether they are identical. What the views do NOT cover yet (so this is not a
sink): other agents' pseudonyms (instructor, team, context agents, groups' members, an Agent
or SubStatement object; the simulator sends none), the checks that dead-letter a bad
record, the LRS index, ``statement_voids``, ``learner_names``, and the sink's filters
(first copies, erased learners) and after-insert steps, which read the batch's rows.

Figures: CPU µs per statement of this process (chDB's threads included) and wall µs.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.bench_sinks import SECRET, make_envelopes
from learnpulse.collector import collect_young_objects_rarely
from schemas.clickhouse.migrate import migrate
from sinks.engines import ChdbEngine
from sinks.rows import COLUMNS, MODERN_RANGE, statement_rows

TABLES = ("statements_raw", "statements")

# One parse of each statement: the fields both tables need, by name.
_STATEMENT = (
    "Tuple(id String, verb Tuple(id String), timestamp String, stored String,"
    " object Tuple(id Nullable(String), objectType Nullable(String)),"
    " context Tuple(registration Nullable(String)),"
    " result Tuple(success Nullable(UInt8), completion Nullable(UInt8),"
    " score Tuple(scaled Nullable(Float64), raw Nullable(Float64)), duration Nullable(String)),"
    " authority Tuple(account Tuple(homePage String, name String)))"
)
_FROM = f"""
FROM {{db}}.envelopes_in ARRAY JOIN statements AS e
ARRAY JOIN [JSONExtract(e.statement, '{_STATEMENT}')] AS t
ARRAY JOIN [ifNull(t.result.duration, '')] AS d
ARRAY JOIN [if(position(d, 'T') > 0, substring(d, 2, position(d, 'T') - 2), substring(d, 2))] AS dp
ARRAY JOIN [if(position(d, 'T') > 0, substring(d, position(d, 'T') + 1), '')] AS tp
"""
# schemas.xapi.duration.duration_ms: the components' float products summed in its order.
_UNITS = (("dp", "Y", 31_536_000_000), ("dp", "M", 2_592_000_000), ("dp", "D", 86_400_000),
          ("tp", "H", 3_600_000), ("tp", "M", 60_000), ("tp", "S", 1_000), ("dp", "W", 604_800_000),
          ("dp", "S", 1_000))  # fmt: skip
_DURATION = (
    "if(d = '', NULL, toUInt64(trunc(0. + "
    + " + ".join(
        rf"toFloat64OrZero(replaceOne(regexpExtract({part}, '(\\d+(?:[.,]\\d+)?){unit}', 1), ',', '.')) * {ms}"
        for part, unit, ms in _UNITS
    )
    + ")))"
)


def _views(secret: bytes) -> list[str]:
    """The Null table the envelopes go to; a view parsing each statement once into a second
    Null table of typed columns; from it, one view per table (chained: two views reading the
    envelopes each parsed every statement again, 23.5-25.0 against 20.2-20.9 µs/statement)."""
    key = secret.decode().replace("\\", "\\\\").replace("'", "\\'")
    authority = (
        f"lower(hex(HMAC('sha256', concat('account:', t.authority.account.homePage, '|', "
        f"t.authority.account.name), '{key}')))"
    )
    return [
        "CREATE TABLE {db}.envelopes_in (school String, learner String, statements Array(Tuple(course String,"
        " cohort String, violations Array(String), statement String))) ENGINE = Null",
        "CREATE TABLE {db}.parsed (statement_id UUID, school String, course String, cohort String, learner String,"
        " verb_id String, object_id String, object_type String, registration Nullable(UUID),"
        " result_success Nullable(UInt8), result_completion Nullable(UInt8), result_score_scaled Nullable(Float64),"
        " result_score_raw Nullable(Float64), result_duration_ms Nullable(UInt64), timestamp DateTime64(3, 'UTC'),"
        " stored DateTime64(3, 'UTC'), violations Array(String), authority String, raw String) ENGINE = Null",
        f"""CREATE MATERIALIZED VIEW {{db}}.envelopes_parsed TO {{db}}.parsed AS
        SELECT toUUID(t.id) AS statement_id, school, e.course AS course, e.cohort AS cohort, learner,
          t.verb.id AS verb_id, ifNull(t.object.id, '') AS object_id,
          ifNull(t.object.objectType, 'Activity') AS object_type,
          toUUIDOrNull(t.context.registration) AS registration,
          t.result.success AS result_success, t.result.completion AS result_completion,
          t.result.score.scaled AS result_score_scaled, t.result.score.raw AS result_score_raw,
          {_DURATION} AS result_duration_ms,
          parseDateTime64BestEffort(t.timestamp, 3, 'UTC') AS timestamp,
          parseDateTime64BestEffort(t.stored, 3, 'UTC') AS stored,
          e.violations AS violations, {authority} AS authority, e.statement AS raw {_FROM}""",
        "CREATE MATERIALIZED VIEW {db}.parsed_statements TO {db}.statements AS SELECT statement_id, school, course,"
        " cohort, learner, verb_id, object_id, object_type, registration, result_success, result_completion,"
        " result_score_scaled, result_score_raw, result_duration_ms, timestamp, stored, 0 AS voided, violations"
        " FROM {db}.parsed",
        "CREATE MATERIALIZED VIEW {db}.parsed_raw TO {db}.statements_raw AS SELECT school, statement_id, stored,"
        " timestamp, learner, arraySort(arrayDistinct([learner, authority])) AS learners, raw FROM {db}.parsed",
    ]


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _blocks(counts: list[int], batch: int) -> list[list[int]]:
    """Envelope indexes in blocks of at least ``batch`` statements (the sink's batches)."""
    out: list[list[int]] = [[]]
    n = 0
    for i, c in enumerate(counts):
        out[-1].append(i)
        n += c
        if n >= batch:
            out.append([])
            n = 0
    return [b for b in out if b]


def python_way(engine: ChdbEngine, encoded: list[bytes], blocks: list[list[int]]) -> tuple[float, float, float]:
    """(CPU s, wall s, CPU s of the rows alone)."""
    started, started_cpu, rows_cpu = time.perf_counter(), _cpu(), 0.0
    for block in blocks:
        c = _cpu()
        by_table: dict[str, list[tuple]] = {t: [] for t in TABLES}
        for i in block:
            rows = statement_rows(SECRET, MODERN_RANGE, encoded[i])
            for t in TABLES:
                by_table[t].extend(rows[t])
        rows_cpu += _cpu() - c
        for t in TABLES:
            engine.insert(f"{engine.database}.{t}", COLUMNS[t], [list(col) for col in zip(*by_table[t], strict=True)])
    return _cpu() - started_cpu, time.perf_counter() - started, rows_cpu


def sql_way(engine: ChdbEngine, encoded: list[bytes], blocks: list[list[int]]) -> tuple[float, float, float]:
    sql = (
        f"INSERT INTO {engine.database}.envelopes_in SETTINGS input_format_json_read_objects_as_strings = 1,"
        " input_format_skip_unknown_fields = 1"
    )
    started, started_cpu = time.perf_counter(), _cpu()
    for block in blocks:
        payload = b"\n".join(encoded[i] for i in block)
        with engine._lock:  # noqa: SLF001 - a probe: the raw insert the engine does not offer
            inserter = engine._session.send_insert(sql, "JSONEachRow")  # noqa: SLF001
            inserter.append(payload)
            inserter.finish()
            del inserter
    return _cpu() - started_cpu, time.perf_counter() - started, 0.0


def differing(engine: ChdbEngine, python_db: str, sql_db: str) -> dict[str, list[tuple[str, int]]]:
    """Per table, the columns whose (statement_id, value) pairs differ between the two ways, with counts."""
    out: dict[str, list[tuple[str, int]]] = {}
    for table in TABLES:
        out[table] = []
        for column in COLUMNS[table]:
            (row,) = engine.query(
                f"SELECT (SELECT count() FROM (SELECT statement_id, {column} FROM {python_db}.{table}"
                f" EXCEPT SELECT statement_id, {column} FROM {sql_db}.{table}))"
                f" + (SELECT count() FROM (SELECT statement_id, {column} FROM {sql_db}.{table}"
                f" EXCEPT SELECT statement_id, {column} FROM {python_db}.{table}))"
            )
            if int(row[0]):
                out[table].append((column, int(row[0])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--statements", type=int, default=60_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    envelopes = make_envelopes(args.statements)
    encoded = [e.encode() for e in envelopes]
    counts = [len(e.entries) for e in envelopes]
    statements = sum(counts)
    blocks = _blocks(counts, args.batch)
    collect_young_objects_rarely()  # as the sink process does
    tmp = Path(tempfile.mkdtemp(prefix="bench-sql-shape-"))
    engines: list[ChdbEngine] = []
    try:
        results = []
        for r in range(args.rounds):
            for way, run, db in (("python rows + arrow", python_way, f"py{r}"),
                                 ("envelope bytes + views", sql_way, f"sql{r}"),
                                 ("envelope bytes, no views", sql_way, f"parse{r}")):  # fmt: skip
                engine = ChdbEngine(str(tmp / "chdb"), db)
                engines.append(engine)
                migrate(engine)
                if run is sql_way:
                    # Without the views: the input format's parse into the Null table alone.
                    for ddl in _views(SECRET) if db.startswith("sql") else _views(SECRET)[:1]:
                        engine.execute(ddl)
                cpu, wall, rows_cpu = run(engine, encoded, blocks)
                results.append((r, way, cpu, wall, rows_cpu))
                print(f"  round {r + 1} {way}: {cpu / statements * 1e6:.1f} us/st CPU", flush=True)
        diff = differing(engines[0], "py0", "sql0")
        print()
        print(f"{statements} statements in {len(envelopes)} envelopes, blocks of {args.batch}; "
              "into statements + statements_raw (chDB)")  # fmt: skip
        print(f"{'round':>5} {'way':<24} {'cpu µs/st':>10} {'wall µs/st':>11} {'of which rows':>14}")
        for r, way, cpu, wall, rows_cpu in results:
            rows = f"{rows_cpu / statements * 1e6:.1f}" if rows_cpu else "-"
            print(f"{r + 1:>5} {way:<24} {cpu / statements * 1e6:>10.1f} {wall / statements * 1e6:>11.1f} {rows:>14}")
        for table, columns in diff.items():
            print(f"{table}: identical {not columns}" + (f" (differing: {columns})" if columns else ""))
    finally:
        for engine in engines:
            engine.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
