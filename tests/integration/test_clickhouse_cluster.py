"""The cluster form on real servers: ZooKeeper and two Debian clickhouse-server replicas of one shard.

Rows are built by the statements sink's own builder (``sinks.rows.statement_rows``) from
simulator envelopes and inserted as the sink inserts them (one block per table per batch,
``sinks/consumer.py``), so a retried batch is the same block: ZooKeeper remembers its
hash and the other replica drops it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from benchmarks.bench_sinks import make_envelopes
from learnpulse.settings import Settings
from learnpulse.stack_cluster import ClickHouseReplica, cluster_services
from schemas import metrics
from schemas.clickhouse import tables as T
from schemas.clickhouse.cluster import distributed_name
from schemas.clickhouse.migrate import migrate, recorded
from sinks.engines import ServerEngine, engine_from_url
from sinks.rows import COLUMNS, OLD_SERVER_RANGE, Rows, statement_rows
from tests.conftest import start_sink, wait_for

pytestmark = pytest.mark.clickhouse_server

SECRET = b"cluster-secret"
# How long a replica stays stopped while the other one takes inserts (the 60 s).
STOPPED_S = 60
WRITTEN = (T.STATEMENTS, T.STATEMENTS_RAW)


def _engine(replica: ClickHouseReplica, database: str) -> ServerEngine:
    return ServerEngine("127.0.0.1", replica.tcp_port, "default", replica.password, database)


@pytest.fixture
def replicas(clickhouse_cluster: Settings) -> list[ClickHouseReplica]:
    _zookeeper, replicas = cluster_services(clickhouse_cluster)
    return replicas


@pytest.fixture
def cluster_db(clickhouse_cluster: Settings, replicas: list[ClickHouseReplica]) -> Iterator[list[ServerEngine]]:
    """A fresh database migrated in its cluster form through replica 1; an engine per replica."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    engines = [_engine(r, database) for r in replicas]
    migrate(engines[0], cluster=clickhouse_cluster.clickhouse.cluster_name)
    yield engines
    for e in engines:
        e.close()


def _batches(envelopes: int, per_batch: int) -> list[Rows]:
    """The statements sink's rows of ``envelopes`` simulator envelopes, ``per_batch`` envelopes a batch."""
    envs = make_envelopes(envelopes)
    out = []
    for i in range(0, len(envs), per_batch):
        rows: Rows = {}
        for env in envs[i : i + per_batch]:
            for table, table_rows in statement_rows(SECRET, OLD_SERVER_RANGE, env.encode()).items():
                rows.setdefault(table, []).extend(table_rows)
        out.append(rows)
    return out


def _insert(ch: ServerEngine, batch: Rows) -> None:
    """One batch as the sink writes it: a block per table, in the sink's table order."""
    for table in WRITTEN:
        rows = batch[table]
        ch.insert(f"{ch.database}.{table}", COLUMNS[table], [list(c) for c in zip(*rows, strict=True)])


def _ids(batches: list[Rows]) -> set[uuid.UUID]:
    i = T.STATEMENT_ID_INDEX
    return {row[i] for b in batches for row in b[T.STATEMENTS]}


def _counts(ch: ServerEngine) -> tuple[int, ...]:
    """Rows as stored (no FINAL, no GROUP BY: a doubled block shows) and distinct ids, per written table."""
    out: list[int] = []
    for table in WRITTEN:
        ((rows, ids),) = ch.query(f"SELECT count(), uniqExact(statement_id) FROM {ch.database}.{table}")
        out += [rows, ids]
    return tuple(out)


