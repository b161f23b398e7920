"""Simulator truth in ClickHouse (both engines) matches the JSON Lines truth of the same run."""

from __future__ import annotations

import collections
import itertools

import orjson

from producers.simulator import Simulation, SimulationConfig
from producers.truth import ClickHouseTruthWriter, JsonlTruthWriter, TruthFanout
from schemas.truth import TRUTH_TABLE, decode_record, read_truth
from sinks.engines import engine_from_url


def test_producers_truth_to_clickhouse_matches_jsonl(tmp_path, clickhouse_url):
    ch = engine_from_url(clickhouse_url)
    try:
        writer = TruthFanout([JsonlTruthWriter(tmp_path / "t.jsonl"), ClickHouseTruthWriter(ch, "run-a", block_rows=500)])
        sim = Simulation(SimulationConfig(seed=17, schools=2, courses_per_school=2, learners_per_course=10), writer.write)
        for _ in itertools.islice(sim, 5_000):
            pass
        for record in sim.finish():
            writer.write(record)
        writer.close()

        truth = read_truth(tmp_path / "t.jsonl")
        expected = collections.Counter(
            {"run": 1, "skill": len(truth.skills), "cohort": len(truth.cohorts), "learner": len(truth.learners),
             "mastery": len(truth.mastery), "active": len(truth.active)}
        )  # fmt: skip
        rows = ch.query(f"SELECT kind, count() FROM {{db}}.{TRUTH_TABLE} WHERE run_id = 'run-a' GROUP BY kind")
        assert collections.Counter({k: int(n) for k, n in rows}) == expected
        (answered,) = ch.query(
            f"SELECT sum(visitParamExtractInt(record, 'answered')) FROM {{db}}.{TRUTH_TABLE} WHERE kind = 'learner'"
        )
        assert int(answered[0]) == truth.run.answered
        records = [decode_record(r[0]) for r in ch.query(f"SELECT record FROM {{db}}.{TRUTH_TABLE}")]
        from_file = sorted(orjson.dumps(r, default=str) for r in [truth.run, *truth.skills, *truth.cohorts,
                           *truth.learners, *truth.mastery, *truth.active])  # fmt: skip
        assert sorted(orjson.dumps(r, default=str) for r in records) == from_file
    finally:
        ch.close()
