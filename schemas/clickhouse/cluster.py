"""The cluster form of the migrations: replicated local tables, ``ON CLUSTER``, Distributed reads.

The migrations in ``migrations/`` are written once, for one node. With a cluster name
(``ClickHouseSettings.cluster.name``, ``remote_servers`` of every server) each forward
statement is rewritten here, before :func:`schemas.clickhouse.ddl.render` maps it for old
servers:

- every ``CREATE TABLE … ENGINE = <V>MergeTree[(args)]`` becomes
  ``Replicated<V>MergeTree('/clickhouse/tables/{shard}/<db>/<table>', '{replica}'[, args])``
  (the same Replacing/Summing/Aggregating variant and version column), created
  ``ON CLUSTER``, followed by ``<table>_distributed`` (``Distributed``, same columns)
  for reads across shards. Local tables keep their names, so the sinks, the
  materialized views, mutations and the LRS reads use them unchanged; on one shard every
  replica holds every row;
- ``{shard}`` and ``{replica}`` are each server's ``<macros>``; ZooKeeper (or Keeper)
  keeps the replication log and the hashes of the last inserted blocks, so a block a
  sink retries against another replica is dropped there (block deduplication);
- views, materialized views (on the local tables) and ``DROP`` run ``ON CLUSTER``;
  ``ALTER`` of a (replicated) local table runs without it, once in every shard
  (:class:`OncePerShard`): replication carries it to the shard's other replicas, which is
  also all ``ON CLUSTER`` does for a replicated table, through a lock in ZooKeeper whose
  race in 18.16 (fixed in 19.1.6) stops the distributed-DDL worker of the replica that
  loses it for good, so every later ``ON CLUSTER`` statement waits for it, then fails.
  After a column change the Distributed table is created again from the local one (it
  holds no data: sinks write the local tables);
- ``non_replicated_deduplication_window`` (0001, 0016) is left out: a replicated table
  keeps the hashes of its last blocks in ZooKeeper/Keeper by default
  (``replicated_deduplication_window``), which is what makes a retry on another replica
  add nothing; 0016's ``MODIFY SETTING`` statements have no cluster form.

Several shards: the same statements also create the database ``<db>_all_shards``
(:func:`all_shards_database`) holding, for every table and view of ``<db>``, a Distributed
table of the same name over it on every shard. A process of a sharded cluster names that
database as its own (``ServerEngine.across_shards``): every ``{db}.<table>`` query then
reads every shard and every insert is routed to the shard of its sharding key, without a
query of the readers or the sinks changing. Mutations (``forget-learner``) go to the local
tables ``ON CLUSTER`` (:func:`local_database`).

Rows are spread over shards by ``school`` when the sorting key has it (every pipeline
table: :func:`_sharding_key`), else by the first column of the sorting key, so all copies
of a key meet in one shard and Replacing/Aggregating merges stay exact. Pure string work, testable offline.
"""

from __future__ import annotations

import re
from functools import cache

DISTRIBUTED_SUFFIX = "_distributed"
ALL_SHARDS_SUFFIX = "_all_shards"
ZK_TABLES = "/clickhouse/tables"

_CREATE_DB = re.compile(r"^(\s*CREATE DATABASE IF NOT EXISTS \S+)", re.S)
_CREATE_TABLE = re.compile(r"^(\s*CREATE TABLE IF NOT EXISTS )(\S+)\.(\w+)(\s*\()", re.S)
_CREATE_VIEW = re.compile(r"^(\s*CREATE (MATERIALIZED )?VIEW IF NOT EXISTS (\S+)\.(\w+))", re.S)
_ENGINE = re.compile(
    r"ENGINE = (Replacing|Summing|Aggregating|Collapsing|VersionedCollapsing)?MergeTree(?:\(([^()]*)\))?"
)
_ORDER_BY = re.compile(r"\n\s*ORDER BY \(?\s*([^,()\s]+(?:\([^()]*\))?)")
# The whole sorting key of a CREATE TABLE (one line), for finding its `school` column.
_SORTING_KEY = re.compile(r"\n\s*ORDER BY \(([^\n]*)\)\s*(?:\n|$)")
_SCHOOL = "school"
_ALTER = re.compile(r"^(\s*ALTER TABLE )(\S+)\.(\w+)( .*)$", re.S)
_COLUMN_CHANGE = re.compile(r"^\s*(ADD|DROP|MODIFY|RENAME) COLUMN\b")
_DROP = re.compile(r"^(\s*DROP TABLE IF EXISTS )(\S+)\.(\w+)\s*$", re.S)
_SETS_NON_REPLICATED_WINDOW = re.compile(r"^\s*(?:MODIFY|RESET) SETTING non_replicated_deduplication_window\b")
# The setting in a CREATE's SETTINGS list (with the comma joining it to another), or the whole line.
_WINDOW_IN_SETTINGS = (
    re.compile(r",\s*non_replicated_deduplication_window\s*=\s*\d+"),
    re.compile(r"non_replicated_deduplication_window\s*=\s*\d+\s*,\s*"),
    re.compile(r"\n\s*SETTINGS non_replicated_deduplication_window\s*=\s*\d+\s*(?=\n|$)"),
)


class OncePerShard(str):
    """A statement to run on one replica of every shard, without ``ON CLUSTER``: an ``ALTER``
    of a replicated table, which the shard's replicas then apply from ZooKeeper/Keeper."""


def distributed_name(table: str) -> str:
    """The Distributed table that reads ``table`` on every shard."""
    return table + DISTRIBUTED_SUFFIX


