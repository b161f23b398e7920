"""The benchmarks still run: each one that needs no broker, at the smallest scale.

Benchmarks print figures and are never asserted on them; this only checks that a refactor
did not leave one broken (chdb_concurrency imported a function renamed months before).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_benchmark(module: str, *args: str, timeout: float = 300) -> str:
    """``python -m benchmarks.<module> args…`` to a clean exit; its standard output."""
    done = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", f"benchmarks.{module}", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_chdb_concurrency_benchmark_runs_to_a_clean_exit():
    out = run_benchmark("chdb_concurrency", "--rows", "20000", "--seconds", "4", "--readers", "1")
    assert "child exit 0" in out and "errors: []" in out, out[-2000:]


def test_dashboard_benchmark_prints_every_answer_for_every_reader():
    out = run_benchmark("bench_dashboard", "--statements", "20000", "--repeat", "2")
    lines = [line.split() for line in out.splitlines() if line.startswith("/api/")]
    assert {(line[0], line[1]) for line in lines} == {
        (answer, reader) for answer in ("/api/summary", "/api/state", "/api/schools/{school}", "/api/cohorts/{…}",
                                        "/api/cohorts/{…}/learners/{l}", "/api/trends", "/api/alerts")
        for reader in ("network", "school", "teacher")
    }  # fmt: skip


def test_sparkline_benchmark_pairs_both_definitions_with_equal_answers(tmp_path):
    run_benchmark("bench_dashboard", "--statements", "20000", "--repeat", "1", "--data", str(tmp_path))
    out = run_benchmark("bench_sparkline", "--data", str(tmp_path), "--repeat", "2")
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["network"], ["school"], ["teacher"])]
    assert [(r[0], r[-1]) for r in rows] == [("network", "True"), ("school", "True"), ("teacher", "True")], out


def test_storage_benchmark_counts_every_table_the_statements_sink_writes():
    out = run_benchmark("bench_storage", "--statements", "2000", "--engines", "chdb")
    rows = {" ".join(line.split()[:2]): line.split() for line in out.splitlines() if line.startswith("chdb ")}
    # Every statement is one row of statements and of statements_raw, and takes some bytes.
    assert float(rows["chdb statements"][2]) == 1.0 and float(rows["chdb statements_raw"][2]) == 1.0
    total = rows["chdb every"]  # "chdb every table  <compressed> <on disk> …"
    assert float(total[3].replace(",", "")) > 0
    kafka = next(line for line in out.splitlines() if line.startswith("Kafka xapi.statements"))
    assert float(kafka.split()[4].replace(",", "")) > 0


def sent_all_acknowledged(row: list[str]) -> bool:
    """A step's row (offered/s, accepted/s, sent, accepted, …): statements were sent and every
    one sent was acknowledged. How many of the 200 due were sent depends on the machine's load
    (the clients fall behind an open-loop schedule), so it is not compared with 200."""
    sent, accepted = int(row[2].replace(",", "")), int(row[3].replace(",", ""))
    return 0 < sent <= 200 and accepted == sent


def test_end_to_end_benchmark_fed_by_the_simulator_prints_its_table():
    """The whole pipeline started by the benchmark (Kafka, worker, gateway with the sinks on
    chDB), fed by ``learnpulse simulate`` one statement per message: every statement due is
    acknowledged and the table names every stage."""
    out = run_benchmark("bench_end_to_end", "--source", "simulator", "--rates", "40", "--duration", "5", "--warmup",
                        "0", "--settle", "10", "--ceiling-statements", "0", "--probes", "1", timeout=600)  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("40 ")]
    assert rows and sent_all_acknowledged(rows[0]), out[-3000:]
    for stage in ("learnpulse-streams ← ", "learnpulse-sink-statements ← "):
        assert stage in out, out[-3000:]
    assert "(d): n/a: no event clock (the simulator stamps its own" in out, out[-3000:]
    # (worker): the probes' statements counted in the worker's engagement records on Kafka.
    worker = freshness_cells(out)[0][2]
    assert re.fullmatch(r".* \(([1-9]\d*)/\d+\)", worker), worker


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_scaleout_benchmark_prints_one_and_two_processes_of_every_stage_and_their_memory():
    """Gateways (direct and behind HAProxy), sinks and workers, one process next to two; the
    end-to-end figure on one broker and on the 3-broker cluster; the memory of every process."""
    out = run_benchmark("bench_scaleout", "--statements", "2000", "--duration", "2", "--clients", "4", "--batch",
                        "10", "--timeout", "300", timeout=1400)  # fmt: skip
    for stage in ("gateways, direct", "gateways behind HAProxy", "statements sinks (clickhouse-server)",
                  "stream workers"):  # fmt: skip
        lines = [line for line in out.splitlines() if line.startswith(stage)]
        assert lines, out[-3000:]
        for line in lines:  # stage (38) shape (26), then 1 process, 2, 2 / 1: by the wall clock, then per CPU-second
            figures = line[64:].split()[:6]
            assert len(figures) == 6, line
            for one, two, ratio in (figures[:3], figures[3:]):
                assert float(one.replace(",", "")) > 0 and float(two.replace(",", "")) > 0, line
                assert ratio.endswith("x"), line
    assert "3 brokers, replication 3, min.insync 2" in out and "cluster / single" in out, out[-3000:]
    memory = out.split("resident memory", 1)[1]
    for process in ("gateway (--no-sinks)", "gateway + every sink on chDB", "stream worker", "sink process",
                    "kafka broker", "clickhouse-server", "haproxy"):  # fmt: skip
        line = next((row for row in memory.splitlines() if row.startswith(process)), None)
        assert line is not None and float(line.split()[-1].replace(",", "")) > 0, memory


def freshness_cells(table: str) -> list[list[str]]:
    """Each step's freshness cells, (a) by id … (d) health, of one printed table."""
    rows = table.split("freshness from acknowledgement", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    steps = [row for row in rows if row.split() and row.split()[0].replace(",", "").isdigit()]
    return [[row[11 + 23 * i : 11 + 23 * (i + 1)].strip() for i in range(5)] for row in steps]


def health_cells(table: str) -> list[str]:
    """The (d) "in cohort health" cell of each step's freshness row of one printed table."""
    rows = table.split("freshness from acknowledgement", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return [row[-22:].strip() for row in rows if row.split() and row.split()[0].replace(",", "").isdigit()]


def test_end_to_end_benchmark_on_the_clickhouse_cluster_form_next_to_one_server():
    """``--clickhouse-replicas 2 --compare-single``: one server, then ZooKeeper and two replicas
    with a sink process each, in one run; both tables, every process's CPU, and the ratios; and
    on the event clock, (d) "in cohort health" seen in at least one of the two steps (each
    waits up to --settle 40 s for it), and (c) in the engagement rollups."""
    out = run_benchmark("bench_end_to_end", "--path", "server", "--clickhouse-replicas", "2", "--compare-single",
                        "--rates", "40", "--duration", "5", "--warmup", "0", "--settle", "40", "--ceiling-statements",
                        "0", "--probes", "1", "--learners", "200", "--clients", "32", timeout=900)  # fmt: skip
    tables = out.split("== end to end, path ")[1:]
    assert [t.split(",")[0:2] for t in tables] == [["server", " 1 statement(s) per POST"],
                                                   ["server", " cluster of 2 replicas"]], out[-3000:]  # fmt: skip
    for table in tables:
        rows = [line.split() for line in table.splitlines() if line.strip().startswith("40 ")]
        assert rows and sent_all_acknowledged(rows[0]), table[-3000:]
    cells = [cell for table in tables for cell in health_cells(table)]
    assert len(cells) == 2, out[-3000:]
    seen = [re.fullmatch(r".* \((\d+)/(\d+)\)", cell) for cell in cells]
    assert any(m and int(m.group(1)) > 0 for m in seen), cells
    # (c): the probes' statements counted in the engagement rollups read back from ClickHouse.
    rollups = [cells[3] for table in tables for cells in freshness_cells(table)]
    assert any((m := re.fullmatch(r".* \((\d+)/\d+\)", cell)) and int(m.group(1)) > 0 for cell in rollups), rollups
    cpu = tables[1].split("CPU seconds per 1,000")[1].splitlines()[1].split()
    for process in ("sink", "sink-2", "zookeeper", "clickhouse-r1", "clickhouse-r2"):
        assert process in cpu, cpu
    # What the server counted over the step, read through the pipeline's own engine: it inserted.
    for table in tables:
        work = table.split("the ClickHouse server the pipeline's URL names")[1].splitlines()[1]
        inserted = re.search(r" ([\d,.]+) rows inserted/s", work)
        assert work.split()[0] == "40" and inserted and float(inserted.group(1).replace(",", "")) > 0, work
    comparison = out.split("== server, cluster of 2 replicas / server, same run")[1]
    accepted = next(line for line in comparison.splitlines() if "accepted/s" in line).split()
    assert accepted[0] == "40" and accepted[-1].endswith("x"), comparison


def test_sql_shape_probe_writes_the_rows_the_sink_writes():
    # The probe's views must shape the very rows sinks.rows builds, or its figures compare
    # two different jobs (an ISO duration summed in another order is a differing column).
    out = run_benchmark("bench_sink_sql_shape", "--statements", "2000", "--batch", "1000", "--rounds", "1")
    assert "statements_raw: identical True" in out and "statements: identical True" in out, out[-2000:]


def test_commit_visibility_counts_every_transaction():
    out = run_benchmark("commit_visibility", "--transactions", "20")
    row = out.strip().splitlines()[-1].split()
    assert row[0] == "20" and 0 <= int(row[1]) <= 20, out[-2000:]