def test_every_table_is_replicated_on_both_replicas_and_migrating_again_applies_nothing(clickhouse_cluster, cluster_db):
    first, second = cluster_db
    tables = {name: engine for name, engine in second.query(
        "SELECT name, engine FROM system.tables WHERE database = {db:String}", {"db": second.database})}  # fmt: skip
    for table in (*COLUMNS, T.ACTIVITY_DAILY, T.SINK_PROGRESS, T.FORGOTTEN_LEARNERS, "schema_migrations"):
        assert tables[table].startswith("Replicated") and tables[table].endswith("MergeTree"), (table, tables[table])
        assert tables[distributed_name(table)] == "Distributed", table
    assert tables[T.ACTIVITY_DAILY] == "ReplicatedAggregatingMergeTree"
    assert tables[T.ACTIVITY_DAILY_MV] == "MaterializedView"
    # The ALTERs ran on replica 1 alone (once per shard, not ON CLUSTER): replication gave replica 2
    # their columns before its Distributed tables were made again from its local ones.
    # (A replicated ALTER that outwaits replication_alter_columns_timeout goes on in the background:
    # waited for here, on a busy machine; a Distributed table made from stale columns stays stale.)
    columns = "SELECT table, name, type FROM system.columns WHERE database = {db:String} ORDER BY table, name"

    def read_columns(engine: ServerEngine) -> list[tuple[str, str, str]]:
        return engine.query(columns, {"db": engine.database})

    wait_for(lambda: read_columns(first) == read_columns(second), 120, "the same columns on both replicas")
    on_first, on_second = read_columns(first), read_columns(second)
    assert on_first == on_second
    for table, column in ((T.STATEMENTS, "violations"), (T.QUARANTINE, "learners"), (T.SINK_PROGRESS, "caught_up_ms")):
        for name in (table, distributed_name(table)):
            assert (name, column) in {(t, c) for t, c, _type in on_second}, (name, column)
    # The ledger is replicated too (asynchronously, like every table): once the second replica
    # has it, a migrator there knows every migration is applied.
    wait_for(lambda: recorded(second) == recorded(first), 120, "the ledger on replica 2")
    assert migrate(second, cluster=clickhouse_cluster.clickhouse.cluster_name) == []


def _stop_merges(engines: list[ServerEngine]) -> None:
    """No background merge on the written tables: a doubled block stays countable."""
    for ch in engines:
        for table in WRITTEN:
            ch.execute(f"SYSTEM STOP MERGES {ch.database}.{table}")


def test_a_batch_retried_against_the_other_replica_is_written_once(cluster_db):
    first, second = cluster_db
    _stop_merges(cluster_db)
    batches = _batches(envelopes=400, per_batch=6)
    for n, batch in enumerate(batches):
        # The first attempt's answer is lost (every batch), so the sink retries it on the
        # other replica; every third batch it goes the other way round.
        a, b = (first, second) if n % 3 else (second, first)
        _insert(a, batch)
        _insert(b, batch)
    ids = _ids(batches)
    expected = (len(ids), len(ids), len(ids), len(ids))
    assert len(ids) > 300
    # 0 lost and 0 doubled on both replicas, counted before any merge could collapse copies.
    wait_for(lambda: _counts(first) == expected, 120, f"replica 1 to hold {expected}")
    wait_for(lambda: _counts(second) == expected, 120, f"replica 2 to hold {expected}")
    stored = {r[0] for r in second.query(f"SELECT statement_id FROM {second.database}.statements")}
    assert stored == ids


def test_a_replica_stopped_for_a_minute_while_inserts_go_on_catches_up(clickhouse_cluster, cluster_db, replicas):
    first, second = cluster_db
    batches = _batches(envelopes=300, per_batch=5)
    _insert(first, batches[0])
    wait_for(lambda: _counts(second) == _counts(first), 120, "replica 2 to hold the first batch")
    replicas[1].stop()
    try:
        # A process starting now finds the schema applied and runs no ON CLUSTER statement
        # (which would wait for the stopped replica, then fail).
        assert migrate(first, cluster=clickhouse_cluster.clickhouse.cluster_name) == []
        stopped_at = time.monotonic()
        written = 1
        # Inserts go on against replica 1 for the whole stop, spread over the minute.
        for batch in batches[1:]:
            _insert(first, batch)
            written += 1
            time.sleep(max(0.0, stopped_at + STOPPED_S * written / len(batches) - time.monotonic()))
        assert written == len(batches)
    finally:
        replicas[1].up(timeout=120)
    ids = _ids(batches)
    expected = (len(ids), len(ids), len(ids), len(ids))
    assert _counts(first) == expected
    second.close()
    back = _engine(replicas[1], first.database)
    try:
        wait_for(lambda: _counts(back) == expected, 180, f"replica 2 to catch up to {expected}")
    finally:
        back.close()


