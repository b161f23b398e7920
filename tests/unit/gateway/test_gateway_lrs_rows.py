"""The LRS read index rows (sinks.lrs_rows) and the read SQL (reporting.lrs), without a server."""

from __future__ import annotations

import re
import uuid

import pytest

from reporting import lrs
from schemas.clickhouse.migrations import all_migrations
from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.errors import InvalidStatement
from schemas.identity import canonical_ifi
from sinks.lrs_rows import LRS_COLUMNS, agent_key, lrs_rows

SID = "e05aa883-acaf-40ad-bf54-02c8ce485fb0"
STORED = "2024-03-01T10:00:00.250Z"


def _env(*statements, school="school-a"):
    return StatementEnvelope(school, "learner", 0, tuple(StatementEntry("c", "c", s) for s in statements))


def _st(**extra):
    return {"id": SID, "stored": STORED, "actor": {"mbox": "mailto:ada@example.com"},
            "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
            "object": {"id": "http://example.com/a"}, **extra}  # fmt: skip


def test_lrs_rows_direct_and_related_agents_and_activities():
    team = {"objectType": "Group", "member": [{"mbox": "mailto:t1@example.com"}, {"openid": "http://t2.example"}]}
    st = _st(
        actor={"objectType": "Group", "mbox": "mailto:g@example.com", "member": [{"mbox": "mailto:m@example.com"}]},
        context={"registration": "ABCDEF00-0000-4000-8000-000000000000", "instructor": {"mbox": "mailto:p@example.com"},
                 "team": team, "contextActivities": {"parent": {"id": "http://example.com/course"},
                                                     "category": [{"id": "http://example.com/cat"}]},
                 "contextAgents": [{"objectType": "contextAgent", "agent": {"mbox": "mailto:ca@example.com"}}]},
        authority={"account": {"homePage": "http://lrs", "name": "school-a"}},
    )  # fmt: skip
    rows = lrs_rows(_env(st))
    agents = {r[1]: r[3] for r in rows["lrs_agents"]}

    def key(a):
        return agent_key(canonical_ifi(a))

    assert agents[key({"mbox": "mailto:g@example.com"})] == 1
    assert agents[key({"mbox": "mailto:m@example.com"})] == 1  # member of the actor Group
    for related in (
        {"mbox": "mailto:p@example.com"},
        {"mbox": "mailto:t1@example.com"},
        {"openid": "http://t2.example"},
        {"mbox": "mailto:ca@example.com"},
        {"account": {"homePage": "http://lrs", "name": "school-a"}},
    ):
        assert agents[key(related)] == 0
    assert len(agents) == 7  # the anonymous team has no IFI of its own
    assert {r[1]: r[3] for r in rows["lrs_activities"]} == {
        "http://example.com/a": 1, "http://example.com/course": 0, "http://example.com/cat": 0
    }  # fmt: skip
    (row,) = rows["lrs_statements"]
    assert row[:5] == ("school-a", 1709287200250, uuid.UUID(SID), "http://adlnet.gov/expapi/verbs/completed",
                       "abcdef00-0000-4000-8000-000000000000")  # fmt: skip
    assert rows["lrs_voids"] == []
    assert all("mailto" not in str(r) for r in rows["lrs_agents"])  # digests, not addresses


def test_lrs_rows_substatement_counts_as_related_only():
    sub = {"objectType": "SubStatement", "actor": {"mbox": "mailto:s@example.com"}, "verb": {"id": "http://v"},
           "object": {"id": "http://example.com/sub"},
           "context": {"contextActivities": {"other": [{"id": "http://example.com/o"}]}}}  # fmt: skip
    rows = lrs_rows(_env(_st(object=sub)))
    assert {r[1]: r[3] for r in rows["lrs_activities"]} == {"http://example.com/sub": 0, "http://example.com/o": 0}
    assert {r[3] for r in rows["lrs_agents"] if r[1] == agent_key("mbox:mailto:s@example.com")} == {0}


def test_lrs_rows_voiding_statement_and_statement_ref():
    target = str(uuid.uuid4())
    void = _st(
        verb={"id": "http://adlnet.gov/expapi/verbs/voided"}, object={"objectType": "StatementRef", "id": target}
    )
    rows = lrs_rows(_env(void))
    assert rows["lrs_voids"] == [("school-a", uuid.UUID(target), uuid.UUID(SID), 1709287200250)]
    (row,) = rows["lrs_statements"]
    assert row[5:] == (1, uuid.UUID(target), 1)
    ref = _st(verb={"id": "http://example.com/commented"}, object={"objectType": "StatementRef", "id": target})
    (row,) = lrs_rows(_env(ref))["lrs_statements"]
    assert row[5:] == (1, uuid.UUID(target), 0)
    assert lrs_rows(_env(ref))["lrs_voids"] == []


def test_lrs_rows_deterministic_so_replays_rewrite_identical_keys():
    env = _env(_st(), _st(id=str(uuid.uuid4()), actor={"account": {"homePage": "http://h", "name": "n"}}))
    assert lrs_rows(env) == lrs_rows(env)


def test_lrs_rows_refuses_non_canonical_statement():
    with pytest.raises(InvalidStatement):
        lrs_rows(
            _env({"actor": {"mbox": "mailto:a@example.com"}, "verb": {"id": "http://v"}, "object": {"id": "http://a"}})
        )


def test_lrs_columns_match_migration_ddl():
    ddl = "\n".join(f for m in all_migrations() if m.id in ("0010_lrs_index", "0014_attachment_refs") for f in m.forwards)
    for table, cols in {**LRS_COLUMNS, "lrs_attachments": lrs.ATTACHMENT_COLUMNS}.items():
        body = re.search(rf"CREATE TABLE IF NOT EXISTS {{db}}\.{table} \((.*?)\) ENGINE", ddl, re.DOTALL).group(1)
        declared = [line.split()[0] for line in body.strip().splitlines()]
        assert tuple(declared) == cols, table


def test_agent_index_key_is_the_same_on_write_and_read():
    ifi = canonical_ifi({"mbox": "mailto:Ada@Example.com"})
    assert lrs.agent_key(ifi) == agent_key(ifi)


def test_reporting_lrs_query_sql_binds_every_value():
    class Recorder:
        database = "db"

        def __init__(self):
            self.calls = []

        def server_version(self):
            return (26, 9, 2)

        def query(self, sql, params=None):
            self.calls.append((sql, params))
            return []

    ch = Recorder()
    store = lrs.LrsStore(ch)
    secret_values = ["mbox:mailto:x@example.com", "http://verb.example/'; DROP", "http://act.example/1",
                     "0a1b2c3d-0000-4000-8000-000000000000"]  # fmt: skip
    store.query("sch'ool", agent=secret_values[0], verb=secret_values[1], activity=secret_values[2],
                registration=secret_values[3], related_activities=True, related_agents=False, since_ms=1, until_ms=2,
                ascending=True, after=(5, SID), limit=10)  # fmt: skip
    sql, params = ch.calls[0]
    for v in [*secret_values, "sch'ool", SID]:
        assert v not in sql
    assert params["verb"] == secret_values[1] and params["agent"] == lrs.agent_key(secret_values[0])
    assert params["n"] == 11 and params["after_ms"] == 5
    assert "direct = 1" in sql and sql.count("{db}.lrs_statements") == 1 + 2 * lrs.REF_DEPTH
