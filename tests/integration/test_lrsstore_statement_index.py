"""The accepted-id index on both stores: SQLite (a file shared by processes) and PostgreSQL.

One contract, run against both engines: exactly one reservation wins, whoever asks and
from which process; reservations become accepted or are freed; a crashed holder's
reservation is freed on its restart or taken over once stale; reads by id; voids;
forget-learner; the bound Consistent-Through takes from it; pruning the bodies the sinks have.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator

import orjson
import pytest

from producers.lrsstore.statement_index import SqlStatementIndex
from schemas.lrs_store import AcceptedStatement, Claim, Holder
from schemas.xapi.compare import comparison_key
from schemas.xapi.timefmt import parse_ms

A = Holder("gw-a", "run-1", 1)
B = Holder("gw-b", "run-1", 1)


@pytest.fixture
def index(lrs_store_url: str) -> Iterator[SqlStatementIndex]:
    idx = SqlStatementIndex.open(lrs_store_url)
    try:
        yield idx
    finally:
        idx.close()


def _accepted(sid: str, learner: str = "l1", voids: str = "", stored_ms: int = 1_000) -> AcceptedStatement:
    return AcceptedStatement(sid, b'{"id":"%s"}' % sid.encode(), stored_ms, learner, voids)


def test_lrsstore_index_reserve_confirm_then_offered_again_is_accepted_entry(index):
    assert index.reserve([Claim("s", A, ["x1", "x2"])], 1_000, 0) == [{}]
    # Held while A's Kafka transaction runs: B learns who holds it, nothing is reserved for B.
    [held] = index.reserve([Claim("s", B, ["x1", "x3"])], 1_001, 0)
    assert set(held) == {"x1"} and not held["x1"].accepted and held["x1"].holder == A
    index.confirm([("s", A, [_accepted("x1"), _accepted("x2")])], 1_005)
    [again] = index.reserve([Claim("s", B, ["x1"])], 1_010, 0)
    e = again["x1"]
    assert e.accepted and e.body == b'{"id":"x1"}' and e.stored_ms == 1_000 and e.acked_ms == 1_005
    # Schools never see each other's ids.
    assert index.reserve([Claim("other", B, ["x1"])], 1_010, 0) == [{}]
    assert index.get("s", ["x1", "x2", "x3", "nope"]).keys() == {"x1", "x2", "x3"}


def test_lrsstore_index_same_id_twice_in_one_group_goes_to_the_first_claim(index):
    out = index.reserve([Claim("s", A, ["d1"]), Claim("s", B, ["d1", "d2"])], 1_000, 0)
    assert out[0] == {}
    assert set(out[1]) == {"d1"} and out[1]["d1"].holder == A


def test_lrsstore_index_release_frees_only_the_holders_reservations(index):
    index.reserve([Claim("s", A, ["r1"])], 1_000, 0)
    index.release([("s", B, ["r1"])])  # not B's: nothing happens
    assert "r1" in index.get("s", ["r1"])
    index.release([("s", A, ["r1"])])
    assert index.get("s", ["r1"]) == {}
    # An accepted id is never released.
    index.reserve([Claim("s", A, ["r2"])], 1_000, 0)
    index.confirm([("s", A, [_accepted("r2")])], 1_001)
    index.release([("s", A, ["r2"])])
    assert index.get("s", ["r2"])["r2"].accepted


def test_lrsstore_index_crashed_holder_freed_on_restart_or_taken_over_when_stale(index):
    index.reserve([Claim("s", Holder("gw-a", "run-1", 7), ["c1"])], 1_000, 0)
    index.reserve([Claim("s", Holder("gw-b", "run-1", 7), ["c2"])], 1_000, 0)
    # Not stale yet: held.
    assert set(index.reserve([Claim("s", B, ["c1"])], 2_000, 500)[0]) == {"c1"}
    # The same gateway restarted (new incarnation): its old reservations are freed, no one else's.
    assert index.release_orphans("gw-a", "run-2") == 1
    assert index.get("s", ["c1"]) == {} and "c2" in index.get("s", ["c2"])
    # Stale (reserved before the limit): taken over by the next writer.
    taker = Holder("gw-c", "run-1", 1)
    assert index.reserve([Claim("s", taker, ["c2"])], 200_000, 100_000) == [{}]
    assert index.get("s", ["c2"])["c2"].holder == taker
    # The old holder's late confirmation changes nothing: the taker's copy is the one answered for.
    index.confirm([("s", Holder("gw-b", "run-1", 7), [_accepted("c2")])], 200_001)
    assert not index.get("s", ["c2"])["c2"].accepted


def test_lrsstore_index_voided_forget_learner_and_oldest_unsunk(index):
    index.reserve([Claim("s", A, ["t1", "v1", "o1"])], 1_000, 0)
    index.confirm([("s", A, [_accepted("t1", "ada"), _accepted("v1", "bob", voids="t1", stored_ms=1_100)])], 1_200)
    assert index.voided("s", ["t1", "v1", "zz"]) == {"t1"}
    assert index.voided("other", ["t1"]) == set()
    # o1 still pending (stored 1000 = reserved), t1/v1 acknowledged at 1200.
    assert index.oldest_unsunk_ms(1_300) == 1_000
    index.confirm([("s", A, [_accepted("o1", "ada", stored_ms=1_000)])], 1_250)
    assert index.oldest_unsunk_ms(1_300) is None
    assert index.oldest_unsunk_ms(1_210) == 1_000  # o1 acknowledged after the sink's progress
    index.reserve([Claim("s2", A, ["t2"])], 1_000, 0)
    index.confirm([("s2", A, [_accepted("t2", "ada")])], 1_200)
    assert index.forget_learner("s", "ada") == 2
    assert set(index.get("s", ["t1", "v1", "o1"])) == {"v1"} and "t2" in index.get("s2", ["t2"])
    assert index.forget_learner(None, "ada") == 1  # every school
    assert index.get("s2", ["t2"]) == {}


def _race(url: str, holder: Holder, ids: list[str], start, results) -> None:
    idx = SqlStatementIndex.open(url)
    start.wait()
    won: list[str] = []
    for sid in ids:  # one claim per id, as single-statement requests arrive
        if idx.reserve([Claim("s", holder, [sid])], 1_000, 0) == [{}]:
            won.append(sid)
    idx.close()
    results.put(won)


def test_lrsstore_index_processes_racing_on_the_same_ids_exactly_one_wins_each(lrs_store_url: str):
    SqlStatementIndex.open(lrs_store_url).close()  # the table exists before the race
    ids = [f"id-{n:03d}" for n in range(150)]
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_race, args=(lrs_store_url, Holder(f"gw-{p}", "run", 1), ids[::step], start, results))
        for p, step in enumerate((1, 1, -1, 2))
    ]
    for p in procs:
        p.start()
    start.set()
    won = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    flat = [sid for w in won for sid in w]
    assert sorted(flat) == ids  # every id reserved exactly once, by one process


def test_lrsstore_index_confirm_and_reserve_confirms_first_in_one_transaction(index):
    index.reserve([Claim("s", A, ["k1"])], 1_000, 0)
    # B offers the id A is confirming in the same transaction: it finds it accepted, not held.
    [out] = index.confirm_and_reserve([("s", A, [_accepted("k1")])], 1_005, [Claim("s", B, ["k1", "k2"])], 1_006, 0)
    assert set(out) == {"k1"} and out["k1"].accepted and out["k1"].body == b'{"id":"k1"}'
    assert out["k1"].acked_ms == 1_005
    # k2 is B's reservation now: A finds it held by B.
    [held] = index.reserve([Claim("s", A, ["k2"])], 1_010, 0)
    assert not held["k2"].accepted and held["k2"].holder == B


def _stored(sid: str, timestamp: str) -> AcceptedStatement:
    body = {
        "id": sid, "timestamp": timestamp, "stored": "2026-12-06T08:00:00.000Z",
        "actor": {"mbox": "mailto:a@example.com"}, "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": f"https://example.org/q/{sid}"}, "result": {"score": {"raw": 3}},
    }  # fmt: skip
    return AcceptedStatement(sid, orjson.dumps(body), 1_000, "l1")


def test_lrsstore_index_prune_keeps_only_the_comparison_key_of_the_oldest_acknowledged(index):
    stored = {f"p{i}": _stored(f"p{i}", f"2026-12-06T07:0{i}:00.250+01:00") for i in range(4)}
    for i, sid in enumerate(stored):
        index.reserve([Claim("s", A, [sid])], 1_000, 0)
        index.confirm([("s", A, [stored[sid]])], 1_000 + 1_000 * i)  # acked at 1000, 2000, 3000, 4000
    index.reserve([Claim("s", A, ["held"])], 1_000, 0)
    # A body with no form to compare by (no timestamp) stays whole and does not stop pruning.
    index.reserve([Claim("s", A, ["odd"])], 1_000, 0)
    index.confirm([("s", A, [_accepted("odd")])], 500)

    assert index.prune(3_500, 2) == 1  # the odd one (kept) and the oldest
    assert index.prune(3_500, 2) == 2
    assert index.prune(3_500, 2) == 0
    odd = index.get("s", ["odd"])["odd"]
    assert odd.body == b'{"id":"odd"}' and not odd.pruned
    entries = index.get("s", [*stored, "held"])
    for sid in ("p0", "p1", "p2"):
        e = entries[sid]
        doc = orjson.loads(stored[sid].body)
        assert e.pruned and e.body is None and e.accepted
        assert e.compare_key == comparison_key(doc) and e.timestamp_ms == parse_ms(doc["timestamp"])
        assert e.stored_ms == 1_000 and e.acked_ms > 0
    assert entries["p3"].body == stored["p3"].body and not entries["p3"].pruned
    assert not entries["held"].accepted and entries["held"].body is None and not entries["held"].pruned
    # A re-sent id still finds its entry; erasure still finds pruned entries.
    [again] = index.reserve([Claim("s", B, ["p0"])], 9_000, 0)
    assert again["p0"].pruned
    assert index.forget_learner("s", "l1") == 5


def test_lrsstore_index_made_by_an_older_version_gets_the_new_columns(lrs_store_url: str):
    from producers.lrsstore.database import Database

    db = Database(lrs_store_url)
    blob = "BLOB" if db.dialect == "sqlite" else "BYTEA"
    # The table's first form, with one accepted statement in it.
    db.ensure([
        f"""CREATE TABLE lrs_statement_index (
            school TEXT NOT NULL, statement_id TEXT NOT NULL, state SMALLINT NOT NULL, gateway TEXT NOT NULL,
            incarnation TEXT NOT NULL, request BIGINT NOT NULL, reserved_ms BIGINT NOT NULL, body {blob},
            stored_ms BIGINT NOT NULL DEFAULT 0, learner TEXT NOT NULL DEFAULT '', voids TEXT NOT NULL DEFAULT '',
            acked_ms BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (school, statement_id))"""
    ])  # fmt: skip
    old = _stored("o1", "2026-12-06T07:00:00Z")
    with db.transaction() as cur:
        cur.execute(
            "INSERT INTO lrs_statement_index (school, statement_id, state, gateway, incarnation, request, "
            "reserved_ms, body, stored_ms, learner, acked_ms) VALUES (?, ?, 1, 'g', 'r', 1, 1, ?, 1000, 'l1', 1000)",
            ("s", "o1", old.body),
        )
    db.close()

    idx = SqlStatementIndex.open(lrs_store_url)
    again = SqlStatementIndex.open(lrs_store_url)  # a second gateway starting on the same store
    try:
        assert idx.get("s", ["o1"])["o1"].body == old.body
        assert idx.prune(2_000, 10) == 1
        e = again.get("s", ["o1"])["o1"]
        assert e.pruned and e.compare_key == comparison_key(orjson.loads(old.body))
    finally:
        idx.close()
        again.close()


def test_lrsstore_index_voided_lookup_uses_the_voids_index_not_a_scan_of_the_school(index):
    # Every read by id asks whether the statement is voided. Without the index that is a scan
    # of every entry of the school (bodies included): reads by id grew slower with every
    # statement accepted (0.1 -> 0.35 s p50 over 65,000 statements in bench_end_to_end).
    plans: list[str] = []
    raw = index.db._conn  # noqa: SLF001 - the plan of the statement the index runs
    if index.db.dialect == "sqlite":
        sql = index.voided_sql(1)
        plans = [str(row) for row in raw.execute("EXPLAIN QUERY PLAN " + sql, ("s", "x")).fetchall()]
    else:
        with raw.cursor() as cur:
            cur.execute("SET enable_seqscan = off")  # a tiny table: ask what the plan can use
            cur.execute("EXPLAIN " + index.voided_sql(1).replace("?", "%s"), ("s", "x"))
            plans = [row[0] for row in cur.fetchall()]
        raw.rollback()
    assert any("lrs_statement_index_voids" in p for p in plans), plans
