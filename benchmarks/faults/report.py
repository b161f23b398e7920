"""The printed table: one block per scenario, one line per table or view."""

from __future__ import annotations

from dataclasses import dataclass, field

from .tables import Count


@dataclass
class ScenarioResult:
    name: str
    what: str
    sent: int = 0
    acked: int = 0
    statuses: dict = field(default_factory=dict)
    retries: int = 0
    given_up: int = 0
    write_gap_s: float = 0.0
    catchup_s: float = 0.0
    caught_up: bool = True
    notes: list[str] = field(default_factory=list)
    counts: list[Count] = field(default_factory=list)
    skipped: str | None = None


HEADER = f"{'table / view':<30} {'sent':>7} {'acked':>7} {'stored':>7} {'lost':>6} {'doubled':>7}  note"


def render(path: str, scale: str, results: list[ScenarioResult]) -> str:
    lines = [f"== fault matrix, ClickHouse path: {path} ({scale})"]
    for r in results:
        lines.append("")
        if r.skipped:
            lines.append(f"-- {r.name}: skipped ({r.skipped})")
            continue
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items(), key=str))
        lines.append(f"-- {r.name}: {r.what}")
        lines.append(
            f"   recovery: longest stretch without an acknowledged write {r.write_gap_s:.1f}s; caught up "
            + (f"{r.catchup_s:.0f}s after the load stopped" if r.caught_up else f"NOT within {r.catchup_s:.0f}s")
        )
        lines.append(f"   answers: {statuses}; retried requests {r.retries}; given up {r.given_up}")
        for note in r.notes:
            lines.append(f"   {note}")
        lines.append("   " + HEADER)
        for c in r.counts:
            flag = " <<" if c.lost or c.doubled else ""
            lines.append(
                f"   {c.table:<30} {c.sent:>7} {c.acked:>7} {c.stored:>7} {c.lost:>6} {c.doubled:>7}  {c.note}{flag}"
            )
    return "\n".join(lines)