# Reports as a reader writes them over ``{t}`` (the statements table or its Distributed
# table) and ``{rollup}``; none relies on merges having happened.
READS = (
    "SELECT school, uniqExact(statement_id), uniqExact(learner), max(timestamp) FROM {db}.{t} GROUP BY school ORDER BY school",
    "SELECT course, verb_id, uniqExact(statement_id) FROM {db}.{t} GROUP BY course, verb_id ORDER BY course, verb_id",
    "SELECT learner, argMax(result_score_scaled, timestamp) FROM {db}.{t} GROUP BY learner ORDER BY learner LIMIT 50",
    "SELECT school, day, uniqExactMerge(statements), uniqExactMerge(learners), uniqExactIfMerge(passed)"
    " FROM {db}.{rollup} GROUP BY school, day ORDER BY school, day",
)  # fmt: skip


def test_reads_through_the_distributed_tables_equal_a_single_node_run(cluster_db, server_url):
    first, second = cluster_db
    single = engine_from_url(server_url)
    try:
        migrate(single)
        batches = _batches(envelopes=200, per_batch=8)
        for batch in batches:
            _insert(first, batch)
            _insert(single, batch)
        expected = _counts(single)
        wait_for(lambda: _counts(second) == expected, 120, "replica 2 to hold every batch")
        for sql in READS:
            alone = single.query(sql.format(db=single.database, t=T.STATEMENTS, rollup=T.ACTIVITY_DAILY))
            assert alone, sql
            for engine in (first, second):
                spread = engine.query(sql.format(
                    db=engine.database, t=distributed_name(T.STATEMENTS), rollup=distributed_name(T.ACTIVITY_DAILY)))  # fmt: skip
                assert spread == alone, sql
    finally:
        single.close()


def test_the_cluster_listens_on_loopback_only_keeps_its_secrets_private_and_stops_cleanly(clickhouse_cluster, replicas):
    from tests.integration.test_stack import _listening_addresses

    zookeeper, _ = cluster_services(clickhouse_cluster)
    ports = [zookeeper.port] + [p for r in replicas for p in (r.tcp_port, r.http_port, r.interserver_port)]
    for port in ports:
        assert _listening_addresses(port) == {"127.0.0.1"}, port
    for r in replicas:
        # The generated config names the replicas' password (remote_servers).
        config = r.dir / "config.xml"
        assert r.password in config.read_text() and config.stat().st_mode & 0o777 == 0o600
        assert f"<replica>r{r.replica}</replica>" in config.read_text()
    # Stopping a replica ends its process and frees its port; up brings it back on the same data.
    pid = replicas[1].pid()
    assert pid is not None and replicas[1].stop()
    assert replicas[1].pid() is None and not replicas[1].pidfile.exists()
    wait_for(lambda: _listening_addresses(replicas[1].tcp_port) == set(), 30, "the stopped replica's port to close")
    assert replicas[1].up(timeout=120) == "started"
    assert ServerEngine("127.0.0.1", replicas[1].tcp_port, "default", replicas[1].password, "default").query(
        "SELECT 1") == [(1,)]  # fmt: skip


