"""``python -m benchmarks.faults``: the fault matrix (see the package docstring); ``--help``."""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid

from .catchup import wait_caught_up
from .client import Load
from .pipeline import LocalPipeline, OperatorPipeline, Pipeline
from .procs import elapsed_echo
from .report import ScenarioResult, render
from .scenarios import SCENARIOS, Options
from .tables import count_all


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__)
    ap.add_argument("--path", choices=("server", "chdb", "both"), default="both",
                    help="ClickHouse path of the pipeline started here (default both, one after the other)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help=f"comma-separated, in order (default all: {','.join(SCENARIOS)})")
    ap.add_argument("--duration", type=float, default=40, help="seconds of load per scenario (default 40)")
    ap.add_argument("--rate", type=float, default=150, help="statements/s the client posts (default 150)")
    ap.add_argument("--batch", type=int, default=10, help="statements per POST (default 10)")
    ap.add_argument("--kills", type=int, default=3, help="SIGKILLs of the gateway, and of the sink (default 3)")
    ap.add_argument("--broker-down", type=float, default=30, help="seconds the broker stays down (default 30)")
    ap.add_argument("--clickhouse-down", type=float, default=60, help="seconds ClickHouse stays down (default 60)")
    ap.add_argument("--catchup-deadline", type=float, default=240, help="seconds to wait for catch-up (default 240)")
    op = ap.add_argument_group("an operator's own deployment (instead of starting a pipeline)")
    op.add_argument("--gateway", help="its xAPI base URL, e.g. http://127.0.0.1:8088/xapi")
    op.add_argument("--credential", help="KEY:SECRET of a credential of --school")
    op.add_argument("--school", help="the credential's school")
    op.add_argument("--kafka", help="bootstrap servers (host:port)")
    op.add_argument("--clickhouse-url", help="clickhouse://user:pass@host:9000/db (a server: read while it runs)")
    op.add_argument("--pid", action="append", default=[], metavar="NAME=PID|@PIDFILE",
                    help="a process a scenario may SIGKILL: gateway, sink, worker, kafka, clickhouse (repeatable)")
    op.add_argument("--restart", action="append", default=[], metavar="NAME=COMMAND",
                    help="the shell command that starts NAME again and returns (repeatable)")
    return ap.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    scale = (f"{args.duration:.0f}s of load per scenario at {args.rate:.0f} statements/s in POSTs of {args.batch}, "
             f"{args.kills} kills, broker down {args.broker_down:.0f}s, ClickHouse down {args.clickhouse_down:.0f}s")
    echo = elapsed_echo()
    tables = []
    if args.gateway:
        pipeline = OperatorPipeline(args.gateway, args.credential, args.kafka, args.clickhouse_url,
                                    dict(_pairs(args.pid)), dict(_pairs(args.restart)))  # fmt: skip
        pipeline.school = args.school
        tables.append(render("operator", scale, run_matrix(pipeline, names, args, echo)))
    else:
        for path in ("server", "chdb") if args.path == "both" else (args.path,):
            pipeline = LocalPipeline(path)
            try:
                pipeline.up(echo)
                tables.append(render(path, scale, run_matrix(pipeline, names, args, echo)))
                print(tables[-1], flush=True)
            finally:
                echo(f"[{path}] stopping the pipeline")
                pipeline.down()
    print("\n\n== all paths\n" + "\n\n".join(tables), flush=True)
    return 0


def run_matrix(pipeline: Pipeline, names: list[str], args, echo) -> list[ScenarioResult]:
    run_id = uuid.uuid4().hex[:6]
    opts = Options(args.duration, args.kills, args.broker_down, args.clickhouse_down, run_id)
    results: list[ScenarioResult] = []
    all_schools: list[str] = []
    all_sent: set[str] = set()
    all_acked: set[str] = set()
    watcher = _CrashWatcher(pipeline, echo).start()
    try:
        for name in names:
            scenario = SCENARIOS[name]
            result = ScenarioResult(name, scenario.what)
            results.append(result)
            reason = scenario.skip(pipeline)
            if reason:
                result.skipped = reason
                echo(f"[{pipeline.path}] {name}: skipped ({reason})")
                continue
            school = getattr(pipeline, "school", None) or f"faults-{run_id}-{name}"
            echo(f"[{pipeline.path}] {name}: {scenario.what}; school {school}")
            load = Load(pipeline.gateway_url, pipeline.credential(school), school, rate=args.rate, batch=args.batch)
            started = time.monotonic()
            watcher.crashes.clear()
            load.start()
            result.notes = scenario.inject(pipeline, opts, echo)
            stopped = time.monotonic()
            sent = load.stop()
            result.notes += watcher.crashes
            all_schools.append(school)
            all_sent |= sent.sent
            all_acked |= sent.acked
            schools, ids, acked = (all_schools, all_sent, all_acked) if scenario.all_schools else (
                [school], sent.sent, sent.acked)  # fmt: skip
            result.sent, result.acked = len(ids), len(acked)
            result.statuses, result.retries, result.given_up = dict(sent.statuses), sent.retries, sent.given_up
            result.write_gap_s = sent.longest_gap(started, stopped)
            echo(f"    load stopped: {len(sent.sent)} sent, {len(sent.acked)} acknowledged; waiting to catch up")
            result.catchup_s, result.caught_up = wait_caught_up(
                pipeline, schools, len(acked), args.catchup_deadline, echo
            )
            result.notes += watcher.crashes[len(result.notes) :]
            with pipeline.clickhouse() as ch:
                result.counts = count_all(ch, schools, ids, acked)
            print(render(pipeline.path, "one scenario", [result]), flush=True)
            worst = [c for c in result.counts if c.lost or c.doubled]
            echo(f"    {name}: " + ("every table exact" if not worst else
                 "; ".join(f"{c.table} lost {c.lost} doubled {c.doubled}" for c in worst)))  # fmt: skip
    finally:
        watcher.stop()
    return results


class _CrashWatcher:
    """Notices processes of ours that exit by themselves (a crash), notes and restarts them."""

    def __init__(self, pipeline: Pipeline, echo) -> None:
        self.pipeline = pipeline
        self.echo = echo
        self.crashes: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> _CrashWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(2):
            try:
                found = self.pipeline.crashed()
            except Exception as err:  # noqa: BLE001 - a restart that failed: say so, look again
                found = [f"restart after a crash failed: {err}"]
            for line in found:
                self.echo(f"    CRASH: {line}")
                self.crashes.append("CRASH: " + line)


def _pairs(values: list[str]):
    for v in values:
        name, _, rest = v.partition("=")
        yield name.strip(), rest.strip()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
