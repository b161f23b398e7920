"""Apply migrations through the :class:`ClickHouse` interface; record them in a table.

Safe to run twice or concurrently (two ``learnpulse db migrate``, or every process that
opens the database at start-up):

- every forward statement is idempotent (``IF NOT EXISTS``; the one data statement, the
  rollup backfill, only adds set members that are already there);
- when two migrators create the same object (table, database, column) at once,
  ClickHouse answers "already exists" to one of them; that is success;
- the ledger is a ReplacingMergeTree keyed by id, so a migration recorded twice collapses,
  and it is read with ``GROUP BY``, never trusting that merges happened.

A migration recorded with a different checksum than its code means the code changed
after it was applied: :class:`MigrationDrift` stops the process instead of leaving a
database that is neither the old nor the new schema.

On a cluster, before its first ``ON CLUSTER`` statement (and only when there is one to run:
a process starting with every migration applied runs none), every replica must answer
(``schemas/clickhouse/replicas.py``); else :class:`ReplicasUnreachable` names the silent ones
at once, instead of a timeout after ``distributed_ddl_task_timeout``.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .cluster import OncePerShard, clusterize, local_database
from .ddl import render
from .engine import ALREADY_EXISTS_CODES, ClickHouse, ClickHouseError
from .migrations import Migration, all_migrations
# ReplicasUnreachable: raised by migrate (callers import it from here).
from .replicas import ReplicasUnreachable, once_per_shard, require_replicas  # noqa: F401

LEDGER = "schema_migrations"
_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    id String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(applied_at)
ORDER BY id
"""

# One migrator at a time within a process (chDB is per process; a server also sees
# migrators from other processes, which the idempotency above covers).
_LOCK = threading.Lock()


class MigrationDrift(Exception):
    """An applied migration's recorded checksum differs from its code."""


@dataclass(frozen=True)
class MigrationStatus:
    id: str
    applied: bool
    checksum: str
    recorded_checksum: str | None


def checksum(m: Migration) -> str:
    """Digest of a migration's forward SQL (before rendering)."""
    return hashlib.sha256("\n;\n".join(m.forwards).encode()).hexdigest()[:16]


# ILLEGAL_COLUMN: on a server two concurrent ``ADD COLUMN IF NOT EXISTS`` can both pass the
# check, and the later one is refused with this code; only its "already exists" form is a
# lost race (the same code also means a column that cannot be converted).
_ILLEGAL_COLUMN = 44


def _lost_race_to_create(err: ClickHouseError) -> bool:
    if err.code in ALREADY_EXISTS_CODES:
        return True
    return err.code == _ILLEGAL_COLUMN and "already exists" in str(err)


def execute_idempotent(ch: ClickHouse, sql: str) -> None:
    """Run one forward statement; a concurrent migrator having created its object first is success."""
    try:
        ch.execute(sql)
    except ClickHouseError as err:
        if not _lost_race_to_create(err):
            raise


def recorded(ch: ClickHouse) -> dict[str, str]:
    """``{migration id: checksum}`` of the migrations recorded in the ledger."""
    rows = ch.query(f"SELECT id, argMax(checksum, applied_at) FROM {ch.database}.{LEDGER} GROUP BY id")
    return {str(r[0]): str(r[1]) for r in rows}


def forward_statements(sql: str, version: tuple[int, ...], database: str, cluster: str | None) -> list[str]:
    """One forward statement as run on this server: in its cluster form when ``cluster`` is set."""
    single = [sql] if not cluster else clusterize(sql, cluster)
    return [OncePerShard(render(s, version, database)) if isinstance(s, OncePerShard) else render(s, version, database)
            for s in single]  # fmt: skip