@pytest.mark.kafka
def test_a_sink_whose_replica_stops_goes_on_against_the_other_and_nothing_is_lost_or_doubled(
    clickhouse_cluster, cluster_db, replicas, kafka
):
    from benchmarks.bench_sinks import produce
    from schemas.topics import Topic
    from sinks.specs import SinkParameters, build_sinks

    first, second = cluster_db
    # The sink's URL names replica 1 and, as alt_hosts, replica 2 (what `stack up` prints).
    url = replicas[0].url_for(first.database)
    assert f"alt_hosts=127.0.0.1:{replicas[1].tcp_port}" in url
    engine = engine_from_url(url)
    params = SinkParameters(bootstrap=kafka.bootstrap_servers, topic_prefix=kafka.topic_prefix, secret=SECRET,
                            max_rows=200, max_wait_s=0.5, group_id=f"cluster-{uuid.uuid4().hex[:8]}")  # fmt: skip
    (sink,) = build_sinks(params, engine, ["statements"])
    envelopes = make_envelopes(600)
    topic = Topic.STATEMENTS.physical(kafka.topic_prefix)
    expected = {r[T.STATEMENT_ID_INDEX] for env in envelopes
                for r in statement_rows(SECRET, OLD_SERVER_RANGE, env.encode())[T.STATEMENTS]}  # fmt: skip
    def distinct(ch: ServerEngine) -> int:
        ((n,),) = ch.query(f"SELECT uniqExact(statement_id) FROM {ch.database}.statements")
        return n

    switches = metrics.CLICKHOUSE_REPLICA_SWITCHES._value.get()
    stop, errors, thread = start_sink(sink)
    try:
        half = len(envelopes) // 2
        produce(kafka.bootstrap_servers, topic, envelopes[:half])
        wait_for(lambda: distinct(first) > 0 or errors, 120, "the sink's first rows on replica 1")
        replicas[0].stop()
        try:
            produce(kafka.bootstrap_servers, topic, envelopes[half:])
            # Everything arrives while replica 1 is down: the sink went on against replica 2.
            wait_for(lambda: errors or distinct(second) == len(expected), 240, f"{len(expected)} statements on replica 2")
            assert not errors, errors
            # The move to the other replica is counted (learnpulse_clickhouse_replica_switches_total).
            assert metrics.CLICKHOUSE_REPLICA_SWITCHES._value.get() > switches
        finally:
            replicas[0].up(timeout=120)
    finally:
        stop.set()
        thread.join(60)
        engine.close()
    ids = {r[0] for r in second.query(f"SELECT statement_id FROM {second.database}.statements")}
    assert ids == expected
    ((final_rows,),) = second.query(f"SELECT count() FROM {second.database}.statements FINAL")
    assert final_rows == len(expected)
    back = _engine(replicas[0], second.database)
    try:
        wait_for(lambda: distinct(back) == len(expected), 180, "replica 1 to catch up after its restart")
    finally:
        back.close()


def _throwaway_migration(monkeypatch: pytest.MonkeyPatch) -> str:
    """A migration after every real one (in this process only): one more table, pending everywhere."""
    from schemas.clickhouse import migrate as runner
    from schemas.clickhouse.migrations import Migration

    known = runner.all_migrations()
    extra = Migration(
        id="9999_throwaway_replica_check",
        # Laid out as the real migrations are (the cluster form reads ORDER BY on its own line).
        forwards=("CREATE TABLE IF NOT EXISTS {db}.throwaway_replica_check (id UInt8)\nENGINE = MergeTree\nORDER BY id",),
        backwards=("DROP TABLE IF EXISTS {db}.throwaway_replica_check",),
    )
    monkeypatch.setattr(runner, "all_migrations", lambda: [*known, extra])
    return extra.id