def all_shards_database(database: str) -> str:
    """The database whose tables have ``database``'s names and read (and write) every shard."""
    return database + ALL_SHARDS_SUFFIX


def local_database(database: str) -> str:
    """The database of the local tables behind ``database`` (itself unless it is an all-shards one)."""
    return database.removesuffix(ALL_SHARDS_SUFFIX)


def zookeeper_path(database: str, table: str) -> str:
    """Where the replicas of one shard of ``database.table`` meet in ZooKeeper/Keeper."""
    return f"{ZK_TABLES}/{{shard}}/{database}/{table}"


def clusterize(sql: str, cluster: str) -> list[str]:
    """The statements that apply ``sql`` (one single-node forward statement) to ``cluster``."""
    on = f" ON CLUSTER {_identifier(cluster)}"
    if m := _CREATE_TABLE.match(sql):
        return _create_table(sql, m, on, cluster)
    if m := _CREATE_DB.match(sql):
        database = m.group(1).split()[-1]
        return [m.group(1) + on + sql[m.end():], f"CREATE DATABASE IF NOT EXISTS {all_shards_database(database)}{on}"]
    if m := _CREATE_VIEW.match(sql):
        out = [m.group(1) + on + sql[m.end():]]
        if not m.group(2):
            # A plain view reads its shard's tables (FINAL, keys and argMax stay within one
            # shard); the all-shards view reads that view on every shard.
            out.append(_all_shards(m.group(3), m.group(4), on, cluster, key=None))
        return out
    if m := _ALTER.match(sql):
        head, database, table, rest = m.groups()
        if _SETS_NON_REPLICATED_WINDOW.match(rest):
            return []
        out: list[str] = [OncePerShard(f"{head}{database}.{table}{rest}")]
        if _COLUMN_CHANGE.match(rest):
            key = sharding_keys()[table]
            out.append(f"DROP TABLE IF EXISTS {database}.{distributed_name(table)}{on}")
            out.append(_distributed(database, table, on, cluster, key))
            out.append(f"DROP TABLE IF EXISTS {all_shards_database(database)}.{table}{on}")
            out.append(_all_shards(database, table, on, cluster, key))
        return out
    if m := _DROP.match(sql):
        head, database, table = m.groups()
        return [
            f"{head}{all_shards_database(database)}.{table}{on}",
            f"{head}{database}.{distributed_name(table)}{on}",
            f"{head}{database}.{table}{on}",
        ]
    # Data statements (the rollup backfill): run on one replica, replicated from there.
    return [sql]


def _create_table(sql: str, m: re.Match[str], on: str, cluster: str) -> list[str]:
    head, database, table, paren = m.groups()
    engine = _ENGINE.search(sql, m.end())
    if engine is None:
        raise ValueError(f"{table}: no MergeTree engine to replicate in {sql.strip()[:80]!r}")
    variant, args = engine.group(1) or "", (engine.group(2) or "").strip()
    replicated_args = ", ".join(
        [f"'{zookeeper_path(database, table)}'", "'{replica}'"] + ([args] if args else [])
    )
    rest = sql[engine.end():]
    for pattern in _WINDOW_IN_SETTINGS:
        rest = pattern.sub("", rest)
    local = (
        f"{head}{database}.{table}{on}{paren}{sql[m.end():engine.start()]}"
        f"ENGINE = Replicated{variant}MergeTree({replicated_args}){rest}"
    )
    key = _sharding_key(sql, table)
    return [local, _distributed(database, table, on, cluster, key), _all_shards(database, table, on, cluster, key)]


def _distributed(database: str, table: str, on: str, cluster: str, key: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{distributed_name(table)}{on} AS {database}.{table} "
        f"ENGINE = Distributed({_identifier(cluster)}, {database}, {table}, cityHash64({key}))"
    )


def _all_shards(database: str, table: str, on: str, cluster: str, key: str | None) -> str:
    """``<db>_all_shards.<table>``: Distributed over ``table`` of every shard (routing inserts by ``key``)."""
    routing = f", cityHash64({key})" if key else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {all_shards_database(database)}.{table}{on} AS {database}.{table} "
        f"ENGINE = Distributed({_identifier(cluster)}, {database}, {table}{routing})"
    )


def _sharding_key(create_table: str, table: str) -> str:
    """``school`` when it is a column of the sorting key of a ``CREATE TABLE``, else the key's
    first column.

    A materialized view writes the local table of the shard its source row is on, so a
    target must be routed like its sources (by ``school``) even when its key starts with
    another column (``engagement_by_time``: ``grain`` first); inserts through the
    Distributed table then land where the view's rows are.
    """
    order = _ORDER_BY.search(create_table)
    if order is None:
        raise ValueError(f"{table}: no ORDER BY to shard by")
    key = _SORTING_KEY.search(create_table)
    if key and _SCHOOL in (column.strip() for column in key.group(1).split(",")):
        return _SCHOOL
    return order.group(1)


@cache
def sharding_keys() -> dict[str, str]:
    """{table: sharding key} of every table the migrations create (for re-creating a Distributed table)."""
    from .migrations import all_migrations

    keys = {}
    for m in all_migrations():
        for sql in m.forwards:
            if found := _CREATE_TABLE.match(sql):
                keys[found.group(3)] = _sharding_key(sql, found.group(3))
    return keys


def _identifier(name: str) -> str:
    """A cluster name as written in ``remote_servers``; only plain identifiers are accepted."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"cluster name {name!r}: letters, digits and _ only")
    return name
