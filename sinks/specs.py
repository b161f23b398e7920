"""Which sink writes which topic into which tables: one definition, used by every entry point.

``learnpulse serve`` runs all of them in threads (``learnpulse/pipeline.py``);
``learnpulse sink --table NAME`` runs chosen ones in a process of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.clickhouse import tables as T
from schemas.clickhouse.ddl import needs_mapping
from schemas.clickhouse.engine import ClickHouse
from schemas.topics import Topic

from .consumer import AfterInsert, KafkaClickHouseSink, RowFilter, Rows, SinkConfig
from .copies import FirstCopyFilter
from .engines import connection_of_its_own, more_connections
from .forget import ForgottenFilter
from .hourly import ReplicatedHourlyRecompute, recompute_touched_hours
from .lrs_rows import LRS_STATEMENT_IDS
from .progress import ProgressPublisher
from .rows import COLUMNS, LRS_COLUMNS, MODERN_RANGE, OLD_SERVER_RANGE, builders
from .totals import ReplicatedRecompute, recompute_touched
from .voids import mark_voided


@dataclass(frozen=True)
class SinkSpec:
    name: str
    topic: Topic
    tables: tuple[str, ...]
    after_insert: tuple[AfterInsert, ...] = ()
    # Write only the first stored copy of a statement the gateway accepted twice (sinks/copies.py).
    first_copy_only: bool = False
    # The dashboard's live rollups: batches close after SinkParameters.rollup_max_wait_s.
    dashboard_rollup: bool = False
    # Its progress is the LRS's X-Experience-API-Consistent-Through (reporting/progress.py):
    # ends measured every SinkParameters.consistent_progress_s while it holds records.
    consistent_through: bool = False
    # Tables inserted side by side over this many more connections on a server (sinks/inserts.py).
    side_by_side: tuple[str, ...] = ()
    more_connections: int = 0


# statements_raw first: the first table's rows count towards the batch size, and the LRS
# read index (reporting/lrs.py) expects the JSON to be there when an id is indexed.
# lrs_statement_ids last: a statement found there is written whole (sinks/copies.py).
# The tables between them promise nothing to each other: side by side on a server.
_LRS_BUT_IDS = tuple(t for t in LRS_COLUMNS if t != LRS_STATEMENT_IDS)
SPECS: dict[str, SinkSpec] = {
    s.name: s
    for s in (
        SinkSpec(
            "statements",
            Topic.STATEMENTS,
            (T.STATEMENTS_RAW, *_LRS_BUT_IDS, T.STATEMENTS, T.STATEMENT_VOIDS, T.LEARNER_NAMES, LRS_STATEMENT_IDS),
            # Totals after voids: the recompute must see the rows mark_voided rewrote.
            (mark_voided, recompute_touched),
            first_copy_only=True,
            consistent_through=True,
            side_by_side=(*_LRS_BUT_IDS, T.STATEMENTS, T.STATEMENT_VOIDS, T.LEARNER_NAMES),
            more_connections=2,
        ),
        # engagement_hourly from the rows just written (sinks/hourly.py).
        SinkSpec("engagement", Topic.ENGAGEMENT, (T.ENGAGEMENT,), (recompute_touched_hours,), dashboard_rollup=True),
        SinkSpec("mastery", Topic.MASTERY, (T.MASTERY, T.MASTERY_HISTORY)),
        SinkSpec("cohort_health", Topic.COHORT_HEALTH, (T.COHORT_HEALTH,)),
        SinkSpec("alerts", Topic.ALERTS, (T.ALERTS,)),
        SinkSpec("quarantine", Topic.QUARANTINE, (T.QUARANTINE,)),
    )
}


@dataclass(frozen=True)
class SinkParameters:
    """What the sinks need from settings (grouped, see STYLE.md #10)."""

    bootstrap: str
    topic_prefix: str
    secret: bytes
    max_rows: int = 20_000
    max_wait_s: float = 1.0
    # The batch window of the sinks the dashboard reads live (engagement, and from it
    # engagement_hourly): shorter, so their figures follow the worker within ~2 s; it costs
    # ClickHouse one more small insert and recompute a second. None: max_wait_s.
    rollup_max_wait_s: float | None = 0.5
    # How often the statements sink measures Kafka's ends while it holds records (a
    # ListOffsets request each), and how long a due batch reads up to the ends measured as it
    # fell due before it closes: a statement is then covered by its own batch's commit, not
    # the next one's, in Consistent-Through. None: once a second and no wait, as every other sink.
    consistent_progress_s: float | None = 0.25
    # Consumer groups are "<group_prefix>-<sink name>"; default prefix
    # "<topic prefix>learnpulse-sink". A new prefix replays the topics from their start
    # (auto_offset_reset=earliest) into the same tables, which collapse the copies.
    group_id: str | None = None
    # Static group membership: "<instance_id>-<sink name>" per sink (see SinkConfig).
    instance_id: str | None = None
    # The cluster form (clickhouse.cluster.name set): replicated tables (sinks/totals.py).
    replicated: bool = False


def batch_window_s(spec: SinkSpec, params: SinkParameters) -> float:
    """How long sink ``spec`` collects records before it writes them."""
    if spec.dashboard_rollup and params.rollup_max_wait_s is not None:
        return min(params.max_wait_s, params.rollup_max_wait_s)
    return params.max_wait_s


def busy_progress_s(spec: SinkSpec, params: SinkParameters) -> float | None:
    """How often sink ``spec`` measures Kafka's ends while it holds records (None: its idle pace)."""
    return params.consistent_progress_s if spec.consistent_through else None


def after_insert_steps(name: str, replicated: bool) -> tuple[AfterInsert, ...]:
    """The after-insert steps of sink ``name``; ``replicated``: in the cluster form (the
    totals recomputes wait for their replica first, sinks/totals.py and sinks/hourly.py)."""
    steps = SPECS[name].after_insert
    if not replicated:
        return steps
    cluster_form = {recompute_touched: ReplicatedRecompute, recompute_touched_hours: ReplicatedHourlyRecompute}
    return tuple(cluster_form[s]() if s in cluster_form else s for s in steps)


def build_sinks(
    params: SinkParameters, engine: ClickHouse, names: Sequence[str] | None = None
) -> list[KafkaClickHouseSink]:
    """The sinks ``names`` (default: all), writing through ``engine``."""
    unknown = [n for n in names or () if n not in SPECS]
    if unknown:
        raise ValueError(f"unknown sinks {unknown}; known: {', '.join(SPECS)}")
    limits = OLD_SERVER_RANGE if needs_mapping(engine.server_version()) else MODERN_RANGE
    make_rows = builders(params.secret, limits)
    progress = ProgressPublisher(engine)
    forgotten = ForgottenFilter(engine, COLUMNS)
    sinks = []
    for name in names or list(SPECS):
        spec = SPECS[name]
        # Each sink's writer on a connection of its own: on one shared connection the sinks'
        # inserts and recomputes ran one at a time, and the statements sink's batch waited for them.
        own, owned = connection_of_its_own(engine)
        # Its look-ups of stored copies on the connection its inserts go through.
        first_copy = FirstCopyFilter(own, COLUMNS) if spec.first_copy_only else None
        config = SinkConfig(
            name=name,
            bootstrap=params.bootstrap,
            topic=spec.topic.physical(params.topic_prefix),
            group_id=f"{params.group_id or params.topic_prefix + 'learnpulse-sink'}-{name}",
            deadletter_topic=Topic.DEADLETTER.physical(params.topic_prefix),
            tables=spec.tables,
            side_by_side=spec.side_by_side,
            max_rows=params.max_rows,
            max_wait_s=batch_window_s(spec, params),
            busy_progress_interval_s=busy_progress_s(spec, params),
            # The same bound: how long a due batch reads up to the ends measured as it fell due.
            closing_wait_s=busy_progress_s(spec, params),
            group_instance_id=f"{params.instance_id}-{name}" if params.instance_id else None,
        )
        sinks.append(
            KafkaClickHouseSink(
                config,
                own,
                make_rows[name],
                COLUMNS,
                after_insert=after_insert_steps(name, params.replicated),
                row_filter=_chain(forgotten, first_copy) if first_copy is not None else forgotten,
                insert_filter=first_copy.unwritten if first_copy is not None else None,
                retry_filter=first_copy.not_in_table if first_copy is not None else None,
                on_progress=progress,
                owns_engine=owned,
                extra_engines=more_connections(own, spec.more_connections) if spec.side_by_side else (),
            )
        )
    return sinks


def _chain(*filters: RowFilter) -> RowFilter:
    def apply_all(rows: Rows) -> Rows:
        for f in filters:
            rows = f(rows)
        return rows

    return apply_all
