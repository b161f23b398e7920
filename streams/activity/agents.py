"""Per-learner hourly activity: statements per learner × course × event-time hour.

State: one Faust table keyed by learner, co-partitioned with ``xapi.statements`` (same
key, same partition count), so a learner's state lives with its events. Each learner's
state remembers the last source offset applied: after a crash, events re-delivered
from the last committed offset are recognised and not counted twice.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from schemas import metrics
from schemas.envelope import StatementEnvelope
from schemas.errors import InvalidStatement
from schemas.records import ActivityRecord
from schemas.xapi.timefmt import parse_ms

log = logging.getLogger("learnpulse.streams.activity")

HOUR_MS = 3_600_000
# Hours older than this behind the learner's newest event are final and dropped from state.
KEEP_HOURS_MS = 48 * HOUR_MS


def apply_envelope(state: dict[str, Any], env: StatementEnvelope, offset: int) -> list[ActivityRecord]:
    """Pure state transition: count ``env`` into ``state``; return the updated records.

    ``state`` = ``{"o": last applied offset, "h": {"course\\x1fcohort\\x1fhour": [school, count]}}``.
    Returns [] when ``offset`` was already applied.
    """
    if offset <= state.get("o", -1):
        return []
    hours: dict[str, list[Any]] = state.setdefault("h", {})
    touched = set()
    newest = 0
    for i, entry in enumerate(env.entries):
        ts = parse_ms(entry.statement["timestamp"], f"$.statements[{i}].statement.timestamp")
        newest = max(newest, ts)
        key = f"{entry.course}\x1f{entry.cohort}\x1f{ts - ts % HOUR_MS}"
        slot = hours.setdefault(key, [env.school, 0])
        slot[1] += 1
        touched.add(key)
    for key in [k for k in hours if int(k.rsplit("\x1f", 1)[1]) < newest - KEEP_HOURS_MS]:
        del hours[key]
    state["o"] = offset
    out = []
    for key in sorted(touched):
        course, cohort, hour = key.split("\x1f")
        school, count = hours[key]
        # The count only grows, so it is a deterministic, monotonic version.
        out.append(ActivityRecord(school, course, cohort, env.learner, int(hour), count, count))
    return out


def register(app: faust.App, topics: Any) -> None:
    table = app.Table("learner-activity", default=dict, partitions=topics.statements.partitions)
    consumed = metrics.MESSAGES_IN.labels("streams", topics.statements.get_topic_name())
    produced = metrics.MESSAGES_OUT.labels("streams", topics.activity.get_topic_name())

    @app.agent(topics.statements, concurrency=1)
    async def learner_activity(stream: faust.StreamT) -> None:
        async for event in stream.events():
            consumed.inc()
            msg = event.message
            try:
                env = StatementEnvelope.decode(event.value)
                state = dict(table[env.learner])
                records = apply_envelope(state, env, msg.offset)
            except InvalidStatement as err:
                # An exception would ack the event and lose it: forward it instead.
                metrics.DEADLETTERS.labels("streams", err.rule).inc()
                await topics.deadletter.send(
                    key=msg.key,
                    value=msg.value,
                    headers=[("rule", err.rule.encode()), ("reason", str(err).encode()),
                             ("source", f"{msg.topic}/{msg.partition}/{msg.offset}".encode()),
                             ("stage", b"streams:activity")],
                )
                continue
            if not records:
                continue
            for r in records:
                await topics.activity.send(key=r.learner.encode(), value=r.encode())
            produced.inc(len(records))
            table[env.learner] = state
