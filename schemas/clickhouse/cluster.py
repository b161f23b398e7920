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
- views, materialized views (on the local tables), ``ALTER`` and ``DROP`` run
  ``ON CLUSTER``; after a column change the Distributed table is created again from the
  local one (it holds no data: sinks write the local tables; and 18.16 refuses an
  ``ALTER … ON CLUSTER`` of a table that is not replicated on a replicated shard);
- ``non_replicated_deduplication_window`` (0001, 0016) is left out: a replicated table
  keeps the hashes of its last blocks in ZooKeeper/Keeper by default
  (``replicated_deduplication_window``), which is what makes a retry on another replica
  add nothing; 0016's ``MODIFY SETTING`` statements have no cluster form.

Rows are spread over shards by the first column of the sorting key (``school`` for
every pipeline table), so all copies of a key meet in one shard and Replacing/Aggregating
merges stay exact. Pure string work, testable offline.
"""

from __future__ import annotations

import re
from functools import cache

DISTRIBUTED_SUFFIX = "_distributed"
ZK_TABLES = "/clickhouse/tables"

_CREATE_DB = re.compile(r"^(\s*CREATE DATABASE IF NOT EXISTS \S+)", re.S)
_CREATE_TABLE = re.compile(r"^(\s*CREATE TABLE IF NOT EXISTS )(\S+)\.(\w+)(\s*\()", re.S)
_CREATE_VIEW = re.compile(r"^(\s*CREATE (?:MATERIALIZED )?VIEW IF NOT EXISTS \S+)", re.S)
_ENGINE = re.compile(
    r"ENGINE = (Replacing|Summing|Aggregating|Collapsing|VersionedCollapsing)?MergeTree(?:\(([^()]*)\))?"
)
_ORDER_BY = re.compile(r"\n\s*ORDER BY \(?\s*([^,()\s]+(?:\([^()]*\))?)")
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


def distributed_name(table: str) -> str:
    """The Distributed table that reads ``table`` on every shard."""
    return table + DISTRIBUTED_SUFFIX


def zookeeper_path(database: str, table: str) -> str:
    """Where the replicas of one shard of ``database.table`` meet in ZooKeeper/Keeper."""
    return f"{ZK_TABLES}/{{shard}}/{database}/{table}"


def clusterize(sql: str, cluster: str) -> list[str]:
    """The statements that apply ``sql`` (one single-node forward statement) to ``cluster``."""
    on = f" ON CLUSTER {_identifier(cluster)}"
    if m := _CREATE_TABLE.match(sql):
        return _create_table(sql, m, on, cluster)
    if m := _CREATE_DB.match(sql):
        return [m.group(1) + on + sql[m.end():]]
    if m := _CREATE_VIEW.match(sql):
        return [m.group(1) + on + sql[m.end():]]
    if m := _ALTER.match(sql):
        head, database, table, rest = m.groups()
        if _SETS_NON_REPLICATED_WINDOW.match(rest):
            return []
        out = [f"{head}{database}.{table}{on}{rest}"]
        if _COLUMN_CHANGE.match(rest):
            out.append(f"DROP TABLE IF EXISTS {database}.{distributed_name(table)}{on}")
            out.append(_distributed(database, table, on, cluster, sharding_keys()[table]))
        return out
    if m := _DROP.match(sql):
        head, database, table = m.groups()
        return [f"{head}{database}.{distributed_name(table)}{on}", f"{head}{database}.{table}{on}"]
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
    return [local, _distributed(database, table, on, cluster, _sharding_key(sql, table))]


def _distributed(database: str, table: str, on: str, cluster: str, key: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{distributed_name(table)}{on} AS {database}.{table} "
        f"ENGINE = Distributed({_identifier(cluster)}, {database}, {table}, cityHash64({key}))"
    )


def _sharding_key(create_table: str, table: str) -> str:
    """The first column of the sorting key of a ``CREATE TABLE``."""
    order = _ORDER_BY.search(create_table)
    if order is None:
        raise ValueError(f"{table}: no ORDER BY to shard by")
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
