"""`learnpulse replay` into the real broker: exact counts, rejects with reasons, resume after SIGTERM and SIGKILL."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from learnpulse.settings import Settings
from tests.conftest import REPO, wait_for
from tests.integration.test_producers_simulator import producer_settings, read_back, statements_of

CORPUS = Path("/work/shared/xapi-corpus")


def run_cli(args: list[str], settings, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "learnpulse", *args],
        check=False,
        cwd=REPO,
        env={**os.environ, **settings.to_env()},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def totals(stdout: str) -> dict[str, int]:
    """The numbers of the command's ``total:`` line."""
    line = next(ln for ln in stdout.splitlines() if ln.startswith("total:"))
    out = {}
    for part in line[len("total:") :].split(","):
        words = part.split()
        out[words[0]] = int(words[-1])
    return out


def simulated_file(tmp_path: Path, settings, n: int, seed: int = 3) -> tuple[Path, list[str]]:
    path = tmp_path / f"sim-{n}.jsonl.gz"
    res = run_cli(["simulate", "--out", str(path), "--count", str(n), "--seed", str(seed)], settings)
    assert res.returncode == 0, res.stderr
    with gzip.open(path) as f:
        ids = [orjson.loads(line)["id"] for line in f]
    assert len(ids) == n
    return path, ids


@pytest.mark.kafka
def test_producers_replay_files_into_kafka_exact_counts(tmp_path, kafka):
    settings = producer_settings(tmp_path, kafka)
    sim, sim_ids = simulated_file(tmp_path, settings, 4_000)
    # The real-world corpus is wrapped ({id, statement, ...}); unwrap it.
    res = run_cli(["replay", str(sim), "--school", "school-r"], settings)
    assert res.returncode == 0, res.stderr
    assert totals(res.stdout) == {"read": 4_000, "sent": 4_000, "rejected": 0, "skipped": 0}
    corpus_lines = (CORPUS / "valid.jsonl").read_bytes().splitlines()
    res = run_cli(
        ["replay", str(CORPUS / "valid.jsonl"), str(CORPUS / "invalid.jsonl"), "--school", "school-r",
         "--unwrap", "statement", "--rejects", str(tmp_path / "rejects.jsonl")],
        settings,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    counts = totals(res.stdout)
    rejects = [orjson.loads(line) for line in (tmp_path / "rejects.jsonl").read_bytes().splitlines()]
    assert counts["read"] == len(corpus_lines) + 2 and counts["rejected"] == len(rejects)
    assert {r["source"] for r in rejects} == {str(CORPUS / "valid.jsonl"), str(CORPUS / "invalid.jsonl")}
    assert all(r["rule"] == "attachments.part-missing" for r in rejects if Path(r["source"]).name == "valid.jsonl")

    expected = 4_000 + counts["sent"]
    stmts = statements_of(read_back(kafka, expected))
    assert len(stmts) == expected
    assert {s["authority"]["account"]["name"] for s in stmts} == {"school-r"}
    wanted = set(sim_ids)
    assert sorted(s["id"] for s in stmts if s["id"] in wanted) == sorted(sim_ids)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_producers_replay_resumes_after_interruption(tmp_path, kafka, spawn, how):
    """Interrupted mid-file and run again: every statement in Kafka; after SIGTERM none twice.

    After SIGKILL the statements since the last commit are sent again with the same ids
    (the sinks store each id once); the resumed run reports the committed part as skipped.
    """
    settings = producer_settings(tmp_path, kafka)
    n = 40_000
    sim, sim_ids = simulated_file(tmp_path, settings, n, seed=8)
    state = settings.home.resolve() / "replay" / "state.json"
    proc = spawn(["replay", str(sim), "--school", "school-r"], settings, "replay")

    def position() -> int:
        if proc.popen.poll() is not None:
            pytest.fail(f"replay ended before it was interrupted:\n{proc.tail()}")
        try:
            return next(iter(orjson.loads(state.read_bytes())["files"].values()))["position"]
        except (FileNotFoundError, orjson.JSONDecodeError, StopIteration):
            return 0

    wait_for(lambda: position() > 0, 120, "a first committed replay position")
    if how == "sigkill":
        proc.kill()
    else:
        assert proc.stop() == 0, proc.tail()
    committed = orjson.loads(state.read_bytes())
    saved = next(iter(committed["files"].values()))["position"]
    assert 0 < saved < n, "interrupted too late to test resuming"

    res = run_cli(["replay", str(sim), "--school", "school-r"], settings)
    assert res.returncode == 0, res.stderr
    counts = totals(res.stdout)
    assert counts["skipped"] == saved and counts["read"] == n - saved and counts["sent"] == n - saved

    stmts = statements_of(read_back(kafka, n, settle=3))
    ids = [s["id"] for s in stmts]
    assert set(ids) == set(sim_ids)  # nothing lost
    if how == "sigterm":
        assert len(ids) == n  # a clean stop commits what Kafka acknowledged: nothing doubled
    else:
        assert n <= len(ids) <= n + 5_000 + 256  # at most the uncommitted chunk again, same ids


def test_producers_replay_refuses_school_without_credential(tmp_path):
    settings = Settings(home=tmp_path / "home")
    add = run_cli(["credentials", "add", "--school", "school-a"], settings)
    assert add.returncode == 0, add.stderr
    (tmp_path / "s.jsonl").write_bytes(b'{"actor": {"mbox": "mailto:a@example.org"}}\n')
    res = run_cli(["replay", str(tmp_path / "s.jsonl"), "--school", "school-b"], settings)
    assert res.returncode == 2 and "no credential for this school" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "home" / "replay" / "state.json").exists()
