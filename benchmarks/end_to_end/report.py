"""The tables printed at the end."""

from __future__ import annotations

from datetime import UTC, datetime

from .ceilings import Ceiling
from .disk import disk_summary
from .probes import MEASURES
from .rules import highest_held
from .run import StepResult
from .server_work import server_work_summary

CHDB_NA = "n/a (chDB: only its owner reads it; use --path server)"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


def _fresh(value: tuple[float | None, float | None, int, int], na: bool) -> str:
    if na:
        return "n/a"
    p50, p99, seen, total = value
    if not total:
        return "no probe"
    if not seen:
        return f"none of {total}"
    return f"{_ms(p50)}/{_ms(p99)} ({seen}/{total})"


def _not_measured(measure: str, step: StepResult, clickhouse_live: bool) -> bool:
    if measure == "health" and step.clock is None:
        return True  # no event clock (the simulator stamps its own times)
    if measure == "worker":
        return "worker" not in step.freshness  # followed only with a Kafka consumer
    return not clickhouse_live and measure in ("engagement", "health")


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def health_notes(steps: list[StepResult]) -> list[str]:
    """What (d) measures, and each step's event clock."""
    clocked = [s for s in steps if s.clock is not None]
    if not clocked:
        return ["(d): n/a: no event clock (the simulator stamps its own simulated times; a cohort_health row "
                "comes only when event time crosses an hour + the watermark lag)"]  # fmt: skip
    out = ["(d): per probe course/cohort, from the first acknowledgement of a statement stamped at or after H + the "
           "watermark lag (the crossing) to the first moment a cohort_health row with at = H is readable; event "
           "clock: statements stamped wall time + offset, H one hour later each step, the crossing min(5 s, "
           "duration/4) after the step's load starts"]  # fmt: skip
    for s in clocked:
        c = s.clock
        out.append(f"  {s.rate:,.0f}/s: H = {_utc(c.boundary_ms)}, offset {c.offset_ms / 3_600_000:+.3f} h")
    return out


def _series(values: list[int], most: int = 20) -> str:
    """The samples, thinned evenly to at most ``most`` (first and last kept)."""
    if len(values) > most:
        step = (len(values) - 1) / (most - 1)
        values = [values[round(i * step)] for i in range(most)]
    return " ".join(str(v) for v in values)


def _stage(group: str, topic: str) -> str:
    return f"{group} ← {topic}"


def render(path: str, fed_by: str, steps: list[StepResult], ceilings: list[Ceiling], clickhouse_live: bool,
           elapsed: float, notes: list[str] = ()) -> str:  # fmt: skip
    out = [f"== end to end, path {path}, {fed_by} ({elapsed:.0f}s in all)", ""]
    out.append(f"{'offered/s':>9} {'accepted/s':>10} {'sent':>7} {'accepted':>8}  {'lat p50/p99 ms':>14}  "
               f"{'lag bounded':>11} {'held':>5}  answers")  # fmt: skip
    for s in steps:
        bounded = sum(1 for lag in s.lags.values() if lag.bounded)
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(s.load.statuses.items(), key=str))
        out.append(f"{s.rate:>9,.0f} {s.accepted_per_s():>10,.0f} {s.load.sent:>7} {s.load.accepted:>8}  "
                   f"{_ms(s.latency(50)) + '/' + _ms(s.latency(99)):>14}  {f'{bounded}/{len(s.lags)}':>11} "
                   f"{'yes' if s.held else 'no':>5}  {answers}")  # fmt: skip
    best = highest_held([(s.rate, s.held) for s in steps])
    out.append(f"highest offered rate that held: {'none' if best is None else f'{best:,.0f}/s'} "
               f"(accepted ≥ 0.98 × offered and every stage's lag bounded)")  # fmt: skip
    out += ["", "freshness from acknowledgement, ms p50/p99 (probes seen/probes):"]
    out.append(f"{'offered/s':>9}  {'(a) by id':>22} {'(b) consistent':>22} {'(worker) record':>22} "
               f"{'(c) engagement':>22} {'(d) health':>22}")
    for s in steps:
        cells = [_fresh(s.freshness.get(m), _not_measured(m, s, clickhouse_live)) for m in MEASURES]
        out.append(f"{s.rate:>9,.0f}  " + " ".join(f"{c:>22}" for c in cells))
    if not clickhouse_live:
        out.append(f"(c), (d): {CHDB_NA}")
    reads = ", ".join(f"{s.rate:,.0f}/s: {s.first_reads[0]} of {s.first_reads[1]}" for s in steps)
    out.append(f"(a) read-your-writes, the first GET by id sent after the acknowledgement answered 200: {reads}")
    out += health_notes(steps)
    out += ["", "consumer lag in offsets (records + transaction markers; group ← topic): max / final per step, "
            "* = not bounded"]
    stages = sorted({k for s in steps for k in s.lags})
    out.append(f"{'stage':<60} " + " ".join(f"{f'{s.rate:,.0f}/s':>14}" for s in steps))
    for stage in stages:
        cells = []
        for s in steps:
            lag = s.lags.get(stage)
            cells.append("-" if lag is None else f"{lag.max}/{lag.final}{'' if lag.bounded else '*'}")
        out.append(f"{_stage(*stage)[:60]:<60} " + " ".join(f"{c:>14}" for c in cells))
    out += ["", "lag over time (offsets, every ~2 s sample of each step):"]
    for stage in stages:
        for s in steps:
            lag = s.lags.get(stage)
            if lag is not None and lag.max:
                out.append(f"  {_stage(*stage)[:52]:<52} {f'{s.rate:,.0f}/s':>8}: {_series(lag.samples)}")
    out += ["", "CPU seconds per 1,000 accepted statements, per process (over each step's load):"]
    names = list(steps[0].cpu) if steps else []
    out.append(f"{'offered/s':>9} " + " ".join(f"{n:>14}" for n in names))
    for s in steps:
        per = [s.cpu[n] / s.load.accepted * 1000 if s.load.accepted else float("nan") for n in names]
        out.append(f"{s.rate:>9,.0f} " + " ".join(f"{v:>14.3f}" for v in per))
    out += machine_lines(steps)
    out += insert_lines(steps)
    out += phase_lines(steps)
    out += server_work_lines(steps)
    if ceilings:
        base, named = best, "highest held rate"
        if base is None:
            base, named = max(s.accepted_per_s() for s in steps), "highest accepted/s (no rate held)"
        out += ["", f"ceilings, same run, same broker and ClickHouse (statements/s; ratio = {named} / ceiling):"]
        for c in ceilings:
            ratio = f"{base / c.per_second:.3f}"
            out.append(f"  {c.what:<62} {c.per_second:>10,.0f}/s  ratio {ratio:>6}  "
                       f"cpu {c.cpu_per_1k:.3f}s/1k  {c.note}")  # fmt: skip
    if notes:
        out += ["", *notes]
    return "\n".join(out)


