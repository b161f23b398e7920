"""How long the sinks' ClickHouse inserts took in a step, read from their processes' /metrics.

A sink that falls behind either works too slowly itself (its CPU per 1,000 statements says so)
or waits on ClickHouse: this is the second half, the ``learnpulse_sink_insert_seconds``
histogram (every table's inserts) of each process that runs sinks, before and after a step.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

INSERT_METRIC = "learnpulse_sink_insert_seconds"


@dataclass(frozen=True)
class Inserts:
    """Inserts counted and seconds spent in them, per table."""

    tables: dict[str, tuple[float, float]] = field(default_factory=dict)  # table: (count, seconds)

    @property
    def count(self) -> float:
        return sum(c for c, _s in self.tables.values())

    @property
    def seconds(self) -> float:
        return sum(s for _c, s in self.tables.values())

    def slowest(self, n: int) -> list[tuple[str, float, float]]:
        """The ``n`` tables that took the most seconds: (table, count, seconds)."""
        ranked = sorted(self.tables.items(), key=lambda item: item[1][1], reverse=True)
        return [(t, c, s) for t, (c, s) in ranked[:n] if c]

    def __sub__(self, earlier: Inserts) -> Inserts:
        since: dict[str, tuple[float, float]] = {}
        for table, (count, seconds) in self.tables.items():
            count_before, seconds_before = earlier.tables.get(table, (0.0, 0.0))
            since[table] = (count - count_before, seconds - seconds_before)
        return Inserts(since)


def inserts_in(page: str) -> Inserts:
    """The insert histogram's totals per table in a Prometheus text page (none if the page has none)."""
    tables: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(page):
        if family.name != INSERT_METRIC:
            continue
        for sample in family.samples:
            table = sample.labels.get("table", "")
            count, seconds = tables.get(table, (0.0, 0.0))
            if sample.name == INSERT_METRIC + "_count":
                tables[table] = (count + sample.value, seconds)
            elif sample.name == INSERT_METRIC + "_sum":
                tables[table] = (count, seconds + sample.value)
    return Inserts(tables)


def read_inserts(url: str, timeout_s: float = 5.0) -> Inserts | None:
    """The totals a process reports now; None if its /metrics did not answer (or not in Prometheus' format)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # noqa: S310 - our own loopback URL
            return inserts_in(answer.read().decode())
    except (OSError, ValueError):
        return None


def sink_metrics_urls(pipeline) -> dict[str, str]:
    """/metrics of each process of ``pipeline`` that runs sinks (the gateway's on the chDB path)."""
    urls = {}
    for name, proc in pipeline.processes.items():
        if name == "gateway" and getattr(pipeline, "sinks_in", None) == "gateway":
            urls[name] = f"http://127.0.0.1:{proc.port}/metrics"
        elif name.startswith("sink") and "LEARNPULSE_METRICS_PORT" in getattr(proc, "env", {}):
            urls[name] = f"http://127.0.0.1:{proc.env['LEARNPULSE_METRICS_PORT']}/metrics"
    return urls
