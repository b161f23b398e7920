"""The faults, one scenario each, injected while the client posts.

A scenario's ``inject`` runs while the load runs and returns notes (restart times…); it
returns when its load period is over. ``skip`` says why it does not apply to a pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from .catchup import group_offsets
from .procs import Command, free_port, wait_until


@dataclass(frozen=True)
class Options:
    duration: float  # seconds of load per scenario
    kills: int  # SIGKILLs of the gateway and of the sink
    broker_down: float
    clickhouse_down: float
    run_id: str


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    inject: Callable[..., list[str]]
    skip: Callable[..., str | None] = lambda pipeline: None
    #: measured over the statements of every scenario so far (a replay rewrites them all)
    all_schools: bool = False


def _baseline(p, o: Options, echo) -> list[str]:
    time.sleep(o.duration)
    return []


def _kill_repeatedly(name: str):
    def inject(p, o: Options, echo) -> list[str]:
        proc = p.processes[name]
        pause = o.duration / (o.kills + 1)
        took = []
        for i in range(o.kills):
            time.sleep(pause)
            echo(f"    SIGKILL {name} ({i + 1}/{o.kills})")
            with p.lock:
                proc.kill()
                took.append(proc.restart())
        time.sleep(pause)
        return [f"{name} back in {_seconds(took)}"]

    return inject


def _kill_once(name: str, down_attr: str | None = None):
    def inject(p, o: Options, echo) -> list[str]:
        proc = p.processes[name]
        time.sleep(o.duration / 3)
        down = getattr(o, down_attr) if down_attr else 0
        echo(f"    SIGKILL {name}" + (f", down for {down:.0f}s" if down else ""))
        with p.lock:
            proc.kill()
            time.sleep(down)
            took = proc.restart()
        echo(f"    {name} back after {took:.1f}s")
        time.sleep(o.duration / 3)
        return [f"{name} down {down:.0f}s, restart took {took:.1f}s"]

    return inject


def _replay(p, o: Options, echo) -> list[str]:
    """A sink in a new consumer group reads every topic from the start into the same tables."""
    time.sleep(o.duration / 3)
    group = f"faults-replay-{o.run_id}"
    owner = p.processes.get("gateway") if p.sinks_in == "gateway" and p.path != "operator" else None
    if p.path == "operator":
        return ["replay not run: start `learnpulse sink --group NEW` yourself against your deployment"]
    p.lock.acquire()
    if owner is not None:
        owner.stop()  # chDB: the replaying sink must own the chDB path for a while
    gateway = p.processes["gateway"]
    env = gateway.env | {"LEARNPULSE_METRICS_PORT": str(free_port())}
    replay = Command("replay-sink", ["sink", "--group", group], env, gateway.log.parent)
    started = time.monotonic()
    replay.start()
    done = _GroupSettled(p.kafka_bootstrap, group)
    try:
        took = wait_until(done, 600, "replay sink caught up", 3)
    except TimeoutError as err:
        took = float("nan")
        echo(f"    {err}")
    finally:
        replay.stop()
        if owner is not None:
            owner.restart()
        p.lock.release()
    echo(f"    replay with group {group} caught up in {took:.0f}s")
    time.sleep(o.duration / 3)
    return [f"replay group {group}: {time.monotonic() - started:.0f}s"]


class _GroupSettled:
    """True once the replay's groups have read the statements topic up to where every topic
    ended when the replay started (within a commit marker) — the load goes on meanwhile, so
    "at the end" would never hold on a pipeline that keeps accepting — or have not moved for
    30 s (an aborted transaction's markers are never consumed)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.bootstrap, self.group = bootstrap, group
        self.last: object = None
        self.since = time.monotonic()
        self.target = _end_offsets(bootstrap)

    def __call__(self) -> bool:
        try:
            offsets = {k: v for k, v in group_offsets(self.bootstrap).items() if k[0].startswith(self.group)}
        except Exception:  # noqa: BLE001 - Kafka metadata not there yet: look again
            return False
        if offsets != self.last:
            self.last, self.since = offsets, time.monotonic()
        statements = [v for k, v in offsets.items() if k[1].endswith("xapi.statements")]
        read = all(
            self.target.get((topic, partition), end) - committed <= 1
            for (_group, topic, partition), (committed, end) in offsets.items()
        )
        return bool(statements) and (read or time.monotonic() - self.since >= 30)


def _end_offsets(bootstrap: str) -> dict[tuple[str, int], int]:
    """``(topic, partition) → end offset`` of every topic now."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        parts = [TopicPartition(t, p) for t in consumer.topics() for p in consumer.partitions_for_topic(t) or ()]
        return {(tp.topic, tp.partition): end for tp, end in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}s" for v in values) or "-"


def _needs(name: str, reason: str):
    return lambda p: None if name in p.processes else reason


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("baseline", "no fault", _baseline),
        Scenario("gateway_kill", "gateway SIGKILL ×N under load, restarted", _kill_repeatedly("gateway"),
                 _needs("gateway", "no gateway process given")),
        Scenario("sink_kill", "sink SIGKILL ×N, restarted", _kill_repeatedly("sink"),
                 _needs("sink", "the sinks run in the gateway process (chDB): see gateway_kill")),
        Scenario("worker_kill", "stream worker SIGKILL, restarted", _kill_once("worker"),
                 _needs("worker", "no worker process given")),
        Scenario("broker_kill", "Kafka SIGKILL, down, `stack up`", _kill_once("kafka", "broker_down"),
                 _needs("kafka", "no broker process given")),
        Scenario("clickhouse_kill", "ClickHouse server SIGKILL, down, `stack up`",
                 _kill_once("clickhouse", "clickhouse_down"), _needs("clickhouse", "no ClickHouse server (chDB path)")),
        Scenario("replay", "a sink with a new consumer group replays every topic", _replay, all_schools=True),
    )
}  # fmt: skip
