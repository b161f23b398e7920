"""Access control against the real engines.

- Current ClickHouse (chDB, 26.9): every statement of the access definitions is parsed by
  the engine's own parser (chDB has no users to grant to, so the semantics are checked
  offline in tests/unit/clickhouse/test_clickhouse_access.py).
- Debian's 18.16 server: the users file is loaded live and enforced: the operator reads
  but cannot write, neither can leave the pipeline's database, the writer can migrate and
  insert.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest

from learnpulse.settings import Settings
from learnpulse.stack import ClickHouseServer
from schemas.clickhouse.access import access_sql, school_user_sql, users_xml_1816
from schemas.clickhouse.engine import ClickHouseError, ClickHouseUnavailable
from schemas.clickhouse.migrate import migrate
from sinks.engines import ServerEngine, engine_from_url
from sinks.lrs_rows import LRS_COLUMNS


def test_clickhouse_access_statements_parse_on_current_clickhouse(chdb_url):
    ch = engine_from_url(chdb_url)
    try:
        statements = access_sql(ch.database, tuple(LRS_COLUMNS))
        statements += school_user_sql(ch.database, "school_000_reader", "school-000", hashlib.sha256(b"x").hexdigest())
        for sql in statements:
            ch.query(f"EXPLAIN AST {sql}")
        with pytest.raises(ClickHouseError):
            ch.query("EXPLAIN AST GRANT SELEKT ON x.y TO z")  # the check can fail
    finally:
        ch.close()


@pytest.mark.clickhouse_server
def test_clickhouse_old_server_users_file_enforces_read_only_operator(
    server_url, stack_home, clickhouse_server_settings
):
    admin = engine_from_url(server_url)
    migrate(admin)
    db = admin.database
    server_dir = ClickHouseServer(Settings(home=stack_home, clickhouse=clickhouse_server_settings)).dir
    users_d = server_dir / "users.d"
    users_d.mkdir(exist_ok=True)
    passwords = {"writer": uuid.uuid4().hex, "operator": uuid.uuid4().hex}
    digest = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in passwords.items()}
    path = users_d / f"learnpulse-{db}.xml"
    path.write_text(users_xml_1816(db, digest["writer"], digest["operator"]))
    port = clickhouse_server_settings.server_tcp_port
    try:

        def connect(user: str) -> ServerEngine:
            return ServerEngine("127.0.0.1", port, f"learnpulse_{user}", passwords[user], db)

        deadline = time.monotonic() + 30
        while True:  # the server reloads users.d by itself within a few seconds
            try:
                operator = connect("operator")
                operator.query("SELECT count() FROM {db}.statements")
                break
            except (ClickHouseError, ClickHouseUnavailable):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        writer = connect("writer")
        assert migrate(writer) == []
        writer.insert(f"{db}.forgotten_learners", ["learner", "forgotten_at", "reason"], [["a" * 64], [_now()], ["t"]])
        assert operator.query("SELECT count() FROM {db}.forgotten_learners") == [(1,)]
        with pytest.raises(ClickHouseError) as err:
            operator.insert(f"{db}.forgotten_learners", ["learner", "forgotten_at", "reason"], [["b"], [_now()], ["t"]])
        assert err.value.code == 164  # READONLY
        admin.execute("CREATE DATABASE IF NOT EXISTS {db}_other")
        with pytest.raises(ClickHouseError) as err:
            operator.query("SELECT count() FROM system.one, {db}_other.x".replace("{db}", db))
        assert err.value.code == 291  # DATABASE_ACCESS_DENIED
        operator.close()
        writer.close()
    finally:
        path.unlink()
        admin.execute("DROP DATABASE IF EXISTS {db}_other")
        admin.close()


def _now():
    from datetime import datetime

    return datetime(2026, 1, 1)