def schema_sql(version: tuple[int, ...], database: str, cluster: str | None) -> list[str]:
    """Every statement ``migrate`` runs on an empty database, in order (the ledger's inserts aside)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", database):
        raise ValueError(f"database name {database!r}: letters, digits and _ only")
    out = forward_statements("CREATE DATABASE IF NOT EXISTS {db}", version, database, cluster)
    out += forward_statements(_LEDGER_DDL, version, database, cluster)
    for m in all_migrations():
        for forward in m.forwards:
            out += forward_statements(forward, version, database, cluster)
    return out


def sql_script(statements: list[str]) -> str:
    """Statements as one script for ``clickhouse-client --multiquery``: each dedented, ended by ``;``
    (a statement to run in every shard says so above it)."""
    return "".join(
        ("-- on one replica of every shard (its other replicas follow through replication)\n"
         if isinstance(s, OncePerShard) else "") + textwrap.dedent(s.strip("\n")).strip() + ";\n\n"
        for s in statements
    )  # fmt: skip


def execute_forward(ch: ClickHouse, sql: str, cluster: str | None) -> None:
    """Run one statement of :func:`forward_statements`: an :class:`OncePerShard` one on one
    replica of every shard of ``cluster`` (with ``ch``'s credentials), any other on ``ch``."""
    connect = getattr(ch, "at", None)  # only a server engine reaches other servers (chDB has no cluster)
    if isinstance(sql, OncePerShard) and cluster and connect is not None:
        once_per_shard(ch, cluster, lambda engine: execute_idempotent(engine, sql), connect)
    else:
        execute_idempotent(ch, sql)


def _before_cluster_ddl(ch: ClickHouse, cluster: str | None, wait_s: float,
                        log: Callable[[str], None]) -> Callable[[], None]:  # fmt: skip
    """What to call before running DDL: on a cluster, the first call checks that every replica
    answers (the later ones do nothing); on one node, nothing."""
    # Only a server engine can ask the other replicas (chDB has no cluster).
    answers = getattr(ch, "answers_at", None)
    checked: list[bool] = []

    def check() -> None:
        if cluster and answers is not None and not checked:
            require_replicas(ch, cluster, answers, wait_s, log)
            checked.append(True)

    return check


def _ensure_ledger(ch: ClickHouse, cluster: str | None, before_ddl: Callable[[], None] = lambda: None) -> None:
    # ON CLUSTER waits for every server: a process starting while one replica is down must
    # not wait for it when the ledger is there already (nothing to create).
    if cluster and ch.query(f"EXISTS TABLE {ch.database}.{LEDGER}") == [(1,)]:
        return
    before_ddl()
    version = ch.server_version()
    for sql in forward_statements("CREATE DATABASE IF NOT EXISTS {db}", version, ch.database, cluster):
        execute_idempotent(ch, sql)
    for sql in forward_statements(_LEDGER_DDL, version, ch.database, cluster):
        execute_idempotent(ch, sql)


def _refuse_all_shards(ch: ClickHouse) -> None:
    # The all-shards database holds Distributed tables made by the migrations of the local
    # one; migrating it would create a second, replicated schema under its name.
    if local_database(ch.database) != ch.database:
        raise ValueError(f"{ch.database} is an all-shards database: migrate {local_database(ch.database)}")


def status(ch: ClickHouse, cluster: str | None = None) -> list[MigrationStatus]:
    """Every known migration with whether (and with which checksum) it was applied."""
    _refuse_all_shards(ch)
    with _LOCK:
        _ensure_ledger(ch, cluster, _before_cluster_ddl(ch, cluster, 0.0, lambda _m: None))
        done = recorded(ch)
    return [MigrationStatus(m.id, m.id in done, checksum(m), done.get(m.id)) for m in all_migrations()]


def migrate(ch: ClickHouse, log: Callable[[str], None] = lambda _m: None, cluster: str | None = None,
            wait_for_replicas: float = 0.0) -> list[str]:  # fmt: skip
    """Apply every pending migration in order; returns the ids applied now.

    With ``cluster`` (a name in the servers' ``remote_servers``), every table is created in
    its replicated form on every server of the cluster (``schemas/clickhouse/cluster.py``);
    when something is to be applied, every replica must answer first, within
    ``wait_for_replicas`` seconds (0: at once), else :class:`ReplicasUnreachable`.
    """
    _refuse_all_shards(ch)
    with _LOCK:
        version = ch.server_version()
        before_ddl = _before_cluster_ddl(ch, cluster, wait_for_replicas, log)
        _ensure_ledger(ch, cluster, before_ddl)
        done = recorded(ch)
        known = all_migrations()
        drifted = [m.id for m in known if m.id in done and done[m.id] != checksum(m)]
        if drifted:
            raise MigrationDrift(
                f"migrations {', '.join(drifted)} were applied to {ch.database} from different code; "
                "write a new migration instead of editing an applied one (or drop this database if it holds "
                "nothing worth keeping)"
            )
        now_applied = []
        for m in known:
            if m.id in done:
                continue
            before_ddl()
            log(f"applying {m.id}")
            for forward in m.forwards:
                for sql in forward_statements(forward, version, ch.database, cluster):
                    execute_forward(ch, sql, cluster)
            ch.insert(f"{ch.database}.{LEDGER}", ["id", "checksum", "applied_at"], [[m.id], [checksum(m)], [_now()]])
            now_applied.append(m.id)
        return now_applied


def _now() -> datetime:
    # Naive UTC: both drivers read naive datetimes as the column's time zone (UTC).
    return datetime.now(UTC).replace(tzinfo=None)
