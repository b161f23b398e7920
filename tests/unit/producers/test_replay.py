"""Replay: input formats, rejects with reasons, resume positions (pure logic, a recording publisher)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest

from producers.kafka import DeliveryFailed
from producers.replay import Replayer, ReplayError, ReplayOptions, iter_items, xapi_version_of

CORPUS = Path("/work/shared/xapi-corpus")


def _stmt(i: int, with_id: bool = True) -> dict:
    s = {
        "actor": {"objectType": "Agent", "mbox": f"mailto:learner{i % 7}@example.org"},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/experienced", "display": {"en-US": "experienced"}},
        "object": {"objectType": "Activity", "id": f"https://example.org/activities/{i}"},
        "timestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
    }
    if with_id:
        s["id"] = f"00000000-0000-4000-8000-{i:012d}"
    return s


class RecordingPublisher:
    """Stands in for StatementPublisher: keeps what was published; ``fail_flush`` simulates Kafka refusing."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, dict]] = []
        self.acked: list[tuple[str, dict]] = []
        self.fail_flush = False

    def publish(self, school: str, statement: dict) -> dict:
        self.pending.append((school, statement))
        return statement

    def flush(self) -> None:
        if self.fail_flush:
            self.pending.clear()
            raise DeliveryFailed("broker gone")
        self.acked.extend(self.pending)
        self.pending.clear()


def _options(tmp_path: Path, **kw) -> ReplayOptions:
    return ReplayOptions(
        school="school-x", rejects_path=tmp_path / "rejects.jsonl", state_path=tmp_path / "state.json", **kw
    )


def _replay(tmp_path: Path, files: list[Path], publisher=None, **kw):
    publisher = publisher or RecordingPublisher()
    r = Replayer(publisher, _options(tmp_path, **kw))
    try:
        counts = r.run(files)
    finally:
        r.close()
    return publisher, counts


def _rejects(tmp_path: Path) -> list[dict]:
    path = tmp_path / "rejects.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def test_producers_replay_reads_lines_arrays_documents_and_gzip(tmp_path):
    stmts = [_stmt(i) for i in range(5)]
    (tmp_path / "a.jsonl").write_bytes(b"\n".join(orjson.dumps(s) for s in stmts) + b"\n\n")
    (tmp_path / "b.json").write_text(json.dumps(stmts, indent=2))
    with gzip.open(tmp_path / "c.jsonl.gz", "wb") as f:
        f.write(b"\n".join(orjson.dumps(s) for s in stmts))
    with gzip.open(tmp_path / "d.gz", "wb") as f:  # no telling name: sniffed as an array
        f.write(orjson.dumps(stmts))
    (tmp_path / "e.json").write_text(json.dumps({"statements": stmts, "more": ""}))
    (tmp_path / "f.json").write_text(json.dumps(stmts[0], indent=2))
    for name in ("a.jsonl", "b.json", "c.jsonl.gz", "d.gz", "e.json"):
        items = list(iter_items(tmp_path / name))
        assert [i.doc for i in items] == stmts, name
        assert [i.ordinal for i in items] == list(range(5))
    assert [i.doc for i in iter_items(tmp_path / "f.json")] == [stmts[0]]
    assert [i.line for i in iter_items(tmp_path / "a.jsonl")] == [1, 2, 3, 4, 5]


def test_producers_replay_large_array_read_in_chunks(tmp_path, monkeypatch):
    from producers import replay

    monkeypatch.setattr(replay, "_CHUNK", 97)  # values straddle every chunk boundary
    stmts = [_stmt(i) for i in range(300)]
    stmts[5]["object"]["definition"] = {"name": {"ja-JP": "日本語の名前"}}  # multi-byte UTF-8 split across reads
    (tmp_path / "big.json").write_bytes(orjson.dumps(stmts))
    assert [i.doc for i in iter_items(tmp_path / "big.json")] == stmts


def test_producers_replay_bad_json_is_rejected_alone(tmp_path):
    lines = [orjson.dumps(_stmt(0)), b'{"actor": oops', orjson.dumps(_stmt(2))]
    (tmp_path / "x.jsonl").write_bytes(b"\n".join(lines))
    _pub, counts = _replay(tmp_path, [tmp_path / "x.jsonl"])
    c = counts[str(tmp_path / "x.jsonl")]
    assert (c.read, c.sent, c.rejected, c.skipped) == (3, 2, 1, 0)
    (rej,) = _rejects(tmp_path)
    assert rej["rule"] == "json.parse" and rej["line"] == 2 and rej["original"] == '{"actor": oops'
    assert "line 2" in rej["message"]


def test_producers_replay_truncated_array_rejects_the_rest(tmp_path):
    raw = orjson.dumps([_stmt(0), _stmt(1)])[:-40]
    (tmp_path / "t.json").write_bytes(raw)
    pub, _counts = _replay(tmp_path, [tmp_path / "t.json"])
    assert len(pub.acked) == 1
    (rej,) = _rejects(tmp_path)
    assert rej["rule"] == "json.parse" and rej["item"] == 1