def test_migrating_with_a_replica_down_is_refused_at_once_naming_it_and_applies_once_it_is_back(
    clickhouse_cluster, cluster_db, replicas, monkeypatch
):
    import threading

    from schemas.clickhouse.migrate import ReplicasUnreachable
    from tests.integration.test_stack import assert_one_line_error, run_cli

    first, second = cluster_db
    cluster = clickhouse_cluster.clickhouse.cluster_name
    down = f"127.0.0.1:{replicas[1].tcp_port}"
    replicas[1].stop()
    try:
        # Nothing pending: nothing to run ON CLUSTER, so nothing to refuse (processes start).
        assert migrate(first, cluster=cluster) == []
        pending = _throwaway_migration(monkeypatch)
        # Refused before any ON CLUSTER statement (which would wait distributed_ddl_task_timeout,
        # then fail naming no replica): the error names the silent one, and only it.
        with pytest.raises(ReplicasUnreachable) as refused:
            migrate(first, cluster=cluster)
        assert down in str(refused.value) and f"127.0.0.1:{replicas[0].tcp_port}" not in str(refused.value)
        assert pending not in recorded(first)
        # The command says it in one line, exit code != 0, no traceback (a fresh database:
        # its ledger is still to be created ON CLUSTER).
        url = replicas[0].url_for(f"t_{uuid.uuid4().hex[:10]}")
        res = run_cli(["db", "migrate"], clickhouse_cluster, {"LEARNPULSE_CLICKHOUSE__URL": url}, timeout=120)
        assert_one_line_error(res, down, "--wait-for-replicas")
        # Told to wait, it waits for the replica to come back, then applies.
        outcome: list[object] = []
        waiting = threading.Thread(
            target=lambda: outcome.append(_migrate_or_error(first, cluster, wait_for_replicas=300)), daemon=True
        )
        waiting.start()
        replicas[1].up(timeout=120)
        waiting.join(360)
        assert outcome == [[pending]]
    finally:
        replicas[1].up(timeout=120)
    # Applied ON CLUSTER: the table is on the replica that was down too.
    back = _engine(replicas[1], first.database)
    try:
        wait_for(lambda: back.query(f"EXISTS TABLE {back.database}.throwaway_replica_check") == [(1,)], 120,
                 "the throwaway table on replica 2")  # fmt: skip
    finally:
        back.close()


def _migrate_or_error(ch: ServerEngine, cluster: str, wait_for_replicas: float) -> object:
    try:
        return migrate(ch, cluster=cluster, wait_for_replicas=wait_for_replicas)
    except Exception as err:  # noqa: BLE001 - reported by the test
        return err


# -- activity_totals on two replicas (sinks/totals.py, issue 18) -------------------------
_TOTALS_SQL = (
    "SELECT school, course, cohort, toString(day) AS d, verb_id, statements, voided, learners"
    " FROM {db}.activity_totals FINAL ORDER BY school, course, cohort, d, verb_id"
)
_RECOUNT_SQL = (
    "SELECT school, course, cohort, toString(day) AS d, verb_id, uniqExactMerge(statements),"
    " uniqExactIfMerge(voided), uniqExactMerge(learners) FROM {db}.activity_daily"
    " GROUP BY school, course, cohort, day, verb_id ORDER BY school, course, cohort, d, verb_id"
)


def _totals_exact(ch: ServerEngine, statements: int) -> bool:
    """Every statement is in activity_daily and every group's totals equal its id sets."""
    totals = ch.query(_TOTALS_SQL)
    return sum(r[5] for r in ch.query(_RECOUNT_SQL)) == statements and totals == ch.query(_RECOUNT_SQL)


def _merged(batches: list[Rows]) -> Rows:
    """One batch of the rows of ``batches``."""
    out: Rows = {}
    for batch in batches:
        for table, rows in batch.items():
            out.setdefault(table, []).extend(rows)
    return out


def _write_as_the_sink(ch: ServerEngine, batch: Rows) -> None:
    """A batch as the statements sink writes it in the cluster form: its blocks, then its after-insert steps."""
    from sinks.specs import after_insert_steps

    _insert(ch, batch)
    for step in after_insert_steps("statements", replicated=True):
        step(ch, batch)


