"""The dead-letter record: what a stage writes to ``xapi.deadletter`` for a record it cannot process.

Every stage (the stream processor, the ClickHouse sinks, the alert notifier) keeps such a
record instead of dropping it: the **value and key are the original record's bytes**,
unchanged, and the headers say why:

=========  =====================================================================
header     value (UTF-8)
=========  =====================================================================
rule       the rule that failed, a stable id (``envelope.decode``, ``alert.json``,
           ``clickhouse.rejected``, ``webhook.refused`` …)
reason     a human-readable explanation
source     ``<topic>/<partition>/<offset>`` of the original record
stage      who gave up on it: ``streams:<stage>``, ``sink:<name>``, ``notifier``
target     (optional) the receiver that refused it (the notifier's webhook or Alertmanager)
=========  =====================================================================

Re-driving a dead letter means producing its value (with its key) to the topic named in
``source`` once the cause is fixed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Headers = list[tuple[str, bytes]]


def source_of(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}/{offset}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    rule: str
    reason: str
    source: str
    stage: str
    target: str | None = None

    def headers(self) -> Headers:
        out = [
            ("rule", self.rule.encode()),
            ("reason", self.reason.encode()),
            ("source", self.source.encode()),
            ("stage", self.stage.encode()),
        ]
        if self.target is not None:
            out.append(("target", self.target.encode()))
        return out

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes | None]]) -> DeadLetter:
        """Read the headers of a dead-letter record (ValueError if one of the four is missing)."""
        got = {k: (v or b"").decode("utf-8", "replace") for k, v in headers}
        missing = [k for k in ("rule", "reason", "source", "stage") if k not in got]
        if missing:
            raise ValueError(f"not a dead-letter record: no {', '.join(missing)} header")
        return cls(got["rule"], got["reason"], got["source"], got["stage"], got.get("target"))


__all__ = ["DeadLetter", "Headers", "source_of"]
