"""DDL as code, offline: migrations well-formed, idempotent, rendered for old servers, columns in sync."""

from __future__ import annotations

import re

import pytest

from schemas.clickhouse import tables as T
from schemas.clickhouse.ddl import needs_mapping, render
from schemas.clickhouse.engine import ClickHouseError
from schemas.clickhouse.migrate import checksum, execute_idempotent
from schemas.clickhouse.migrations import all_migrations

OLD, MODERN = (18, 16, 1), (26, 9, 2)
OURS = [m for m in all_migrations() if m.id[:4] <= "0009"]


def test_clickhouse_migrations_numbered_in_order_with_unique_ids():
    ids = [m.id for m in all_migrations()]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [m.id[:4] for m in OURS] == ["0001", "0002", "0003", "0004", "0005"]


@pytest.mark.parametrize("migration", OURS, ids=lambda m: m.id)
def test_clickhouse_migration_forwards_are_idempotent_and_have_backwards(migration):
    created = set()
    for sql in migration.forwards:
        head = " ".join(sql.split())[:80]
        if head.startswith("INSERT INTO"):
            # The only data statement allowed: the rollup backfill (duplicate-insensitive states).
            assert "activity_daily" in head, head
            continue
        assert re.match(r"CREATE (TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS \{db\}\.\w+", head), head
        created.add(re.search(r"\{db\}\.(\w+)", head).group(1))
    dropped = {re.search(r"\{db\}\.(\w+)", sql).group(1) for sql in migration.backwards}
    assert created == dropped


@pytest.mark.parametrize("migration", OURS, ids=lambda m: m.id)
def test_clickhouse_old_server_rendering_drops_what_18_16_lacks(migration):
    for sql in migration.forwards:
        old = render(sql, OLD, "lp")
        for modern_only in ("DateTime64", "LowCardinality", "CODEC", "INDEX ", "SETTINGS", "DateTime('UTC')"):
            assert modern_only not in old, (modern_only, old)
        assert "{db}" not in old and "lp." in old
        assert render(sql, MODERN, "lp") == sql.replace("{db}", "lp")


def test_clickhouse_renderer_keeps_column_lists_well_formed():
    sql = """CREATE TABLE IF NOT EXISTS {db}.x (
        a UUID,
        b LowCardinality(Nullable(String)),
        c DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
        INDEX i a TYPE bloom_filter(0.01) GRANULARITY 4,
        INDEX j b TYPE set(64) GRANULARITY 4
    ) ENGINE = MergeTree ORDER BY a
    SETTINGS index_granularity = 8192"""
    old = render(sql, OLD, "d")
    assert (
        " ".join(old.split())
        == "CREATE TABLE IF NOT EXISTS d.x ( a UUID, b Nullable(String), c DateTime ) ENGINE = MergeTree ORDER BY a"
    )
    assert needs_mapping(OLD) and not needs_mapping((19, 1)) and not needs_mapping(MODERN)


def _declared_columns(table: str) -> list[str]:
    """The table's columns after every migration: its CREATE, then each ADD COLUMN (appended)."""
    found: list[str] | None = None
    for m in all_migrations():
        for sql in m.forwards:
            head = re.search(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+) \((.*)\) ENGINE", sql, re.DOTALL)
            if head and head.group(1) == table:
                body = head.group(2)
                found = [
                    line.split()[0]
                    for line in (part.strip() for part in re.split(r",\n", body))
                    if line and not line.startswith("INDEX")
                ]
            added = re.search(rf"ALTER TABLE \{{db\}}\.{table} ADD COLUMN IF NOT EXISTS (\w+)", sql)
            if added and found is not None:
                found.append(added.group(1))
    if found is None:
        raise AssertionError(f"no DDL for {table}")
    return found


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        (T.STATEMENTS, T.STATEMENT_COLUMNS),
        (T.STATEMENTS_RAW, T.RAW_COLUMNS),
        (T.STATEMENT_VOIDS, T.VOID_COLUMNS),
        (T.ENGAGEMENT, T.ENGAGEMENT_COLUMNS),
        (T.MASTERY, T.MASTERY_COLUMNS),
        (T.COHORT_HEALTH, T.COHORT_HEALTH_COLUMNS),
        (T.ALERTS, T.ALERT_COLUMNS),
        (T.QUARANTINE, T.QUARANTINE_COLUMNS),
        (T.SINK_PROGRESS, T.PROGRESS_COLUMNS),
        (T.FORGOTTEN_LEARNERS, T.FORGOTTEN_COLUMNS),
    ],
)
def test_clickhouse_sink_column_lists_match_the_ddl(table, columns):
    assert _declared_columns(table) == list(columns)


def test_clickhouse_checksum_changes_with_the_sql():
    m = OURS[0]
    from dataclasses import replace

    assert checksum(m) == checksum(replace(m))
    assert checksum(m) != checksum(replace(m, forwards=m.forwards + ("SELECT 1",)))


def test_clickhouse_old_server_alter_column_loses_if_exists_only():
    add = "ALTER TABLE {db}.statements ADD COLUMN IF NOT EXISTS violations Array(LowCardinality(String))"
    assert render(add, OLD, "d") == "ALTER TABLE d.statements ADD COLUMN violations Array(String)"
    assert render(add, MODERN, "d") == add.replace("{db}", "d")
    drop = "ALTER TABLE {db}.statements DROP COLUMN IF EXISTS violations"
    assert render(drop, OLD, "d") == "ALTER TABLE d.statements DROP COLUMN violations"


class _RacedEngine:
    """Answers every statement with one error, as a server does to the migrator that lost a race."""

    def __init__(self, error):
        self.error = error

    def execute(self, sql, params=None):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        ClickHouseError("Code: 57. Table t.statements already exists", 57),
        ClickHouseError("Code: 82. Database t already exists", 82),
        # Two concurrent ``ADD COLUMN IF NOT EXISTS`` both pass the check on a server; the
        # second is refused with ILLEGAL_COLUMN (seen in CI on three concurrent `db migrate`).
        ClickHouseError("Code: 44. DB::Exception: Cannot add column violations: column with this name already exists.", 44),
    ],
)
def test_clickhouse_migrator_that_lost_a_race_to_create_takes_it_as_done(error):
    execute_idempotent(_RacedEngine(error), "ALTER TABLE t.statements ADD COLUMN IF NOT EXISTS violations String")


def test_clickhouse_migrator_still_fails_on_other_column_errors():
    error = ClickHouseError("Code: 44. DB::Exception: Cannot convert column x to UInt8", 44)
    with pytest.raises(ClickHouseError):
        execute_idempotent(_RacedEngine(error), "ALTER TABLE t.statements MODIFY COLUMN x UInt8")


def test_clickhouse_old_server_table_settings_become_a_no_op():
    sql = "ALTER TABLE {db}.lrs_voids MODIFY SETTING non_replicated_deduplication_window = 100"
    assert render(sql, OLD, "lp") == "SELECT 1"
    assert render(sql, MODERN, "lp") == sql.replace("{db}", "lp")
    # Only whole table-setting statements: a CREATE with SETTINGS keeps its other lines.
    assert render("CREATE TABLE {db}.t (a UInt8) ENGINE = MergeTree ORDER BY a\nSETTINGS x = 1", OLD, "lp").startswith(
        "CREATE TABLE lp.t"
    )
