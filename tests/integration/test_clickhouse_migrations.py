"""Migrations on both real engines: applied once, recorded, safe twice and concurrently, drift refused."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

import pytest

from learnpulse.settings import ClickHouseSettings, Settings
from schemas.clickhouse import tables as T
from schemas.clickhouse.migrate import MigrationDrift, migrate, recorded, status
from schemas.clickhouse.migrations import all_migrations
from sinks.engines import engine_from_url
from sinks.rows import COLUMNS
from tests.conftest import Proc


@pytest.fixture
def ch(clickhouse_url):
    engine = engine_from_url(clickhouse_url)
    yield engine
    engine.close()


def test_clickhouse_migrate_applies_every_migration_once_and_records_it(ch):
    applied = migrate(ch)
    assert applied == [m.id for m in all_migrations()]
    assert migrate(ch) == []
    assert all(s.applied and s.recorded_checksum == s.checksum for s in status(ch))
    ((n,),) = ch.query("SELECT count() FROM {db}.schema_migrations FINAL")
    assert int(n) == len(applied)


def test_clickhouse_tables_have_the_columns_the_sinks_insert(ch):
    migrate(ch)
    actual: dict[str, list[str]] = {}
    for table, name in ch.query(
        "SELECT table, name FROM system.columns WHERE database = {d:String}",
        {"d": ch.database},
    ):
        actual.setdefault(str(table), []).append(str(name))
    for table, columns in {
        **COLUMNS,
        T.SINK_PROGRESS: T.PROGRESS_COLUMNS,
        T.FORGOTTEN_LEARNERS: T.FORGOTTEN_COLUMNS,
    }.items():
        assert actual.get(table) == list(columns), table
    views = {
        str(r[0]) for r in ch.query("SELECT name FROM system.tables WHERE database = {d:String}", {"d": ch.database})
    }
    assert {T.XAPI_EVENTS_ALL, T.STATEMENTS_CURRENT, T.ACTIVITY_DAILY_MV, T.ACTIVITY_DAILY} <= views
    cols = [
        str(r[0])
        for r in ch.query(
            "SELECT name FROM system.columns WHERE database = {d:String} AND table = 'xapi_events_all'",
            {"d": ch.database},
        )
    ]
    assert cols == ["event_id", "emission_time", "event"]


def test_clickhouse_migrate_concurrently_in_threads_ends_with_one_schema(clickhouse_url):
    engines = [engine_from_url(clickhouse_url) for _ in range(3)]
    errors: list[BaseException] = []

    def run(engine):
        try:
            migrate(engine)
        except BaseException as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        assert set(recorded(engines[0])) == {m.id for m in all_migrations()}
    finally:
        for e in engines:
            e.close()


@pytest.mark.clickhouse_server
def test_clickhouse_migrate_commands_run_concurrently_against_the_server(tmp_path, server_url):
    settings = Settings(home=tmp_path / "home", clickhouse=ClickHouseSettings(url=server_url))
    procs = [Proc(["db", "migrate"], settings, tmp_path / f"migrate{i}.log") for i in range(3)]
    codes = [p.popen.wait(120) for p in procs]
    for p in procs:
        p.stop()
    assert codes == [0, 0, 0], "\n".join(p.tail() for p in procs)
    engine = engine_from_url(server_url)
    try:
        assert set(recorded(engine)) == {m.id for m in all_migrations()}
        ((n,),) = engine.query("SELECT count() FROM system.tables WHERE database = {d:String} AND name = 'statements'",
                               {"d": engine.database})  # fmt: skip
        assert int(n) == 1
    finally:
        engine.close()


def test_clickhouse_migration_edited_after_apply_is_refused(ch, monkeypatch):
    migrate(ch)
    import schemas.clickhouse.migrate as M

    original = M.all_migrations

    def edited():
        ms = original()
        return [replace(ms[0], forwards=ms[0].forwards + ("SELECT 1",))] + ms[1:]

    monkeypatch.setattr(M, "all_migrations", edited)
    with pytest.raises(MigrationDrift, match="0001_statements"):
        migrate(ch)


def test_clickhouse_a_retried_insert_with_its_token_adds_nothing_to_any_sink_table(clickhouse_url):
    """Every table a sink writes keeps a deduplication window (0016); on 18.16 the token is not sent."""
    from sinks.lrs_rows import LRS_COLUMNS

    engine = engine_from_url(clickhouse_url)
    try:
        migrate(engine)
        tokens_work = engine.server_version() >= (22, 2)
        table = "lrs_voids"
        cols = LRS_COLUMNS[table]
        row = ["school-t", uuid.uuid4(), uuid.uuid4(), 1_767_607_200_456]
        data = [[v] for v in row]
        full = f"{engine.database}.{table}"
        for _ in range(2):
            engine.insert(full, cols, data, dedup_token="sink:lrs_voids:1:abc")
        engine.insert(full, cols, data, dedup_token="sink:lrs_voids:1:other")
        ((n,),) = engine.query(f"SELECT count() FROM {{db}}.{table} WHERE school = 'school-t'")
        assert int(n) == (2 if tokens_work else 3)
    finally:
        engine.close()


def test_the_cluster_form_for_current_releases_is_valid_sql_there(chdb_url):
    # chDB is a current ClickHouse (no ZooKeeper to run it): its own parser checks every
    # statement `db ddl --cluster` prints for it; the 18.16 form runs in test_clickhouse_cluster.py.
    from schemas.clickhouse.cluster import OncePerShard
    from schemas.clickhouse.migrate import schema_sql

    engine = engine_from_url(chdb_url)
    try:
        statements = schema_sql(engine.server_version(), "learnpulse", "learnpulse")
        # Data statements (backfills) run on one replica and replicate from there; ALTERs of
        # the replicated tables on one replica of each shard (OncePerShard).
        def on_one_replica(sql: str) -> bool:
            return sql.startswith("INSERT") or isinstance(sql, OncePerShard)

        assert any(isinstance(s, OncePerShard) for s in statements)
        assert all("ON CLUSTER learnpulse" in s for s in statements if not on_one_replica(s)), statements
        def parsed(sql: str) -> str:
            literal = sql.replace("\\", "\\\\").replace("'", "\\'")
            ((formatted,),) = engine.query(f"SELECT formatQuery('{literal}')")
            return formatted

        for sql in statements:
            formatted = parsed(sql)
            assert ("ON CLUSTER learnpulse" in formatted) != on_one_replica(sql), formatted
        first_table = next(s for s in statements if "ORDER BY" in s)
        with pytest.raises(Exception, match="(?i)syntax"):
            parsed(first_table.replace("ORDER BY", "ORDER"))
    finally:
        engine.close()
