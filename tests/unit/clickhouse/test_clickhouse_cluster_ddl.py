"""The cluster form of every migration, offline: replicated engines, ON CLUSTER, Distributed reads."""

from __future__ import annotations

import re

import pytest

from schemas.clickhouse.cluster import OncePerShard, clusterize, distributed_name
from schemas.clickhouse.migrate import _LEDGER_DDL, forward_statements, sql_script
from schemas.clickhouse.migrations import all_migrations

OLD, MODERN = (18, 16, 1), (26, 9, 2)
ENGINE = re.compile(r"ENGINE = (\w*)MergeTree(?:\(([^()]*)\))?")
CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+) \(")


def _flat(sql: str) -> str:
    return " ".join(sql.split())


def _single_node_tables() -> dict[str, tuple[str, str]]:
    """{table: (engine variant, engine args)} of every CREATE TABLE in the migrations and the ledger."""
    found = {}
    for sql in [f for m in all_migrations() for f in m.forwards] + [_LEDGER_DDL]:
        if m := CREATE_TABLE.search(_flat(sql)):
            engine = ENGINE.search(sql)
            found[m.group(1)] = (engine.group(1), engine.group(2) or "")
    return found


def test_every_table_of_the_migrations_gets_a_replicated_engine_of_the_same_variant_and_a_distributed_table():
    tables = _single_node_tables()
    assert {"statements", "statements_raw", "activity_daily", "learner_names", "schema_migrations"} <= set(tables)
    for sql in [f for m in all_migrations() for f in m.forwards] + [_LEDGER_DDL]:
        if not (m := CREATE_TABLE.search(_flat(sql))):
            continue
        table = m.group(1)
        variant, args = tables[table]
        local, distributed, all_shards = clusterize(sql, "lp")
        path = f"'/clickhouse/tables/{{shard}}/{{db}}/{table}', '{{replica}}'"
        expected = f"ENGINE = Replicated{variant}MergeTree({path}{', ' + args if args else ''})"
        assert expected in local, (table, local)
        assert _flat(local).startswith(f"CREATE TABLE IF NOT EXISTS {{db}}.{table} ON CLUSTER lp (")
        # Everything after the engine (partitioning, sorting key, TTL, settings) is kept, but
        # the non-replicated window (tested below).
        assert local.split(")", 1)[0] == sql.split(")", 1)[0].replace(f".{table} (", f".{table} ON CLUSTER lp (")
        after = ENGINE.split(sql)[-1].replace(", non_replicated_deduplication_window = 100", "")
        assert ENGINE.split(local)[-1] == after
        assert distributed.startswith(
            f"CREATE TABLE IF NOT EXISTS {{db}}.{distributed_name(table)} ON CLUSTER lp AS {{db}}.{table} "
            f"ENGINE = Distributed(lp, {{db}}, {table}, cityHash64("
        )
        # The all-shards database's table of the same name: the same Distributed table, so a
        # process across shards reads and writes it with the local name.
        assert all_shards == distributed.replace(
            f"{{db}}.{distributed_name(table)} ON CLUSTER", f"{{db}}_all_shards.{table} ON CLUSTER"
        )


def test_pipeline_tables_are_sharded_by_school_so_copies_of_a_key_meet_in_one_shard():
    by_school = 0
    for sql in [f for m in all_migrations() for f in m.forwards]:
        m = CREATE_TABLE.search(_flat(sql))
        if m and re.search(r"ORDER BY \(school\b", _flat(sql)):
            assert clusterize(sql, "lp")[1].endswith("cityHash64(school))"), m.group(1)
            by_school += 1
    assert by_school >= 15
    # A materialized view's target whose key starts with another column is routed by school
    # like its source (the view writes the shard its source row is on).
    by_time = next(f for m in all_migrations() for f in m.forwards if ".engagement_by_time (" in f)
    assert re.search(r"ORDER BY \(grain, school\b", _flat(by_time))
    assert clusterize(by_time, "lp")[1].endswith("cityHash64(school))")
    ledger = clusterize(_LEDGER_DDL, "lp")[1]
    assert ledger.endswith("cityHash64(id))")


def test_views_materialized_views_database_and_data_statements_in_cluster_form():
    rollup = next(m for m in all_migrations() if m.id == "0003_rollups")
    create_mv, backfill = rollup.forwards[1], rollup.forwards[2]
    (mv,) = clusterize(create_mv, "lp")
    # The view reads and writes the local (replicated) tables: each replica feeds its own rollup.
    assert mv.startswith("CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.activity_daily_mv ON CLUSTER lp TO {db}.activity_daily AS")
    assert "FROM {db}.statements\n" in mv
    assert clusterize(backfill, "lp") == [backfill]
    views = next(m for m in all_migrations() if m.id == "0004_views")
    for sql in views.forwards:
        view, all_shards = clusterize(sql, "lp")
        name = re.match(r"\s*CREATE VIEW IF NOT EXISTS \{db\}\.(\w+) ON CLUSTER lp AS", view).group(1)
        # Each shard's view reads its shard (FINAL stays exact: a key's copies are on one shard);
        # the all-shards view reads that view on every shard.
        assert all_shards == (f"CREATE TABLE IF NOT EXISTS {{db}}_all_shards.{name} ON CLUSTER lp AS {{db}}.{name} "
                              f"ENGINE = Distributed(lp, {{db}}, {name})")  # fmt: skip
    assert clusterize("CREATE DATABASE IF NOT EXISTS {db}", "lp") == [
        "CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER lp", "CREATE DATABASE IF NOT EXISTS {db}_all_shards ON CLUSTER lp"
    ]


def test_alters_and_drops_reach_every_server_and_the_distributed_table():
    violations = next(m for m in all_migrations() if m.id == "0012_statement_violations").forwards[0]
    local, drop, create, drop_all, create_all = clusterize(violations, "lp")
    # Once per shard, not ON CLUSTER: 18.16's lock for a replicated table's ALTER can stop a
    # replica's DDL worker for good; replication applies it on the shard's other replicas.
    assert isinstance(local, OncePerShard)
    assert local.startswith("ALTER TABLE {db}.statements ADD COLUMN IF NOT EXISTS violations")
    assert "ON CLUSTER" not in local
    # The Distributed table (no data of its own) is made again with the new columns.
    assert drop == "DROP TABLE IF EXISTS {db}.statements_distributed ON CLUSTER lp"
    statements = next(m for m in all_migrations() if m.id == "0001_statements").forwards[0]
    assert create == clusterize(statements, "lp")[1]
    assert drop_all == "DROP TABLE IF EXISTS {db}_all_shards.statements ON CLUSTER lp"
    assert create_all == clusterize(statements, "lp")[2]
    assert clusterize("DROP TABLE IF EXISTS {db}.learner_activity_hourly", "lp") == [
        "DROP TABLE IF EXISTS {db}_all_shards.learner_activity_hourly ON CLUSTER lp",
        "DROP TABLE IF EXISTS {db}.learner_activity_hourly_distributed ON CLUSTER lp",
        "DROP TABLE IF EXISTS {db}.learner_activity_hourly ON CLUSTER lp",
    ]
    # Replicated tables deduplicate through ZooKeeper/Keeper by default: 0016 has no cluster form.
    for window in next(m for m in all_migrations() if m.id == "0016_dedup_window").forwards:
        assert clusterize(window, "lp") == []
    (setting,) = clusterize("ALTER TABLE {db}.quarantine MODIFY SETTING index_granularity = 8192", "lp")
    assert setting == "ALTER TABLE {db}.quarantine MODIFY SETTING index_granularity = 8192"
    assert isinstance(setting, OncePerShard)
    assert not any(isinstance(s, OncePerShard) for s in clusterize("DROP TABLE IF EXISTS {db}.quarantine", "lp"))


def test_the_non_replicated_window_is_left_out_of_every_settings_list_and_the_others_kept():
    for sql in [f for m in all_migrations() for f in m.forwards]:
        for out in clusterize(sql, "lp"):
            assert "non_replicated_deduplication_window" not in out, out
    statements = next(m for m in all_migrations() if m.id == "0001_statements").forwards[0]
    assert "non_replicated_deduplication_window" in statements
    assert "SETTINGS index_granularity = 8192\n" in clusterize(statements, "lp")[0] + "\n"
    only = "CREATE TABLE IF NOT EXISTS {db}.t (\n x UInt8\n) ENGINE = MergeTree\nORDER BY x\nSETTINGS non_replicated_deduplication_window = 7\n"
    assert "SETTINGS" not in clusterize(only, "lp")[0]


@pytest.mark.parametrize("version", [OLD, MODERN], ids=["18.16", "26.9"])
def test_every_forward_statement_renders_in_cluster_form_with_macros_kept_and_the_database_filled(version):
    for m in all_migrations():
        for forward in m.forwards:
            statements = forward_statements(forward, version, "lpdb", "lp")
            assert statements or m.id == "0016_dedup_window", m.id
            for sql in statements:
                assert "{db}" not in sql
                if "Replicated" in sql:
                    assert "'/clickhouse/tables/{shard}/lpdb/" in sql and "'{replica}'" in sql
                if version == OLD and "SETTING" in sql:
                    # 18.16 has no table settings at all: the window is its default there.
                    assert sql == "SELECT 1"


def test_single_node_form_is_unchanged_without_a_cluster():
    for m in all_migrations():
        for forward in m.forwards:
            (sql,) = forward_statements(forward, MODERN, "lpdb", None)
            assert "ON CLUSTER" not in sql and "Replicated" not in sql


def test_cluster_names_are_plain_identifiers():
    with pytest.raises(ValueError, match="cluster name"):
        clusterize("CREATE DATABASE IF NOT EXISTS {db}", "lp; DROP TABLE x")


@pytest.mark.parametrize("version", [OLD, MODERN], ids=["18.16", "26.9"])
def test_the_alters_stay_once_per_shard_when_rendered_and_the_script_says_so(version):
    forward = next(m for m in all_migrations() if m.id == "0024_progress_ms").forwards[0]
    alter, *distributed = forward_statements(forward, version, "lpdb", "lp")
    assert isinstance(alter, OncePerShard) and alter.startswith("ALTER TABLE lpdb.sink_progress ADD COLUMN")
    assert distributed and all("ON CLUSTER lp" in d and not isinstance(d, OncePerShard) for d in distributed)
    script = sql_script([alter, *distributed])
    assert script.startswith("-- on one replica of every shard") and script.count("-- on one replica") == 1