def _two_sinks_while_replica_2_fetches_nothing(first, second, tables, write_a, write_b, b_written) -> None:
    """Sink A writes through replica 1 while replica 2 fetches none of ``tables``; sink B then
    writes through replica 2 (its own connection, as a sink has) and, once its blocks are there
    (``b_written``) and its recompute has started, fetches resume; B's steps must finish."""
    db = second.database
    for t in tables:
        second.execute(f"SYSTEM STOP FETCHES {db}.{t}")
    fetching = False
    try:
        write_a(first)
        errors: list[BaseException] = []

        def sink_b() -> None:
            ch = ServerEngine(**second.connection_args(), database=db)
            try:
                write_b(ch)
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)
            finally:
                ch.close()

        thread = threading.Thread(target=sink_b, daemon=True)
        thread.start()
        # B's blocks are on replica 2 (its recompute may be waiting for A's): fetches resume.
        wait_for(b_written, 120, "sink B's rows on replica 2")
        time.sleep(1)  # B's recompute has started (and, without the wait, already written B's view)
        for t in tables:
            second.execute(f"SYSTEM START FETCHES {db}.{t}")
        fetching = True
        thread.join(300)
        assert not thread.is_alive(), "sink B's after-insert steps did not finish"
        assert not errors, errors
    finally:
        if not fetching:
            for t in tables:
                second.execute(f"SYSTEM START FETCHES {db}.{t}")


def test_totals_are_exact_on_both_replicas_when_each_sink_wrote_the_same_groups_through_its_own_replica(cluster_db):
    """Replica 2 fetches nothing while sink A writes through replica 1: without waiting for
    its replica, sink B's recompute on replica 2 would miss A's rows, A's missed B's, and
    the totals of the shared groups would stay short of the id sets on both replicas."""
    first, second = cluster_db
    from sinks.totals import batch_groups

    # Alternate envelopes to each sink: the same simulated schools, courses and days.
    envelopes = _batches(envelopes=400, per_batch=1)
    envelopes_a, envelopes_b = _merged(envelopes[0::2]), _merged(envelopes[1::2])
    assert batch_groups(envelopes_a) & batch_groups(envelopes_b), "the two batches must share groups"
    statements = len(_ids([envelopes_a, envelopes_b]))
    _two_sinks_while_replica_2_fetches_nothing(
        first, second, (T.STATEMENTS, T.ACTIVITY_DAILY), lambda ch: _write_as_the_sink(ch, envelopes_a),
        lambda ch: _write_as_the_sink(ch, envelopes_b),
        lambda: second.query(f"SELECT count() FROM {second.database}.{T.STATEMENTS}")[0][0] >= len(envelopes_b[T.STATEMENTS]),
    )  # fmt: skip
    # Both sinks are done: the totals rows replicate, and FINAL keeps the exact one on each replica.
    for n, ch in enumerate(cluster_db, 1):
        wait_for(lambda ch=ch: _totals_exact(ch, statements), 120, f"exact activity_totals on replica {n}")


def test_a_sink_goes_on_while_the_only_replica_holding_a_part_is_down_and_its_totals_settle_after(cluster_db, replicas):
    """Replica 1 lacks a part only replica 2 holds, and replica 2 stops: waiting for replica 1
    to catch up would last until replica 2 is back, with the sink stopped. The sink's step on
    replica 1 returns (its groups unsettled), and once replica 2 is back the next batch settles
    them: the totals end exact."""
    from sinks.specs import after_insert_steps
    from sinks.totals import ReplicatedRecompute, batch_groups

    first, second = cluster_db
    db = first.database
    envelopes = _batches(envelopes=600, per_batch=1)
    odd = envelopes[1::2]
    half = len(odd) // 2
    on_second, on_first, later = _merged(envelopes[0::2]), _merged(odd[:half]), _merged(odd[half:])
    assert batch_groups(on_second) & batch_groups(on_first), "the batches must share groups"
    statements = len(_ids([on_second, on_first, later]))
    (step,) = [s for s in after_insert_steps("statements", replicated=True) if isinstance(s, ReplicatedRecompute)]
    first.execute(f"SYSTEM STOP FETCHES {db}.{T.STATEMENTS}")
    first.execute(f"SYSTEM STOP FETCHES {db}.{T.ACTIVITY_DAILY}")
    try:
        _insert(second, on_second)  # only replica 2 holds these parts (and its sink's totals)
        ReplicatedRecompute()(second, on_second)
        replicas[1].stop()
    finally:
        first.execute(f"SYSTEM START FETCHES {db}.{T.STATEMENTS}")
        first.execute(f"SYSTEM START FETCHES {db}.{T.ACTIVITY_DAILY}")
    try:
        # Replica 1's queue now holds parts it cannot fetch; the sink writes through it.
        wait_for(lambda: _a_replica_inactive(first), 60, "replica 2 seen inactive")
        done = threading.Event()
        errors: list[BaseException] = []

        def sink_on_first() -> None:
            try:
                _insert(first, on_first)
                step(first, on_first)
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)
            finally:
                done.set()

        threading.Thread(target=sink_on_first, daemon=True).start()
        # Well below the server's receive_timeout (300 s), which a wait for replica 2 would reach.
        assert done.wait(120), "the sink's step waited for the stopped replica"
        assert not errors, errors
        assert batch_groups(on_first) <= step.unsettled
    finally:
        replicas[1].up(timeout=120)
    wait_for(lambda: not _a_replica_inactive(first), 120, "replica 2 active again")
    _insert(first, later)
    step(first, later)
    assert step.unsettled == set()
    for n, ch in enumerate(cluster_db, 1):
        wait_for(lambda ch=ch: _totals_exact(ch, statements), 120, f"exact activity_totals on replica {n}")


