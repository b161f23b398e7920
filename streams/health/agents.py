"""The cohort agent: the cohort feed → :class:`~.stage.CohortStage` (see ``streams.health.stage``)."""

from __future__ import annotations

from functools import partial
from typing import Any

import faust

from ..config import StreamsConfig
from ..faustutil import BatchClock, ChangelogWrites, Sender, process_or_stop_commits
from .stage import CohortStage, CohortTopics


def register(app: faust.App, topics: Any, config: StreamsConfig) -> CohortStage:
    feed = topics.cohort_feed
    if topics.cohort_health.partitions != feed.partitions or topics.alerts.partitions != 1:
        raise ValueError("cohort_health must have the cohort feed's partition count and alerts one partition")
    names = CohortTopics(
        feed=feed.get_topic_name(), cohort_health=topics.cohort_health.get_topic_name(),
        alerts=topics.alerts.get_topic_name(), deadletter=topics.deadletter.get_topic_name(),
        source_partitions=topics.statements.partitions,
    )
    table = app.Table("cohort-state", default=None, partitions=feed.partitions, key_type=bytes, value_type=bytes)
    stage = CohortStage(table, Sender(app), names, config, ChangelogWrites(app, table))

    @app.agent(feed, concurrency=1)
    async def cohorts(stream: faust.StreamT) -> None:
        timed = partial(BatchClock("cohort").run, stage.process_batch)
        async for events in stream.take_events(config.batch_max, within=config.batch_within_s):
            await process_or_stop_commits(app, timed, events)

    return stage
