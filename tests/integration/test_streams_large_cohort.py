"""A cohort of many learners through the real worker: its state and its alert are records of
several megabytes, above Kafka's default 1 MB limit, and the worker must keep going.

An alert names every disengaged learner, and the cohort stage keeps a member list per cohort
(before 2026-12-06: one document with every learner's hour buckets). Seen in the scale-out
benchmark: one cohort of ~20k learners made a 2.36 MB changelog record, the producer refused it
(MessageSizeTooLargeError) and the worker crashed, and crashed again on restart at the same record.
"""

from __future__ import annotations

import pytest

from schemas.topics import Topic
from tests.conftest import wait_for
from tests.integration.streams_support import (
    DAY,
    HOUR,
    MIN,
    T0,
    DerivedReader,
    EnvelopeProducer,
    fail_if_exited,
    statement,
    stream_settings,
)

SCHOOL = "school-a"
COURSE = "https://c.example/course-1"
# ~165 bytes of cohort state per learner and 67 per name in an alert: 16,000 learners make a
# state record of ~2.6 MB and an alert of ~1.1 MB.
LEARNERS = 16_000


@pytest.mark.kafka
def test_streams_a_cohort_whose_state_and_alert_pass_one_megabyte_keeps_the_worker_going(tmp_path, kafka, spawn):
    settings = stream_settings(tmp_path, kafka)
    learners = [f"{i:064x}" for i in range(1, LEARNERS + 1)]
    prod = EnvelopeProducer(kafka)
    for i, learner in enumerate(learners):
        prod.send(SCHOOL, learner, "big", COURSE, [statement(learner, T0 + (i % 50) * MIN)])
    # A later statement in another cohort moves the watermark 8 days on: every learner of
    # "big" has been inactive for 7 days by then, so its alert names all of them.
    late = "f" * 64
    prod.send(SCHOOL, late, "other", COURSE, [statement(late, T0 + 8 * DAY)])
    prod.close()

    worker = spawn(["worker"], settings, "worker")
    reader = DerivedReader(kafka, [Topic.COHORT_HEALTH, Topic.ALERTS])
    alive = fail_if_exited(lambda: [worker])

    def big_alert(r: DerivedReader):
        return next((a for a in r.all[Topic.ALERTS] if a.cohort == "big" and a.state == "fired"), None)

    try:
        reader.settle(lambda r: big_alert(r) is not None, 600, check=alive, diagnose=lambda: worker.tail(80))
    finally:
        reader.close()

    first_hour = [h for h in reader.all[Topic.COHORT_HEALTH] if h.cohort == "big" and h.at_ms == T0 + HOUR]
    assert first_hour and {h.learners for h in first_hour} == {LEARNERS}
    alert = big_alert(reader)
    assert alert.learners == LEARNERS and sorted(alert.disengaged_learners) == learners
    assert worker.popen.poll() is None, worker.tail(80)


@pytest.mark.kafka
def test_streams_topics_an_older_worker_created_get_the_record_limit_and_keep_their_settings(tmp_path, kafka):
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

    from schemas.topics import WORKER_TOPIC_MAX_MESSAGE_BYTES
    from streams.app import StreamsParameters, ensure_internal_topics

    params = StreamsParameters(kafka.bootstrap_servers, kafka.topic_prefix, f"{kafka.topic_prefix}old-app",
                               tmp_path / "data", web_port=0)  # fmt: skip
    changelog = f"{params.app_id}-cohort-state-changelog"
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        # As a worker before the limit created it.
        admin.create_topics([NewTopic(changelog, 4, 1, topic_configs={"cleanup.policy": "compact"})])
        ensure_internal_topics(params)

        def limited() -> dict[str, str] | None:
            described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, changelog)])
            configs = {key: entry["value"] for key, entry in described["topic"][changelog].items()}
            return configs if configs.get("max.message.bytes") == WORKER_TOPIC_MAX_MESSAGE_BYTES else None

        # The broker applies an altered config once the controller's metadata reaches it.
        configs = wait_for(limited, 30, "the record limit on the older changelog")
    finally:
        admin.close()
    assert configs["cleanup.policy"] == "compact"
