"""`learnpulse bridge` against a real third-party LRS (Ralph, file-system backend) and the real broker.

Ralph is installed once into its own virtualenv under the cache directory (never into
the project's environment) and started per test with uvicorn on a free loopback port.
Its file-system backend writes its store in "create" mode, so only the first POST would
work; the launcher switches it to append mode so statements can arrive between bridge
runs, as they do in production.
"""

from __future__ import annotations

import base64
import fcntl
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import orjson
import pytest

from learnpulse.pipeline import make_publisher
from learnpulse.settings import Settings
from producers.lrs_bridge import BridgeOptions, LrsBridge
from producers.simulator import SimulationConfig, simulate
from producers.tincan_compat import StatementsClient
from tests.conftest import free_port, wait_for
from tests.integration.test_producers_replay import run_cli
from tests.integration.test_producers_simulator import producer_settings, read_back, statements_of

CORPUS = Path("/work/shared/xapi-corpus")
RALPH_SPEC = ["ralph-malph[lrs]>=5.1,<6", "requests>=2.31,<3"]  # 5.1's lrs extra forgets requests
USER, PASSWORD = "bridge", "bridge-secret"

_LAUNCHER = """
import sys
from ralph.backends.data.base import BaseOperationType
from ralph.backends.lrs.fs import FSLRSBackend
FSLRSBackend.default_operation_type = BaseOperationType.APPEND  # append instead of create-once
import uvicorn
uvicorn.run("ralph.api:app", host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@pytest.fixture(scope="session")
def ralph_python() -> Path:
    """Python of a virtualenv holding Ralph, created on first use (under a lock: parallel runs share it)."""
    cache = Settings().cache_dir
    venv = cache / "ralph-venv"
    stamp = venv / (".learnpulse-" + "-".join(RALPH_SPEC).replace("/", "_").replace(" ", ""))
    python = venv / "bin" / "python"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "ralph-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            steps = [[sys.executable, "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", "-q", *RALPH_SPEC]]
            for cmd in steps:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
                if res.returncode != 0:
                    pytest.fail(f"installing Ralph failed: {' '.join(cmd)}\n{res.stdout}\n{res.stderr}")
            stamp.touch()
    return python


class Ralph:
    def __init__(self, python: Path, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/xAPI/"
        hashed = subprocess.run(
            [str(python), "-c", f"import bcrypt; print(bcrypt.hashpw({PASSWORD!r}.encode(), bcrypt.gensalt()).decode())"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        users = [{"username": USER, "hash": hashed, "scopes": ["all"], "agent": {"mbox": "mailto:bridge@example.org"}}]
        (home / "auth.json").write_bytes(orjson.dumps(users))
        (home / "launch.py").write_text(_LAUNCHER)
        env = {
            **os.environ,
            "RALPH_AUTH_FILE": str(home / "auth.json"),
            "RALPH_APP_DIR": str(home / "app"),
            "RALPH_RUNSERVER_BACKEND": "fs",
            "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(home / "store"),
        }
        self.log = open(home / "ralph.log", "ab")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [str(python), str(home / "launch.py"), str(self.port)], cwd=home, env=env,
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.home = home
        wait_for(self._up, 60, f"Ralph on port {self.port}")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"Ralph exited {self.proc.returncode}: {(self.home / 'ralph.log').read_text()[-2000:]}")
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/__heartbeat__", timeout=2).status == 200
        except OSError:
            return False

    def post(self, statements: list[dict]) -> dict:
        """One POST of all ``statements`` (partial success: Ralph stores those its models accept)."""
        req = urllib.request.Request(
            self.url + "statements?partialSuccess=true",
            data=orjson.dumps(statements),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Experience-API-Version": "1.0.3",
                "Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
            },
        )
        with urllib.request.urlopen(req, timeout=30) as res:
            return orjson.loads(res.read())

    def stored(self) -> list[dict]:
        """What Ralph's store holds, in its order."""
        path = self.home / "store" / "fs_lrs.jsonl"
        return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def ralph(ralph_python: Path, tmp_path: Path):
    lrs = Ralph(ralph_python, tmp_path / "ralph")
    try:
        yield lrs
    finally:
        lrs.stop()


def corpus_statements() -> list[dict]:
    return [orjson.loads(line)["statement"] for line in (CORPUS / "valid.jsonl").read_bytes().splitlines()]


def bridge_args(ralph: Ralph, *extra: str) -> list[str]:
    return ["bridge", "--lrs", ralph.url, "--school", "school-l", "--username", USER, "--password", PASSWORD,
            "--once", "--no-since", *extra]  # fmt: skip


def totals(stdout: str) -> dict[str, int]:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("fetched"))
    out = {}
    for part in line.split(";")[0].split(","):
        words = part.split()
        out[words[0]] = int(words[-1])
    return out