def _a_replica_inactive(ch: ServerEngine) -> bool:
    from sinks.totals import inactive_replicas

    return bool(inactive_replicas(ch, (T.ACTIVITY_DAILY,)))


def _engagement_batch(learners: range, version: int) -> Rows:
    """Hourly engagement rows of ``learners`` in two shared cohort-hours, as the engagement sink writes them."""
    from datetime import datetime

    rows = [("s-1", "c-1", "k", f"{n:064x}", "hour", datetime(2026, 3, 2, 10 + n % 2), 3 * version + n, version,
             1000 * version, datetime(2026, 3, 2, 10 + n % 2, 30), version) for n in learners]  # fmt: skip
    return {T.ENGAGEMENT: rows}


def _hourly_exact(ch: ServerEngine) -> bool:
    hourly = ch.query("SELECT school, course, cohort, toString(period_start), statements, sessions, active_ms, learners"
                      " FROM {db}.engagement_hourly FINAL ORDER BY period_start")  # fmt: skip
    want = ch.query("SELECT school, course, cohort, toString(period_start), sum(statements), sum(sessions),"
                    " sum(active_ms), count() FROM {db}.engagement FINAL WHERE grain = 'hour'"
                    " GROUP BY school, course, cohort, period_start ORDER BY period_start")  # fmt: skip
    return len(want) == 2 and hourly == want


def test_hourly_engagement_is_exact_on_both_replicas_when_each_sink_wrote_the_same_hours_through_its_own_replica(
    cluster_db,
):  # fmt: skip
    """As for activity_totals above, with engagement_hourly (sinks/hourly.py): replica 2 fetches
    nothing while sink A writes the same cohort-hours through replica 1; without its wait, sink
    B's recompute on replica 2 would miss A's rows and A's B's."""
    from sinks.specs import after_insert_steps

    first, second = cluster_db
    db = second.database
    batch_a, batch_b = _engagement_batch(range(0, 6), 1), _engagement_batch(range(6, 12), 2)

    def write(ch: ServerEngine, batch: Rows) -> None:
        rows = batch[T.ENGAGEMENT]
        ch.insert(f"{ch.database}.{T.ENGAGEMENT}", COLUMNS[T.ENGAGEMENT], [list(c) for c in zip(*rows, strict=True)])
        for step in after_insert_steps("engagement", replicated=True):
            step(ch, batch)

    _two_sinks_while_replica_2_fetches_nothing(
        first, second, (T.ENGAGEMENT, T.ENGAGEMENT_BY_TIME), lambda ch: write(ch, batch_a), lambda ch: write(ch, batch_b),
        lambda: second.query(f"SELECT count() FROM {db}.{T.ENGAGEMENT}")[0][0] >= 6,
    )  # fmt: skip
    for n, ch in enumerate(cluster_db, 1):
        wait_for(lambda ch=ch: _hourly_exact(ch), 120, f"exact engagement_hourly on replica {n}")
