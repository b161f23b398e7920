"""Debian's PostgreSQL as the LRS store: `learnpulse stack up --postgres` and the test fixture.

The server listens on loopback only, authenticates by password (SCRAM), and the generated
password lives only in a 0600 passfile named by the URL, never in the URL itself.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from learnpulse.settings import KafkaSettings, LrsStoreSettings, Settings
from producers.lrsstore.database import Database
from tests.conftest import free_port
from tests.integration.test_stack import run_cli


@pytest.mark.postgres
def test_lrsstore_postgres_fixture_gives_a_private_database_with_transactions(postgres_url: str):
    parts = urlsplit(postgres_url)
    assert parts.hostname == "127.0.0.1" and parts.password is None
    passfile = Path(parse_qs(parts.query)["passfile"][0])
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    db = Database(postgres_url)
    try:
        db.ensure(["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"])
        with db.transaction() as cur:
            cur.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("a", 1))
        with pytest.raises(RuntimeError), db.transaction() as cur:
            cur.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("b", 2))
            raise RuntimeError("rolled back")
        with db.transaction() as cur:
            assert cur.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [("a", 1)]
            # Loopback only.
            assert cur.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    finally:
        db.close()


@pytest.fixture
def pg_stack() -> Iterator[Settings]:
    # A home reachable by the `postgres` user when the tests run as root (pytest's are 0700).
    home = Path(tempfile.mkdtemp(prefix="learnpulse-pgstack-"))
    home.chmod(0o711)
    settings = Settings(
        home=home,
        kafka=KafkaSettings(port=free_port(), controller_port=free_port()),
        lrs_store=LrsStoreSettings(postgres_port=free_port()),
    )
    try:
        yield settings
    finally:
        run_cli(["stack", "down"], settings)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.kafka
@pytest.mark.postgres
def test_stack_up_postgres_starts_keeps_data_across_restart_and_down_stops(pg_stack: Settings):
    first = run_cli(["stack", "up", "--postgres"], pg_stack)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "postgres: started" in first.stdout
    url = first.stdout.split("LEARNPULSE_LRS_STORE__URL='", 1)[1].split("'", 1)[0]
    assert urlsplit(url).password is None and urlsplit(url).port == pg_stack.lrs_store.postgres_port
    passfile = Path(parse_qs(urlsplit(url).query)["passfile"][0])
    password = passfile.read_text().strip().rsplit(":", 1)[1]
    assert len(password) >= 24 and password not in first.stdout + first.stderr
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    db = Database(url)
    db.ensure(["CREATE TABLE IF NOT EXISTS kept (k TEXT PRIMARY KEY)"])
    with db.transaction() as cur:
        cur.execute("INSERT INTO kept (k) VALUES (?)", ("survives",))
    db.close()

    again = run_cli(["stack", "up", "--postgres"], pg_stack)
    assert again.returncode == 0 and "postgres: already running" in again.stdout, again.stdout + again.stderr
    status = run_cli(["stack", "status"], pg_stack)
    assert "postgres: running" in status.stdout, status.stdout

    down = run_cli(["stack", "down"], pg_stack)
    assert "postgres: stopped" in down.stdout, down.stdout + down.stderr
    assert "postgres: stopped" in run_cli(["stack", "status"], pg_stack).stdout

    restarted = run_cli(["stack", "up", "--postgres"], pg_stack)
    assert "postgres: started" in restarted.stdout, restarted.stdout + restarted.stderr
    db = Database(url)
    with db.transaction() as cur:
        assert cur.execute("SELECT k FROM kept").fetchall() == [("survives",)]
    db.close()
    assert os.stat(passfile).st_size > 0
