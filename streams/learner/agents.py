"""The learner agent: ``xapi.statements`` (and the void feed) → :class:`~.stage.LearnerStage`.

The agent and the timer are a few lines each; what they do — exactly-once records, void
resolution, per-partition watermarks — is the stage's (see ``streams.learner.stage``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import faust

from schemas import metrics

from ..config import StreamsConfig
from ..faustutil import BatchClock, ChangelogWrites, RawSchema, Sender, committed_offset, process_or_stop_commits
from ..mastery.logic import MasteryModel
from .probe import GapProbe
from .stage import LearnerStage, LearnerTopics


def register(app: faust.App, topics: Any, config: StreamsConfig, model: MasteryModel, bootstrap: str) -> LearnerStage:
    src = topics.statements
    for derived in (topics.engagement, topics.mastery, topics.void_feed):
        if derived.partitions != src.partitions:
            raise ValueError(f"{derived.get_topic_name()} must have the partition count of {src.get_topic_name()}")
    names = LearnerTopics(
        statements=src.get_topic_name(), void_feed=topics.void_feed.get_topic_name(),
        engagement=topics.engagement.get_topic_name(), mastery=topics.mastery.get_topic_name(),
        cohort_feed=topics.cohort_feed.get_topic_name(), deadletter=topics.deadletter.get_topic_name(),
        source_partitions=src.partitions, feed_partitions=topics.cohort_feed.partitions,
    )
    table = app.Table("learner-state", default=None, partitions=src.partitions, key_type=bytes, value_type=bytes)
    probe = GapProbe(bootstrap)
    stage = LearnerStage(
        table, Sender(app), names, config, model, probe=probe,
        committed_offset=lambda partition: committed_offset(app, names.statements, partition),
        cohort_partition_of=lambda key: app.producer.key_partition(names.cohort_feed, key).partition,
        state=ChangelogWrites(app, table),
    )

    @app.agent(app.topic(names.statements, names.void_feed, schema=RawSchema()), concurrency=1)
    async def learners(stream: faust.StreamT) -> None:
        timed = partial(BatchClock("learner").run, stage.process_batch)
        async for events in stream.take_events(config.batch_max, within=config.batch_within_s):
            await process_or_stop_commits(app, timed, events)

    @app.on_partitions_revoked.connect
    async def _revoked(_app: Any, revoked: Any, **_kw: Any) -> None:
        stage.reset()

    @app.on_partitions_assigned.connect
    async def _assigned(_app: Any, assigned: Any, **_kw: Any) -> None:
        stage.reset()
        metrics.STREAM_ASSIGNED_PARTITIONS.set(sum(1 for tp in app.consumer.assignment() if tp.topic == names.statements))

    @app.on_before_shutdown.connect
    async def _close_probe(_app: Any, **_kw: Any) -> None:
        await probe.close()

    @app.timer(interval=1.0)
    async def report_idle_partitions() -> None:
        tps = [tp for tp in app.consumer.assignment() if tp.topic == names.statements]
        if tps:
            ends = await app.consumer.highwaters(*tps)
            await stage.report_idle_partitions({tp.partition: ends[tp] for tp in tps if ends.get(tp) is not None})

    return stage
