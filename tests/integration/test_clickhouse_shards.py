"""Several shards on real servers: ZooKeeper and two Debian clickhouse-server 18.16 shards of one replica.

A real statements sink (Kafka in, ClickHouse out) writes through the all-shards database
(``ServerEngine.across_shards``); the same input goes through a sink into a single server.
Readers (dashboard, LRS, research SQL) and ``forget-learner`` run unchanged on the
all-shards engine and must give the single server's answers; each shard's local tables
are looked at directly to see that rows are really spread (so reading one shard's local
tables would miss some).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from benchmarks.bench_sinks import make_envelopes, produce
from learnpulse.pipeline import open_clickhouse
from learnpulse.settings import Settings
from learnpulse.stack_cluster import ClickHouseReplica, cluster_services
from reporting.dashboard import dashboard_state
from reporting.lrs import LrsStore
from reporting.progress import consistent_through
from reporting.scope import EVERY_SCHOOL
from reporting.summary import school_summaries
from schemas.clickhouse import tables as T
from schemas.clickhouse.engine import QueryLimits
from schemas.clickhouse.migrate import migrate
from schemas.topics import Topic
from sinks.engines import ServerEngine, engine_from_url, readonly_runner
from sinks.forget import forget_learners
from sinks.lrs_rows import LRS_STATEMENTS
from sinks.rows import COLUMNS, OLD_SERVER_RANGE, statement_rows
from sinks.specs import SinkParameters, build_sinks
from tests.conftest import start_sink, wait_for

pytestmark = [pytest.mark.clickhouse_server, pytest.mark.kafka]

SECRET = b"shards-secret"
ENVELOPES = 300


@dataclass
class Runs:
    sharded: ServerEngine  # the all-shards database, as every process of the cluster uses it
    shards: list[ServerEngine]  # each shard's local database, to look at what it holds
    single: ServerEngine  # the same input through a sink into one server
    ids: set[uuid.UUID]
    process: Settings  # a process of the cluster: server 1's URL, the cluster name, 2 shards


def _run_sink(kafka, engine, expected: int) -> None:
    """The statements sink over the whole topic until ``expected`` distinct statements are readable."""
    params = SinkParameters(bootstrap=kafka.bootstrap_servers, topic_prefix=kafka.topic_prefix, secret=SECRET,
                            max_rows=200, max_wait_s=0.5, group_id=f"shards-{uuid.uuid4().hex[:8]}")  # fmt: skip
    (sink,) = build_sinks(params, engine, ["statements"])
    stop, errors, thread = start_sink(sink)
    try:
        wait_for(lambda: errors or _distinct(engine) == expected, 240, f"{expected} statements through the sink")
        # The sink records its progress after it commits, up to a progress interval after the
        # rows are readable (its fetches wait on the broker meanwhile): the dashboard's
        # Consistent-Through compared below needs it on every partition.
        wait_for(lambda: errors or consistent_through(engine) is not None, 240,
                 "the sink's progress on every partition")
        assert not errors, errors
    finally:
        stop.set()
        thread.join(60)


def _distinct(ch: ServerEngine) -> int:
    ((n,),) = ch.query("SELECT uniqExact(statement_id) FROM {db}.statements")
    return int(n)


def _local(server: ClickHouseReplica, database: str) -> ServerEngine:
    return ServerEngine("127.0.0.1", server.tcp_port, "default", server.password, database)


@pytest.fixture(scope="module")
def kafka_module(kafka_settings):
    """The session broker with a topic prefix private to this module (the runs are shared by its tests)."""
    from learnpulse.topics import ensure_topics

    k = kafka_settings.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}."})
    ensure_topics(k.bootstrap_servers, k.topic_prefix, k.topic_replication)
    return k


@pytest.fixture(scope="module")
def runs(clickhouse_shards: Settings, kafka_module, server_url_module) -> Iterator[Runs]:
    kafka = kafka_module
    _zookeeper, servers = cluster_services(clickhouse_shards)
    database = f"t_{uuid.uuid4().hex[:10]}"
    # A process of the cluster as settings make it: server 1's URL, the cluster and its shards.
    process = Settings(home=clickhouse_shards.home, clickhouse=clickhouse_shards.clickhouse.model_copy(
        update={"url": servers[0].url_for(database)}))  # fmt: skip
    assert process.clickhouse.sharded
    sharded = open_clickhouse(process)
    assert sharded.database == f"{database}_all_shards"
    shards = [_local(s, database) for s in servers]
    single = engine_from_url(server_url_module)
    migrate(single)
    envelopes = make_envelopes(ENVELOPES)
    ids = {r[T.STATEMENT_ID_INDEX] for env in envelopes
           for r in statement_rows(SECRET, OLD_SERVER_RANGE, env.encode())[T.STATEMENTS]}  # fmt: skip
    produce(kafka.bootstrap_servers, Topic.STATEMENTS.physical(kafka.topic_prefix), envelopes)
    try:
        _run_sink(kafka, sharded, len(ids))
        _run_sink(kafka, single, len(ids))
        yield Runs(sharded, shards, single, ids, process)
    finally:
        for e in (sharded, single, *shards):
            e.close()


@pytest.fixture(scope="module")
def server_url_module(stack_home, clickhouse_server_settings) -> str:
    from learnpulse.stack import ClickHouseServer

    server = ClickHouseServer(Settings(home=stack_home, clickhouse=clickhouse_server_settings))
    return server.url_for(f"t_{uuid.uuid4().hex[:10]}")


def test_the_sink_spreads_statements_over_both_shards_and_each_is_stored_once(runs):
    held = [_distinct(shard) for shard in runs.shards]
    # Both shards hold some schools' statements, and together every statement once.
    assert all(n > 0 for n in held), held
    assert sum(held) == len(runs.ids)
    for table in (T.STATEMENTS, T.STATEMENTS_RAW, LRS_STATEMENTS):
        per_shard = [set(r[0] for r in s.query(f"SELECT DISTINCT school FROM {{db}}.{table}")) for s in runs.shards]
        assert not per_shard[0] & per_shard[1], (table, "a school on two shards")
    stored = {r[0] for r in runs.sharded.query("SELECT statement_id FROM {db}.statements")}
    assert stored == runs.ids


def test_a_retried_batch_through_the_distributed_tables_adds_nothing(runs):
    for shard in runs.shards:
        shard.execute("SYSTEM STOP MERGES {db}.statements")
    try:
        before = [shard.query("SELECT count() FROM {db}.statements") for shard in runs.shards]
        envs = make_envelopes(40)[:6]
        rows: dict[str, list] = {}
        for env in envs:
            for table, table_rows in statement_rows(SECRET, OLD_SERVER_RANGE, env.encode()).items():
                rows.setdefault(table, []).extend(table_rows)
        block = [list(c) for c in zip(*rows[T.STATEMENTS], strict=True)]
        # Already stored by the sink (the same statements): a batch of them sent twice, as a
        # retry after a lost answer sends it, is dropped by each shard the second time.
        runs.sharded.insert(f"{runs.sharded.database}.{T.STATEMENTS}", COLUMNS[T.STATEMENTS], block)
        once = [shard.query("SELECT count() FROM {db}.statements") for shard in runs.shards]
        runs.sharded.insert(f"{runs.sharded.database}.{T.STATEMENTS}", COLUMNS[T.STATEMENTS], block)
        twice = [shard.query("SELECT count() FROM {db}.statements") for shard in runs.shards]
        # The synchronous insert had put the block's rows on their shards when it returned.
        assert sum(o[0][0] for o in once) == sum(b[0][0] for b in before) + len(rows[T.STATEMENTS])
        assert twice == once
    finally:
        for shard in runs.shards:
            shard.execute("SYSTEM START MERGES {db}.statements")


def test_dashboard_figures_across_shards_equal_a_single_node_run(runs):
    alone = school_summaries(runs.single, EVERY_SCHOOL)
    assert len(alone) > 1
    assert school_summaries(runs.sharded, EVERY_SCHOOL) == alone
    # One shard's local tables alone miss the other shard's schools.
    assert len(school_summaries(runs.shards[0], EVERY_SCHOOL)) < len(alone)
    spread, single = dashboard_state(runs.sharded, EVERY_SCHOOL), dashboard_state(runs.single, EVERY_SCHOOL)
    # When each sink last recorded its progress: the two runs are seconds apart.
    assert spread.pop("consistent_through") and single.pop("consistent_through")
    assert spread == single
    assert len(spread["schools"]) == len(alone)


def _lrs_page(ch, school: str):
    return LrsStore(ch).query(
        school, agent=None, verb=None, activity=None, registration=None, related_activities=False,
        related_agents=False, since_ms=None, until_ms=None, ascending=True, after=None, limit=500,
    )  # fmt: skip


def test_lrs_reads_across_shards_equal_a_single_node_run(runs):
    # A school stored on the other shard than the one the engine is connected to.
    (school,) = runs.shards[1].query("SELECT any(school) FROM {db}.statements")[0]
    alone, more = _lrs_page(runs.single, school)
    assert alone and not more
    assert _lrs_page(runs.sharded, school) == (alone, more)
    assert _lrs_page(runs.shards[0], school) == ([], False)
    _ms, sid, _raw = alone[0]
    assert LrsStore(runs.sharded).get(school, sid, voided=False) == LrsStore(runs.single).get(school, sid, voided=False)


def test_research_sql_with_a_subquery_reads_every_shard(runs):
    # The subquery's max is over every shard (distributed_product_mode = 'global'), not per shard.
    # (Distinct ids: copies that a merge has not collapsed yet differ between the two runs.)
    sql = ("SELECT school, uniqExact(statement_id) FROM statements WHERE timestamp >= (SELECT max(timestamp) - 86400 * 30 FROM statements)"
           " AND learner IN (SELECT learner FROM statements WHERE verb_id LIKE '%completed') GROUP BY school ORDER BY school")  # fmt: skip
    limits = QueryLimits()
    answers = []
    for ch in (runs.single, runs.sharded):
        runner = readonly_runner(ch, limits)
        try:
            answers.append(runner.run(sql, None).rows)
        finally:
            runner.close()
    assert answers[0] and answers[1] == answers[0]


def test_forget_learner_leaves_nothing_of_the_learner_on_any_shard(runs):
    # A learner of a school on the second shard (the engine is connected to the first).
    ((learner, _school),) = runs.shards[1].query("SELECT learner, any(school) FROM {db}.statements GROUP BY learner LIMIT 1")
    others_before = _distinct(runs.sharded) - len(
        runs.sharded.query("SELECT DISTINCT statement_id FROM {db}.statements WHERE learner = {l:String}", {"l": learner}))
    report = forget_learners(runs.sharded, [learner], settle_s=0)
    assert report.statements > 0 and report.remaining == 0
    for shard in runs.shards:
        for table in (T.STATEMENTS, T.STATEMENTS_RAW):
            column = "learner" if table == T.STATEMENTS else "learners"
            cond = "learner = {l:String}" if table == T.STATEMENTS else "has(learners, {l:String})"
            assert shard.query(f"SELECT count() FROM {{db}}.{table} WHERE {cond}", {"l": learner}) == [(0,)], column
    # Nothing else was erased.
    assert _distinct(runs.sharded) == others_before


def test_the_schema_commands_of_a_sharded_process_work_on_the_local_database(runs, monkeypatch):
    from click.testing import CliRunner

    from learnpulse.cli import main

    c = runs.process.clickhouse
    for name, value in (("HOME", str(runs.process.home)), ("CLICKHOUSE__URL", c.url),
                        ("CLICKHOUSE__CLUSTER__NAME", c.cluster.name), ("CLICKHOUSE__CLUSTER__SHARDS", "2")):  # fmt: skip
        monkeypatch.setenv(f"LEARNPULSE_{name}", value)

    # Every migration is applied (the local database), and a second `db migrate` applies nothing.
    status = CliRunner().invoke(main, ["db", "status"], catch_exceptions=False)
    assert status.exit_code == 0 and "pending" not in status.output and "0019_mastery_history" in status.output
    again = CliRunner().invoke(main, ["db", "migrate"], catch_exceptions=False)
    assert again.exit_code == 0 and "0 migrations applied" in again.output, again.output
    # The all-shards database is never migrated itself (it would get a second, local schema).
    with pytest.raises(ValueError, match="all-shards database"):
        migrate(runs.sharded)
    ((engines,),) = runs.shards[1].query(
        "SELECT groupUniqArray(engine) FROM system.tables WHERE database = {d:String}", {"d": runs.sharded.database})
    assert engines == ["Distributed"]
