"""Access definitions, offline: what each role may read; deploy files in sync with the code.

The SQL is parsed by the real modern engine in tests/integration/test_clickhouse_access.py,
and the 18.16 users file is loaded into the real server there.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from schemas.clickhouse import access as A
from schemas.clickhouse import tables as T
from sinks.lrs_rows import LRS_COLUMNS

REPO = Path(__file__).resolve().parents[3]
DIGEST = hashlib.sha256(b"pw").hexdigest()
PRIVATE = {T.STATEMENTS_RAW, T.XAPI_EVENTS_ALL, *LRS_COLUMNS}


def _granted(sql: list[str], role: str) -> set[str]:
    out = set()
    for s in sql:
        m = re.fullmatch(r"GRANT SELECT ON lp\.(\w+) TO " + role, s)
        if m:
            out.add(m.group(1))
    return out


def test_clickhouse_researcher_reads_only_pseudonymous_tables():
    sql = A.access_sql("lp", tuple(LRS_COLUMNS))
    researcher = _granted(sql, A.RESEARCHER)
    assert researcher == set(T.RESEARCH_TABLES)
    assert not researcher & PRIVATE
    assert not _granted(sql, A.OPERATOR) & PRIVATE
    assert not _granted(sql, A.SCHOOL) & PRIVATE
    assert {T.STATEMENTS_RAW, *LRS_COLUMNS} <= _granted(sql, A.LRS)


def test_clickhouse_names_directory_is_for_the_operators_app_only():
    sql = A.access_sql("lp", tuple(LRS_COLUMNS))
    assert T.LEARNER_NAMES not in T.RESEARCH_TABLES and T.LEARNER_NAMES not in T.SCHOOL_TABLES
    for role in (A.RESEARCHER, A.SCHOOL, A.LRS):
        assert T.LEARNER_NAMES not in _granted(sql, role), role
    assert T.LEARNER_NAMES in _granted(sql, A.OPERATOR)


def test_clickhouse_school_user_gets_a_row_policy_on_every_school_table():
    sql = A.school_user_sql("lp", "school_a_reader", "school-000", DIGEST)
    assert sql[0].startswith("CREATE USER IF NOT EXISTS school_a_reader IDENTIFIED WITH sha256_hash BY ")
    assert "pw" not in " ".join(sql).replace(DIGEST, "")
    policies = [s for s in sql if s.startswith("CREATE ROW POLICY")]
    assert {re.search(r"ON lp\.(\w+)", s).group(1) for s in policies} == set(T.SCHOOL_TABLES)
    assert all("USING school = 'school-000' TO school_a_reader" in s for s in policies)


@pytest.mark.parametrize(
    ("user", "school"),
    [("bad-name", "s"), ("ok", "x' OR 1=1 --"), ("ok", ""), ("1abc", "s"), ("ok", "s\\'")],
)
def test_clickhouse_school_user_refuses_unsafe_names(user, school):
    with pytest.raises(ValueError):
        A.school_user_sql("lp", user, school, DIGEST)


def test_clickhouse_staff_see_all_rows_whatever_the_server_default():
    sql = A.access_sql("lp")
    staff = [s for s in sql if "learnpulse_staff" in s]
    assert {re.search(r"ON lp\.(\w+)", s).group(1) for s in staff} == set(A.POLICY_TABLES)
    assert all(s.endswith("USING 1 TO " + ", ".join(A.STAFF)) for s in staff)


def test_clickhouse_deploy_files_are_the_rendered_definitions():
    text = (REPO / "deploy/clickhouse/access.sql").read_text()
    statements = [s.strip() for s in re.sub(r"^--.*$", "", text, flags=re.MULTILINE).split(";") if s.strip()]
    assert statements == A.access_sql("learnpulse", tuple(LRS_COLUMNS))
    xml = (REPO / "deploy/clickhouse/users.d/learnpulse-18.16.xml").read_text()
    assert xml == A.users_xml_1816("learnpulse", "0" * 64, "0" * 64)


def test_clickhouse_across_shards_every_role_reads_the_all_shards_tables_and_policies_stay_on_the_local_ones():
    single, sharded = A.access_sql("lp", tuple(LRS_COLUMNS)), A.access_sql("lp", tuple(LRS_COLUMNS), across_shards=True)
    assert not [s for s in single if "lp_all_shards" in s]
    # The erasure's wait for mutations on every shard uses cluster() (REMOTE).
    assert "GRANT REMOTE ON *.* TO learnpulse_writer" in sharded and "GRANT REMOTE ON *.* TO learnpulse_writer" not in single
    for statement in single:
        if statement.startswith("GRANT") and " ON lp." in statement:
            assert statement in sharded
            assert statement.replace(" ON lp.", " ON lp_all_shards.") in sharded
    # Row policies only on the local tables: every shard applies them to the initial user's roles.
    policies = [s for s in sharded if s.startswith("CREATE ROW POLICY")]
    assert policies == [s for s in single if s.startswith("CREATE ROW POLICY")]
    assert not [s for s in policies if "lp_all_shards" in s]