def machine_lines(steps: list[StepResult]) -> list[str]:
    """Cores each process kept busy over each step's load, beside the whole machine's; then
    what the machine's disks did in the same seconds.

    Per 1,000 statements a process costs more at low rates than at high ones (its batches,
    transactions and fetches carry fewer statements), so those figures alone do not say how
    close a step came to the machine's limit; this does, and "others" is what ran beside the
    pipeline (busy CPU not in the processes listed: other work, the kernel's own).
    """
    measured = [s for s in steps if s.measured_s > 0 and s.machine[1] > 0]
    if not measured:
        return []
    names = list(measured[0].cpu)
    cores = measured[0].machine[1] / measured[0].measured_s
    out = ["", f"cores busy over each step's load (CPU seconds per second), per process and on the whole machine "
           f"({cores:.0f} cores):"]  # fmt: skip
    out.append(f"{'offered/s':>9} " + " ".join(f"{n:>14}" for n in [*names, "all above", "machine", "others"]))
    for s in measured:
        per = [s.cpu[n] / s.measured_s for n in names]
        machine = s.machine[0] / s.measured_s
        out.append(f"{s.rate:>9,.0f} " + " ".join(f"{v:>14.2f}" for v in [*per, sum(per), machine])
                   + f"{max(0.0, machine - sum(per)):>15.2f}")  # fmt: skip
    disks = [s for s in measured if s.disks is not None]
    if disks:
        # Whole-machine counters: they cannot say which process wrote or synced.
        out += ["", "the machine's disks over each step's load (every process's writes and syncs together):"]
        out += [f"{s.rate:>9,.0f}  {disk_summary(s.disks, s.measured_s)}" for s in disks]
    return out


def insert_lines(steps: list[StepResult]) -> list[str]:
    """Each step's ClickHouse inserts per process that runs sinks: whether a lagging sink waited on them."""
    rows = [(s, name, ins) for s in steps for name, ins in sorted(s.inserts.items())]
    if not rows:
        return []
    out = ["", "the sinks' ClickHouse inserts over each step's load, per process (every table; the sinks of a "
           "process insert in parallel, so seconds per second may pass 1):"]
    for s, name, ins in rows:
        mean = f"{ins.seconds / ins.count * 1000:,.1f} ms each" if ins.count else "none"
        slowest = ", ".join(f"{t} {sec / count * 1000:,.0f} ms × {count / s.duration:.1f}/s"
                            for t, count, sec in ins.slowest(3))  # fmt: skip
        out.append(f"{s.rate:>9,.0f}  {name:<14} {ins.count / s.duration:>7.1f} inserts/s, "
                   f"{ins.seconds / s.duration:.2f} s inserting per s, {mean}"
                   + (f"; slowest: {slowest}" if slowest else ""))  # fmt: skip
    return out


