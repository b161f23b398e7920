"""``learnpulse capacity``: processes, partitions and storage for a school network (learnpulse/capacity.py)."""

from __future__ import annotations

import click

from ..errors import UserError


def register(main: click.Group) -> None:
    @main.command()
    @click.option("--schools", type=int, required=True, help="Schools in the network.")
    @click.option("--learners", type=int, required=True, help="Learners in the whole network.")
    @click.option("--statements-per-hour", type=float, required=True,
                  help="Statements the whole network sends in its busiest hour.")
    @click.option("--per-request", type=float, default=1.0, show_default=True,
                  help="Statements per HTTP request (1: course content in browsers; 10-100: an LMS or the bridge).")
    @click.option("--busy-hours", type=float, default=6.0, show_default=True,
                  help="Hours per school day at the busiest hour's rate (for the yearly volume).")
    @click.option("--school-days", type=int, default=180, show_default=True)
    @click.option("--replicas", type=int, default=1, show_default=True, help="ClickHouse replicas of each shard.")
    @click.option("--kafka-replication", type=int, default=1, show_default=True)
    @click.option("--kafka-retention-days", type=float, default=7.0, show_default=True)
    @click.option("--statement-bytes", type=float, default=None,
                  help="Mean JSON size of your statements (default: the simulator's, measured).")
    @click.option("--utilisation", type=float, default=0.6, show_default=True,
                  help="Share of each core to plan for (room for bursts and catching up after an outage).")
    def capacity(schools, learners, statements_per_hour, per_request, busy_hours, school_days, replicas,
                 kafka_replication, kafka_retention_days, statement_bytes, utilisation) -> None:  # fmt: skip
        """Cores, processes, memory, partitions and storage a network needs (clickhouse-server path), from figures measured here.

        \b
        Example: learnpulse capacity --schools 40 --learners 20000 --statements-per-hour 400000
        The figures and the commands that measured them: deploy/CAPACITY.md.
        """
        from ..capacity import SIMULATOR_JSON_BYTES, Workload, plan, render

        workload = Workload(
            schools=schools, learners=learners, statements_per_hour=statements_per_hour,
            statements_per_request=per_request, active_hours_per_day=busy_hours,
            school_days_per_year=school_days, clickhouse_replicas=replicas, kafka_replication=kafka_replication,
            kafka_retention_days=kafka_retention_days, statement_json_bytes=statement_bytes or SIMULATOR_JSON_BYTES,
            utilisation=utilisation,
        )  # fmt: skip
        try:
            click.echo(render(plan(workload)))
        except ValueError as err:
            raise UserError(str(err)) from err
