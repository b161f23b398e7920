"""Fuzz the research SQL surface: many hostile or broken queries, zero 5xx, nothing fetched.

Two targets:

- in-process (default): the checker of ``/api/sql`` and ``learnpulse sql``
  (:func:`reporting.sql.research_query`) with a runner that only records what it would
  run; every query is either refused with a known rule or passes, and what passes reads
  only research tables and calls no function that reaches files or the network;
- a running ``learnpulse serve``/demo: ``--url http://127.0.0.1:8080 --token …`` (a
  researcher token, ``learnpulse researchers add``) POSTs each query to ``/api/sql``;
  no answer may be a 5xx, and a local HTTP listener named in the attacks (``url()``,
  ``remote()`` …) must never be contacted by the engine.

Bounded: ``--queries`` (default 5,000) or ``--seconds`` (default 300), whichever comes
first; ``--seed`` repeats a run. Prints a table of outcomes and rules; exit status 1 if
any query got a 5xx, broke a property or reached the listener. The suite runs shorter,
hypothesis-driven versions (tests/unit/reporting/test_sqlcheck.py, and over HTTP in
tests/integration/test_reporting_sql.py).
"""

from __future__ import annotations

import argparse
import http.server
import random
import sys
import threading
import time
from collections import Counter

# Pieces of ClickHouse SQL an attacker or a careless researcher puts together.
WORDS = ["SELECT", "WITH", "FROM", "JOIN", "ON", "IN", "AS", "WHERE", "UNION", "ALL", "ARRAY", "GLOBAL", "SETTINGS",
         "FORMAT", "INTO", "OUTFILE", "INSERT", "ALTER", "DROP", "SYSTEM", "KILL", "EXPLAIN", "DESCRIBE", "OPTIMIZE",
         "url", "remote", "remoteSecure", "cluster", "file", "mysql", "postgresql", "s3", "hdfs", "executable",
         "input", "merge", "view", "dictGet", "joinGet", "numbers", "zeros", "generate_series", "values", "count",
         "statements", "statements_raw", "lrs_statements", "quarantine", "engagement", "system", "tables",
         "{db}", "x", "sum", "max_execution_time", "readonly", "1", "0", "not"]  # fmt: skip
SYMBOLS = ["(", ")", ",", ".", ";", "'s'", "`q`", '"d"', "--", "/*", "*/", " ", "\n", "#", "$$", "{", "}", "\\",
           "'", "`", "*", "=", "::", "\x00", "é"]  # fmt: skip
# Whole attacks, with LISTENER replaced by the local listener's URL.
ATTACKS = [
    "SELECT * FROM url('LISTENER/x', 'JSONEachRow')",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT file('/etc/passwd')",
    "SELECT * FROM {db}.statements SETTINGS max_execution_time = 0",
    "SELECT * FROM {db}.statements_raw",
    "SELECT 1; DROP TABLE {db}.statements",
    "WITH (SELECT * FROM url('LISTENER/y', 'CSV')) AS u SELECT u",
    "SELECT * FROM {db}.statements WHERE school IN (SELECT * FROM url('LISTENER/z', 'CSV'))",
    "SELECT * FROM /* x */ url('LISTENER/c', 'CSV')",
    "SELECT * FROM `url`('LISTENER/q', 'CSV')",
    "SELECT count() FROM {db}.statements INTO OUTFILE '/tmp/x'",
    "SELECT dictGet('d', 'x', 1)",
    "SELECT * FROM mysql('127.0.0.1:3306', 'db', 't', 'u', 'p')",
    "SELECT * FROM {db}.statements FORMAT Native",
]
ORDINARY = [
    "SELECT school, count() FROM {db}.statements FINAL GROUP BY school",
    "SELECT verb_id, count() AS n FROM {db}.statements GROUP BY verb_id ORDER BY n DESC LIMIT 10",
    "WITH t AS (SELECT learner FROM {db}.engagement) SELECT count() FROM t",
]


class Listener:
    """A local HTTP server counting every request: the engine must never call it."""

    def __init__(self) -> None:
        self.hits = 0
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                listener.hits += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b'{"x": 1}\n')

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def make_query(rng: random.Random, listener_url: str) -> str:
    roll = rng.random()
    if roll < 0.3:
        base = rng.choice(ATTACKS + ORDINARY).replace("LISTENER", listener_url)
        return mutate(rng, base) if rng.random() < 0.5 else base
    pieces = [rng.choice(WORDS if rng.random() < 0.6 else SYMBOLS) for _ in range(rng.randint(1, 30))]
    return " ".join(pieces)


