"""How many bytes does a statement take, on Kafka and in ClickHouse? Next to the statement's own JSON.

Run as ``python -m benchmarks.bench_storage`` (``--statements N``, default 100,000;
``--engines chdb,server``). Simulator statements (10 schools), grouped as the publisher
groups them (≤ 20 per learner envelope), are:

- **on Kafka**: encoded as the envelopes ``xapi.statements`` carries, and LZ4-compressed in
  batches of 1 MiB as the producers send them (``compression.type=producer``: the broker
  keeps the producer's batches as they are). Per replica; the topic keeps a week.
- **in ClickHouse**: turned into rows by the statements sink's own code (``sinks.rows``)
  and inserted into a fresh database in blocks of 10,000, with every materialized view
  running (the ``activity_daily`` rollup). Then ``OPTIMIZE … FINAL`` and, per table,
  ``system.parts``: compressed bytes on disk (``bytes_on_disk``, indexes and marks
  included) and uncompressed data bytes.

The peer: the statements' JSON (as stored for LRS reads, canonical, without the envelope),
the size an LRS keeping documents as they came would start from. Ratio = bytes / JSON bytes.
Not counted: the stream worker's tables (``engagement``, ``mastery``, ``cohort_health``,
``alerts``), whose rows follow learner-hours, not statements, and Kafka's internal topics
(changelogs, which compact). ``deploy/CAPACITY.md`` uses these figures.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from functools import partial
from pathlib import Path

import lz4.frame
import orjson

from benchmarks.bench_sinks import SECRET, make_envelopes
from benchmarks.ports import free_port
from learnpulse.settings import ClickHouseSettings, Settings
from learnpulse.stack import ClickHouseServer
from schemas.clickhouse.ddl import needs_mapping
from schemas.clickhouse.migrate import migrate
from sinks.engines import engine_from_url
from sinks.rows import COLUMNS, MODERN_RANGE, OLD_SERVER_RANGE, statement_rows
from sinks.specs import SPECS

BLOCK = 10_000
KAFKA_BATCH_BYTES = 1024 * 1024

# Per table: parts of the fresh database, after OPTIMIZE FINAL (18.16 has no bytes_on_disk: bytes).
_PARTS = """
SELECT table, sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes), sum({on_disk})
FROM system.parts WHERE database = '{database}' AND active AND table != 'schema_migrations'
GROUP BY table ORDER BY table
"""


def kafka_bytes(encoded: list[bytes]) -> tuple[int, int]:
    """(uncompressed, LZ4-compressed) bytes of the envelopes, compressed in producer-sized batches."""
    raw = sum(len(e) for e in encoded)
    compressed, batch, size = 0, [], 0
    for value in encoded:
        batch.append(value)
        size += len(value)
        if size >= KAFKA_BATCH_BYTES:
            compressed += len(lz4.frame.compress(b"".join(batch)))
            batch, size = [], 0
    if batch:
        compressed += len(lz4.frame.compress(b"".join(batch)))
    return raw, compressed


def clickhouse_bytes(url: str, encoded: list[bytes]) -> list[tuple[str, int, int, int, int]]:
    """(table, rows, compressed, uncompressed, on disk) per table after writing ``encoded`` as the sink does."""
    ch = engine_from_url(url)
    migrate(ch)
    old = needs_mapping(ch.server_version())
    build = partial(statement_rows, SECRET, OLD_SERVER_RANGE if old else MODERN_RANGE)
    rows_by_table: dict[str, list[tuple]] = {}
    for raw in encoded:
        for table, rows in build(raw).items():
            rows_by_table.setdefault(table, []).extend(rows)
    for table in SPECS["statements"].tables:
        rows = rows_by_table.get(table) or []
        for start in range(0, len(rows), BLOCK):
            block = rows[start : start + BLOCK]
            ch.insert(f"{ch.database}.{table}", COLUMNS[table], [list(c) for c in zip(*block, strict=True)])
    tables = [r[0] for r in ch.query(f"SELECT name FROM system.tables WHERE database = '{ch.database}' "
                                     "AND engine LIKE '%MergeTree%'")]  # fmt: skip
    for table in tables:
        ch.execute(f"OPTIMIZE TABLE {ch.database}.{table} FINAL")
    on_disk = "data_compressed_bytes" if old else "bytes_on_disk"
    out = [
        (str(t), int(n), int(c), int(u), int(d))
        for t, n, c, u, d in ch.query(_PARTS.format(database=ch.database, on_disk=on_disk))
    ]
    ch.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--statements", type=int, default=100_000)
    ap.add_argument("--engines", default="chdb,server")
    args = ap.parse_args()
    engines = args.engines.split(",")

    envelopes = make_envelopes(args.statements)
    statements = sum(len(e.entries) for e in envelopes)
    encoded = [env.encode() for env in envelopes]
    json_bytes = sum(len(orjson.dumps(entry.statement)) for env in envelopes for entry in env.entries)
    print(f"{statements:,} simulator statements in {len(envelopes):,} envelopes; "
          f"their JSON {json_bytes / statements:,.0f} bytes each", flush=True)  # fmt: skip
    k_raw, k_lz4 = kafka_bytes(encoded)

    results: dict[str, list[tuple[str, int, int, int, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        home = Path(tmp)
        settings = Settings(home=home, clickhouse=ClickHouseSettings(server_tcp_port=free_port(),
                                                                     server_http_port=free_port()))  # fmt: skip
        server = ClickHouseServer(settings) if "server" in engines else None
        try:
            if server:
                print("starting clickhouse-server …", flush=True)
                server.up(timeout=90)
            for engine in engines:
                db = f"s_{uuid.uuid4().hex[:8]}"
                url = f"chdb://{home / 'chdb'}?database={db}" if engine == "chdb" else server.url_for(db)  # type: ignore[union-attr]
                print(f"writing into {engine} …", flush=True)
                results[engine] = clickhouse_bytes(url, encoded)
        finally:
            if server:
                server.stop()

    per = statements
    print()
    print(f"bytes per statement ({statements:,} statements; ratio = bytes / the statement's JSON, {json_bytes / per:,.0f} B)")
    print(f"{'where':<34} {'rows/st':>8} {'compressed':>11} {'on disk':>9} {'uncompressed':>13} {'ratio':>6}")
    print(f"{'Kafka xapi.statements (LZ4)':<34} {len(encoded) / per:>8.2f} {k_lz4 / per:>11,.0f} "
          f"{k_lz4 / per:>9,.0f} {k_raw / per:>13,.0f} {k_lz4 / json_bytes:>6.2f}")  # fmt: skip
    for engine, tables in results.items():
        total_c = total_d = total_u = 0
        for table, rows, comp, uncomp, disk in tables:
            total_c, total_d, total_u = total_c + comp, total_d + disk, total_u + uncomp
            print(f"{engine + ' ' + table:<34} {rows / per:>8.2f} {comp / per:>11,.0f} {disk / per:>9,.0f} "
                  f"{uncomp / per:>13,.0f} {disk / json_bytes:>6.2f}")  # fmt: skip
        print(f"{engine + ' every table':<34} {'':>8} {total_c / per:>11,.0f} {total_d / per:>9,.0f} "
              f"{total_u / per:>13,.0f} {total_d / json_bytes:>6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