def test_producers_replay_corpus_valid_sent_invalid_and_malformed_rejected(tmp_path):
    valid = [orjson.loads(line) for line in (CORPUS / "valid.jsonl").read_bytes().splitlines()]
    needs_parts = sum(any(f.startswith("attachment_without_fileUrl") for f in v.get("flags") or []) for v in valid)
    assert needs_parts > 0
    pub, counts = _replay(tmp_path, [CORPUS / "valid.jsonl"], unwrap="statement")
    c = counts[str(CORPUS / "valid.jsonl")]
    assert c.read == len(valid)
    rejects = _rejects(tmp_path)
    # Every corpus statement is valid; only those whose attachment content a file cannot carry are refused.
    assert [r["rule"] for r in rejects] == ["attachments.part-missing"] * needs_parts
    assert c.sent == len(valid) - needs_parts == len(pub.acked)
    assert all(school == "school-x" for school, _ in pub.acked)

    _replay(tmp_path, [CORPUS / "invalid.jsonl", CORPUS / "malformed-cmi5-initialized.json"], unwrap="statement")
    rejects = _rejects(tmp_path)[len(rejects) :]
    assert len(rejects) == 3
    malformed = rejects[-1]
    assert malformed["rule"] == "json.parse" and malformed["source"].endswith("malformed-cmi5-initialized.json")
    assert all(r["message"] and r["path"].startswith("$") for r in rejects)


def test_producers_replay_resumes_after_interruption_without_resending(tmp_path):
    stmts = [_stmt(i, with_id=i % 2 == 0) for i in range(50)]
    stmts[10] = {"verb": "not a statement"}
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(s) for s in stmts))
    first = RecordingPublisher()
    _pub, counts = _replay(tmp_path, [path], publisher=first, commit_every=20)
    assert counts[str(path)].sent == 49
    ids_first = [s["id"] for _, s in first.acked]

    # Same command again: everything skipped, nothing re-sent, no new rejects.
    again, counts = _replay(tmp_path, [path], commit_every=20)
    assert again.acked == [] and counts[str(path)].skipped == 50 and counts[str(path)].read == 0
    assert len(_rejects(tmp_path)) == 1

    # --restart replays all, with the same derived ids for statements that had none.
    restarted, _ = _replay(tmp_path, [path], restart=True, commit_every=20)
    assert [s["id"] for _, s in restarted.acked] == ids_first


def test_producers_replay_delivery_failure_keeps_position_and_rejects_consistent(tmp_path):
    stmts = [_stmt(i) for i in range(60)]
    stmts[3] = {"bad": True}
    stmts[45] = {"bad": True}
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(s) for s in stmts))

    class FailsSecondCommit(RecordingPublisher):
        commits = 0

        def flush(self) -> None:
            self.commits += 1
            self.fail_flush = self.commits >= 2
            super().flush()

    failing = FailsSecondCommit()
    with pytest.raises(DeliveryFailed):
        _replay(tmp_path, [path], publisher=failing, commit_every=25)
    assert len(failing.acked) == 24  # the first 25 items, one of them rejected
    # The crash left the reject of item 45 written but not committed... (simulate: append junk)
    with open(tmp_path / "rejects.jsonl", "ab") as f:
        f.write(b'{"uncommitted": true}\n')
    resumed, counts = _replay(tmp_path, [path], commit_every=25)
    c = counts[str(path)]
    assert c.skipped == 25 and c.read == 35 and c.rejected == 1
    sent_ids = [s["id"] for _, s in failing.acked + resumed.acked]
    assert sorted(sent_ids) == sorted(s["id"] for s in stmts if "id" in s)
    assert [r["item"] for r in _rejects(tmp_path)] == [3, 45]


def test_producers_replay_refuses_a_changed_file(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(_stmt(i)) for i in range(5)))
    _replay(tmp_path, [path])
    path.write_bytes(b"\n".join(orjson.dumps(_stmt(i + 100)) for i in range(5)))
    with pytest.raises(ReplayError, match="--restart"):
        _replay(tmp_path, [path])
    # Appending to a JSON Lines file is not a change: the new lines are replayed.
    path = tmp_path / "grow.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(_stmt(i)) for i in range(5)) + b"\n")
    _replay(tmp_path, [path])
    with open(path, "ab") as f:
        f.write(orjson.dumps(_stmt(5)) + b"\n")
    pub, counts = _replay(tmp_path, [path])
    assert counts[str(path)].skipped == 5 and [s["id"] for _, s in pub.acked] == [_stmt(5)["id"]]


def test_producers_replay_version_auto():
    assert xapi_version_of({"version": "2.0.0"}, "auto") == "2.0.0"
    assert xapi_version_of({"version": "1.0.3"}, "auto") == "1.0.3"
    assert xapi_version_of({}, "auto") == "1.0.3"
    assert xapi_version_of({"version": "2.0.0"}, "1.0.3") == "1.0.3"