def mutate(rng: random.Random, text: str) -> str:
    """Insert, drop or repeat a small piece somewhere in ``text``."""
    at = rng.randint(0, len(text))
    action = rng.randint(0, 2)
    if action == 0:
        return text[:at] + " " + rng.choice(WORDS + SYMBOLS) + " " + text[at:]
    if action == 1:
        return text[:at] + text[at + rng.randint(1, 8) :]
    return text[:at] + text[at : at + 12] * rng.randint(2, 5) + text[at:]


class InProcessTarget:
    """The checker with a recording runner; a broken property counts as a failure."""

    def __init__(self) -> None:
        from reporting.sql import QueryRejected, research_query
        from reporting.sqlcheck import RULES, check_query
        from schemas.clickhouse.engine import LimitedResult, QueryLimits
        from schemas.clickhouse.tables import RESEARCH_TABLES

        class Recorder:
            limits = QueryLimits()

            def __init__(self) -> None:
                self.ran: list[str] = []

            def run(self, sql: str, cancel: object) -> LimitedResult:
                self.ran.append(sql)
                return LimitedResult(["x"], ["UInt8"], [(1,)])

            def close(self) -> None:
                pass

        self._rejected, self._query, self._rules = QueryRejected, research_query, RULES
        self._check, self._tables, self._recorder = check_query, frozenset(RESEARCH_TABLES), Recorder

    def send(self, text: str) -> tuple[str, str]:
        runner = self._recorder()
        try:
            self._query(runner, "lp", text)
        except self._rejected as err:
            if err.rule not in self._rules or runner.ran:
                return "FAILED", f"refused with unknown rule {err.rule!r} or after running"
            return "400", err.rule
        except Exception as err:  # noqa: BLE001 - what we are looking for
            return "FAILED", f"{type(err).__name__}: {err}"
        checked = self._check(text, "lp", self._tables)
        if not set(checked.tables) <= self._tables:
            return "FAILED", f"passed with tables {sorted(checked.tables)}"
        return "passed", ""


class HttpTarget:
    def __init__(self, url: str, token: str) -> None:
        import requests

        self.url = url.rstrip("/") + "/api/sql"
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})

    def send(self, text: str) -> tuple[str, str]:
        import orjson

        r = self.session.post(self.url, data=orjson.dumps({"sql": text}), timeout=120)
        rule = ""
        if r.headers.get("Content-Type", "").startswith("application/json"):
            try:
                body = r.json()
                rule = str(body.get("rule") or body.get("error", {}).get("rule", "")) if isinstance(body, dict) else ""
            except ValueError:
                rule = "unparseable answer"
        return str(r.status_code), rule


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running learnpulse serve/demo web URL (default: the checker in-process)")
    parser.add_argument("--token", help="researcher token for --url")
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.url and not args.token:
        parser.error("--url needs --token (learnpulse researchers add)")
    rng = random.Random(args.seed)
    listener = Listener()
    target = HttpTarget(args.url, args.token) if args.url else InProcessTarget()
    outcomes: Counter[tuple[str, str]] = Counter()
    bad: list[tuple[str, str, str]] = []
    started = time.monotonic()
    sent = 0
    try:
        while sent < args.queries and time.monotonic() - started < args.seconds:
            text = make_query(rng, listener.url)
            status, rule = target.send(text)
            sent += 1
            outcomes[(status, rule)] += 1
            if status == "FAILED" or status.startswith("5"):
                bad.append((status, rule, text))
            if sent % 500 == 0:
                print(f"  {sent} queries, {len(bad)} failures, listener hits {listener.hits}", file=sys.stderr)
    finally:
        listener.close()
    elapsed = time.monotonic() - started
    print(f"{'outcome':<10} {'rule':<28} {'count':>7}")
    for (status, rule), n in sorted(outcomes.items(), key=lambda item: -item[1]):
        print(f"{status:<10} {rule[:28]:<28} {n:>7}")
    print(f"\n{sent} queries in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):.0f}/s); "
          f"5xx or broken properties: {len(bad)}; listener contacted: {listener.hits} times")  # fmt: skip
    for status, rule, text in bad[:10]:
        print(f"  {status} {rule}: {text[:200]!r}")
    return 1 if bad or listener.hits else 0


if __name__ == "__main__":
    sys.exit(main())
