"""The worker process's logging level (``streams.app.new_worker``): Faust's start-up spinner set the
root logger to DEBUG at WARNING, so every library's debug call built a record nobody printed."""

from __future__ import annotations

import logging

import pytest

from streams.app import StreamsParameters, create_app, new_worker


@pytest.fixture
def restored_logging():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_worker_keeps_the_configured_log_level(tmp_path, restored_logging):
    app = create_app(StreamsParameters(
        bootstrap="127.0.0.1:9", topic_prefix="t.", app_id="worker-logging", datadir=tmp_path, web_port=6066,
    ))
    worker = new_worker(app, "WARNING")
    worker._setup_logging()  # what the worker does first (mode 0.x, private)
    assert logging.getLogger().level == logging.WARNING
    assert not logging.getLogger("faust.topics").isEnabledFor(logging.DEBUG)