def server_work_lines(steps: list[StepResult]) -> list[str]:
    """What the ClickHouse server counted over each step's load (server path only)."""
    measured = [s for s in steps if s.server_work is not None]
    if not measured:
        return []
    out = ["", "the ClickHouse server the pipeline's URL names, over each step's load (its system.events; parts "
           "written: by every insert into a table or materialized view, each merged again later):"]  # fmt: skip
    out += [f"{s.rate:>9,.0f}  {server_work_summary(s.server_work, s.measured_s or s.duration)}" for s in measured]
    return out


def phase_lines(steps: list[StepResult]) -> list[str]:
    """Each step's batches per sink and the mean time of each phase: what a lagging
    Consistent-Through or rollup waited on (a batch fills while the one before is written)."""
    rows = [(s, sink, phases) for s in steps for _name, ins in sorted(s.inserts.items())
            for sink, phases in sorted(ins.sink_phases().items())]  # fmt: skip
    if not rows:
        return []
    out = ["", "the sinks' batches over each step's load: batches/s, then mean ms per batch of each phase "
           "(filling: opened to handed to the writer; rows: gathered and filtered; insert: every table; "
           "after-insert steps by name; commit; progress: ends measured and published):"]  # fmt: skip
    for s, sink, phases in rows:
        batches = next((count for phase, count, _sec in phases if phase == "filling"), 0.0)
        if not batches:
            continue
        means = ", ".join(f"{phase} {sec / count * 1000:,.0f}" for phase, count, sec in phases if count)
        out.append(f"{s.rate:>9,.0f}  {sink:<14} {batches / s.duration:>5.1f}/s  {means}")
    return out


def cpu_per_1k(step: StepResult, which=lambda _name: True) -> float:
    """CPU seconds per 1,000 accepted statements of the step's processes ``which`` keeps
    (the load generator never: it is the same in both forms)."""
    if not step.load.accepted:
        return float("nan")
    spent = sum(v for n, v in step.cpu.items() if n != "load generator" and which(n))
    return spent / step.load.accepted * 1000


def _clickhouse_side(name: str) -> bool:
    return name.startswith("clickhouse") or name == "zookeeper"


def _sinks(name: str) -> bool:
    return name.startswith("sink")


def render_comparison(single, cluster) -> str:
    """Both forms' steps of one run side by side (runs with ``form`` and ``steps``): per offered
    rate, accepted/s, freshness (a) and (c) p50 and CPU per 1,000 statements, and cluster / single."""
    out = ["", f"== {cluster.form} / {single.form}, same run, same load", ""]
    out.append(f"{'offered/s':>9}  {'':<34} {'single':>10} {'cluster':>10} {'ratio':>7}")
    singles = {s.rate: s for s in single.steps}
    rows = (
        ("accepted/s", lambda s: s.accepted_per_s(), "{:,.0f}"),
        ("(a) by id p50 ms", lambda s: _p50_ms(s, "by id"), "{:,.0f}"),
        ("(c) engagement p50 ms", lambda s: _p50_ms(s, "engagement"), "{:,.0f}"),
        ("CPU s/1k, every process", cpu_per_1k, "{:.3f}"),
        ("CPU s/1k, sinks", lambda s: cpu_per_1k(s, _sinks), "{:.3f}"),
        ("CPU s/1k, ClickHouse (+ ZooKeeper)", lambda s: cpu_per_1k(s, _clickhouse_side), "{:.3f}"),
    )
    for step in cluster.steps:
        alone = singles.get(step.rate)
        if alone is None:
            continue
        for name, value, fmt in rows:
            a, b = value(alone), value(step)
            ratio = f"{b / a:.2f}x" if a and b is not None and a == a and b == b else "-"
            out.append(f"{step.rate:>9,.0f}  {name:<34} {_fmt(fmt, a):>10} {_fmt(fmt, b):>10} {ratio:>7}")
    held = [highest_held([(s.rate, s.held) for s in run.steps]) for run in (single, cluster)]
    out.append("highest offered rate that held: " + ", ".join(
        f"{run.form} {'none' if h is None else f'{h:,.0f}/s'}" for run, h in zip((single, cluster), held, strict=True)))  # fmt: skip
    return "\n".join(out)


def _p50_ms(step: StepResult, measure: str) -> float | None:
    p50 = step.freshness[measure][0]
    return None if p50 is None else p50 * 1000


def _fmt(fmt: str, value: float | None) -> str:
    return "-" if value is None or value != value else fmt.format(value)
