"""Who may read what: roles, grants and per-school row policies, rendered per server.

Current ClickHouse (SQL access control, >= 20.x; applied by ``learnpulse db access
--apply`` as a user with access management, or from ``deploy/clickhouse/access.sql``):

- ``learnpulse_researcher``: SELECT on the pseudonymous analytics tables and views only
  (:data:`~schemas.clickhouse.tables.RESEARCH_TABLES`): no raw JSON, no names or mail
  addresses (those are only in ``statements_raw``, ``xapi_events_all`` and the LRS index);
- ``learnpulse_operator``: the dashboard: the researcher's tables plus ``sink_progress`` and
  the staff directory of names ``learner_names`` (the app shows a name only to operators
  whose scope covers the school; researchers and school SQL users never get it);
- ``learnpulse_writer``: the pipeline (sinks, migrations, erasures);
- ``learnpulse_lrs``: the LRS read API (raw JSON and its index, voids, progress);
- ``learnpulse_school``: SELECT on :data:`~schemas.clickhouse.tables.SCHOOL_TABLES`, given
  to each school user together with row policies ``school = '<their school>'``
  (:func:`school_user_sql`). Staff roles get a ``USING 1`` policy on the same tables, so
  what they see never depends on the server's ``users_without_row_policies_can_read_rows``.

Several shards (``across_shards``): every process reads and writes the all-shards
database ``<db>_all_shards`` (``schemas/clickhouse/cluster.py``), so each role gets the
same SELECT grants on its tables there, and the writer its write grants. The row policies
stay on the local tables only: a query through a Distributed table is run on every shard
against the local tables, where the policies of the initial user's roles apply (ClickHouse
>= 21.12, with or without an inter-server secret); a policy on the Distributed table itself
would be checked on the initiator only, or refused by current releases.

18.16 has none of this in SQL and ignores per-table row filters in ``users.xml`` (checked:
a ``<filter>`` there does not restrict rows). Its only isolation is per database
(``allow_databases``) and read-only profiles, so :func:`users_xml_1816` defines only the
writer and the operator; researchers and school users need a current server.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from . import tables as T
from .cluster import all_shards_database

RESEARCHER = "learnpulse_researcher"
OPERATOR = "learnpulse_operator"
WRITER = "learnpulse_writer"
LRS = "learnpulse_lrs"
SCHOOL = "learnpulse_school"
STAFF = (RESEARCHER, OPERATOR, WRITER, LRS)

OPERATOR_TABLES = (*T.RESEARCH_TABLES, T.SINK_PROGRESS, T.LEARNER_NAMES)
LRS_TABLES = (T.STATEMENTS_RAW, T.STATEMENT_VOIDS, T.SINK_PROGRESS, T.XAPI_EVENTS_ALL)
# Tables whose rows are scoped per school (a `school` column) and carry row policies.
POLICY_TABLES = T.SCHOOL_TABLES

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_SCHOOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    # Names and policy conditions cannot be bound as parameters: only allow safe text.
    if not pattern.match(value):
        raise ValueError(f"invalid {what} {value!r} (allowed: {pattern.pattern})")
    return value


def access_sql(database: str, lrs_tables: tuple[str, ...] = (), across_shards: bool = False) -> list[str]:
    """Roles, grants and staff row policies for ``database`` (idempotent statements).

    ``lrs_tables``: the LRS read index tables (``sinks.lrs_rows.LRS_COLUMNS``), readable by
    the LRS role only. ``across_shards``: the same grants on the all-shards database too.
    """
    db = _check(_NAME, database, "database")
    out = [f"CREATE ROLE IF NOT EXISTS {r}" for r in (*STAFF, SCHOOL)]
    databases = (db, all_shards_database(db)) if across_shards else (db,)

    def grant(privileges: str, tables: tuple[str, ...], role: str) -> None:
        out.extend(f"GRANT {privileges} ON {d}.{t} TO {role}" for d in databases for t in tables)

    grant("SELECT", T.RESEARCH_TABLES, RESEARCHER)
    grant("SELECT", OPERATOR_TABLES, OPERATOR)
    grant("SELECT", (*LRS_TABLES, *lrs_tables), LRS)
    grant("SELECT", T.SCHOOL_TABLES, SCHOOL)
    out.extend(
        f"GRANT SELECT, INSERT, ALTER UPDATE, ALTER DELETE, CREATE TABLE, CREATE VIEW, CREATE DICTIONARY, "
        f"CREATE DATABASE, DROP TABLE, DROP VIEW, SHOW ON {d}.* TO {WRITER}"
        for d in databases
    )
    # Erasures wait for their mutations, and for the recomputes running when they sweep
    # (sinks/forget.py); the writer reads both (across shards through the table function
    # cluster(), which needs REMOTE).
    out.append(f"GRANT SELECT ON system.mutations TO {WRITER}")
    out.append(f"GRANT SELECT ON system.processes TO {WRITER}")
    # In the cluster form the totals recompute first waits for its replica of the local
    # tables (SYSTEM SYNC REPLICA, sinks/totals.py).
    # (The all-shards database too, like every grant: its tables are Distributed, no wait there.)
    out.extend(f"GRANT SYSTEM SYNC REPLICA ON {d}.* TO {WRITER}" for d in databases)
    if across_shards:
        out.append(f"GRANT REMOTE ON *.* TO {WRITER}")
    staff = ", ".join(STAFF)
    out.extend(
        f"CREATE ROW POLICY IF NOT EXISTS learnpulse_staff ON {db}.{t} FOR SELECT USING 1 TO {staff}"
        for t in POLICY_TABLES
    )
    return out


def school_user_sql(database: str, user: str, school: str, password_sha256_hex: str) -> list[str]:
    """Create a school's user: the school role and one row policy per school table.

    The password is given as its SHA-256 (hex), so the clear text never appears in SQL,
    logs or ``system.query_log``. Across shards the policies on the local tables apply on
    every shard (module docstring), so nothing more is needed there.
    """
    db = _check(_NAME, database, "database")
    name = _check(_NAME, user, "user name")
    school_id = _check(_SCHOOL, school, "school id")
    digest = password_sha256_hex.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError("password_sha256_hex must be 64 hex digits")
    out = [
        f"CREATE USER IF NOT EXISTS {name} IDENTIFIED WITH sha256_hash BY '{digest}' DEFAULT ROLE {SCHOOL}",
        f"GRANT {SCHOOL} TO {name}",
    ]
    out.extend(
        f"CREATE ROW POLICY IF NOT EXISTS school_{name} ON {db}.{t} FOR SELECT USING school = '{school_id}' TO {name}"
        for t in POLICY_TABLES
    )
    return out


def users_xml_1816(database: str, writer_sha256_hex: str, operator_sha256_hex: str) -> str:
    """``users.d`` drop-in for an 18.16 server: the writer and a read-only operator on ``database``."""
    db = escape(_check(_NAME, database, "database"))
    for digest in (writer_sha256_hex, operator_sha256_hex):
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("password digests must be 64 lower-case hex digits (sha256 of the password)")
    return f"""<?xml version="1.0"?>
<!-- learnpulse users for a ClickHouse 18.16 server (place in users.d/; reloaded live).
     18.16 has no SQL roles, no per-table grants and no row policies: isolation is per
     database only. So there is no researcher or school user here: they would see the raw
     JSON (names, mail addresses) in {db}.statements_raw. Use a current server for them. -->
<yandex>
  <profiles>
    <learnpulse_readonly><readonly>1</readonly></learnpulse_readonly>
  </profiles>
  <users>
    <{WRITER}>
      <password_sha256_hex>{writer_sha256_hex}</password_sha256_hex>
      <networks><ip>::1</ip><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
      <allow_databases><database>{db}</database></allow_databases>
    </{WRITER}>
    <{OPERATOR}>
      <password_sha256_hex>{operator_sha256_hex}</password_sha256_hex>
      <networks><ip>::1</ip><ip>127.0.0.1</ip></networks>
      <profile>learnpulse_readonly</profile>
      <quota>default</quota>
      <allow_databases><database>{db}</database></allow_databases>
    </{OPERATOR}>
  </users>
</yandex>
"""
