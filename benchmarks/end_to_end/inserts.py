"""How long the sinks' ClickHouse inserts took in a step, read from their processes' /metrics.

A sink that falls behind either works too slowly itself (its CPU per 1,000 statements says so)
or waits on ClickHouse: this is the second half, the ``learnpulse_sink_insert_seconds``
histogram (every table's inserts) of each process that runs sinks, before and after a step;
and ``learnpulse_sink_batch_phase_seconds``, where each sink's batches spent their time.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

INSERT_METRIC = "learnpulse_sink_insert_seconds"
PHASE_METRIC = "learnpulse_sink_batch_phase_seconds"

Totals = dict[str, tuple[float, float]]  # key: (count, seconds)


@dataclass(frozen=True)
class Inserts:
    """Inserts counted and seconds spent in them, per table; and each sink's batch phases
    (``PHASE_METRIC``), keyed ``(sink, phase)``."""

    tables: Totals = field(default_factory=dict)
    phases: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)

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

    def sink_phases(self) -> dict[str, list[tuple[str, float, float]]]:
        """Per sink, its phases in the order first seen: (phase, count, seconds)."""
        out: dict[str, list[tuple[str, float, float]]] = {}
        for (sink, phase), (count, seconds) in self.phases.items():
            out.setdefault(sink, []).append((phase, count, seconds))
        return out

    def __sub__(self, earlier: Inserts) -> Inserts:
        return Inserts(_since(self.tables, earlier.tables), _since(self.phases, earlier.phases))


def _since(now: dict, earlier: dict) -> dict:
    return {k: (c - earlier.get(k, (0.0, 0.0))[0], s - earlier.get(k, (0.0, 0.0))[1]) for k, (c, s) in now.items()}


def _histogram_totals(page: str, metric: str, key) -> dict:
    """Count and sum of the histogram ``metric`` in a Prometheus text page, per ``key(labels)``."""
    totals: dict = {}
    for family in text_string_to_metric_families(page):
        if family.name != metric:
            continue
        for sample in family.samples:
            k = key(sample.labels)
            count, seconds = totals.get(k, (0.0, 0.0))
            if sample.name == metric + "_count":
                totals[k] = (count + sample.value, seconds)
            elif sample.name == metric + "_sum":
                totals[k] = (count, seconds + sample.value)
    return totals


def inserts_in(page: str) -> Inserts:
    """The insert and batch-phase histograms' totals in a Prometheus text page (none if the page has none)."""
    return Inserts(
        _histogram_totals(page, INSERT_METRIC, lambda labels: labels.get("table", "")),
        _histogram_totals(page, PHASE_METRIC, lambda labels: (labels.get("sink", ""), labels.get("phase", ""))),
    )


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