@pytest.mark.kafka
def test_producers_bridge_ralph_corpus_then_new_batches_exact_counts(tmp_path, kafka, ralph):
    settings = producer_settings(tmp_path, kafka)
    seeded = ralph.post(corpus_statements())  # one POST: the whole real-world corpus
    stored = ralph.stored()
    assert len(stored) == seeded["inserted"] > 100

    res = run_cli(bridge_args(ralph, "--page-size", "20", "--rejects", str(tmp_path / "rejects.jsonl")), settings)
    assert res.returncode == 0, res.stderr
    first = totals(res.stdout)
    rejects = [orjson.loads(x) for x in (tmp_path / "rejects.jsonl").read_bytes().splitlines()]
    assert first["fetched"] == len(stored)
    assert first["sent"] + first["rejected"] == len(stored) and first["rejected"] == len(rejects)
    for r in rejects:  # each names the rule, the place and the statement
        assert r["rule"] and r["message"] and r["path"].startswith("$") and r["original"]["id"]
    stmts = statements_of(read_back(kafka, first["sent"]))
    assert len(stmts) == first["sent"]
    assert {s["id"] for s in stmts} == {s["id"] for s in stored} - {r["original"]["id"] for r in rejects}
    assert {s["authority"]["account"]["name"] for s in stmts} == {"school-l"}

    # New statements arrive in two batches (each shares stored milliseconds); each run takes exactly them.
    sim = [s.statement for _, s in zip(range(90), simulate(SimulationConfig(seed=4)))]
    for batch in (sim[:50], sim[50:]):
        assert ralph.post(batch)["inserted"] == len(batch)
        res = run_cli(bridge_args(ralph, "--page-size", "20"), settings)
        assert res.returncode == 0, res.stderr
        counts = totals(res.stdout)
        assert (counts["sent"], counts["rejected"]) == (len(batch), 0)
        assert counts["skipped"] == counts["fetched"] - len(batch)  # --no-since reads all, delivers the new

    expected = first["sent"] + len(sim)
    stmts = statements_of(read_back(kafka, expected, settle=3))
    assert len(stmts) == expected and len({s["id"] for s in stmts}) == expected


@pytest.mark.kafka
def test_producers_bridge_ralph_interrupted_mid_tie_resumes_exactly(tmp_path, kafka, ralph):
    """Stopped after two pages that end inside one stored millisecond, a new bridge sends the rest, once."""
    settings = producer_settings(tmp_path, kafka)
    sim = [s.statement for _, s in zip(range(120), simulate(SimulationConfig(seed=9)))]
    assert ralph.post(sim)["inserted"] == 120
    stored = ralph.stored()
    ms = [s["stored"][:23] for s in stored]  # to the millisecond
    assert len(set(ms)) < len(ms), "expected statements sharing a stored millisecond"

    options = BridgeOptions(
        school="school-l",
        cursor_path=tmp_path / "cursor.json",
        rejects_path=tmp_path / "rejects.jsonl",
        page_size=7,
        use_since=False,
    )
    stop = threading.Event()

    class StopsAfterTwoPages(StatementsClient):
        def fetch_more(self, more: str) -> dict:
            stop.set()  # the page fetched now (the second) is delivered, then the bridge stops
            return super().fetch_more(more)

    client = StopsAfterTwoPages(endpoint=ralph.url, username=USER, password=PASSWORD, version="1.0.3", timeout=10)
    publisher = make_publisher(settings, "bridge")
    try:
        first = LrsBridge(client, publisher, options, stop)
        c1 = first.run(once=True)
        first.close()
    finally:
        publisher.producer.close()
    assert c1.sent == 14 and c1.pages == 2

    publisher = make_publisher(settings, "bridge")
    try:
        client = StatementsClient(endpoint=ralph.url, username=USER, password=PASSWORD, version="1.0.3", timeout=10)
        second = LrsBridge(client, publisher, options)
        c2 = second.run(once=True)
        second.close()
    finally:
        publisher.producer.close()
    assert c2.sent == 120 - 14 and c2.skipped == 14

    stmts = statements_of(read_back(kafka, 120, settle=3))
    assert len(stmts) == 120
    assert sorted(s["id"] for s in stmts) == sorted(s["id"] for s in sim)


@pytest.mark.kafka
def test_producers_bridge_polls_serves_metrics_and_stops_cleanly(tmp_path, kafka, ralph, spawn):
    """Without --once the bridge keeps polling: statements POSTed later arrive; SIGTERM ends it with exit 0."""
    settings = producer_settings(tmp_path, kafka)
    sim = [s.statement for _, s in zip(range(60), simulate(SimulationConfig(seed=12)))]
    assert ralph.post(sim[:30])["inserted"] == 30
    args = [a for a in bridge_args(ralph, "--poll-interval", "0.5") if a != "--once"]
    proc = spawn(args, settings, "bridge")
    port = settings.metrics_port_base + 4

    def produced() -> float:
        if proc.popen.poll() is not None:
            pytest.fail(f"bridge exited {proc.popen.returncode}:\n{proc.tail()}")
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return 0
        for line in body.splitlines():
            if line.startswith('learnpulse_statements_produced_total{stage="bridge"}'):
                return float(line.split()[-1])
        return 0

    wait_for(lambda: produced() == 30, 60, "the bridge's /metrics to count the first 30 statements")
    assert ralph.post(sim[30:])["inserted"] == 30
    wait_for(lambda: produced() == 60, 60, "the bridge to pick up 30 statements POSTed later")
    assert proc.stop() == 0, proc.tail()
    assert "sent 60," in proc.tail()
    stmts = statements_of(read_back(kafka, 60))
    assert sorted(s["id"] for s in stmts) == sorted(s["id"] for s in sim)


@pytest.mark.kafka
def test_producers_bridge_wrong_credentials_one_line_error(tmp_path, kafka, ralph):
    settings = producer_settings(tmp_path, kafka)
    args = ["bridge", "--lrs", ralph.url, "--school", "s", "--username", USER, "--password", "wrong", "--once"]
    res = run_cli(args, settings, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "401" in res.stderr and "Traceback" not in res.stderr
