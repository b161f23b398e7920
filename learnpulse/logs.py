"""Structured logs: one JSON object per line on stderr, quiet by default."""

from __future__ import annotations

import logging
import time

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def configure(level: str, client_level: str) -> None:
    """Our loggers at ``level``; the Kafka and ClickHouse client libraries at ``client_level``.

    The clients log every refused connection while they retry; our own code reports what
    matters (one-line CLI errors, error metrics), so by default they only speak when fatal.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("kafka", "aiokafka", "clickhouse_driver"):
        logging.getLogger(name).setLevel(client_level.upper())
