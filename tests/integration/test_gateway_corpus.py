"""The real-world corpus through the real stack: HTTP → gateway → Kafka → sinks → ClickHouse → HTTP.

Every statement of ``valid.jsonl`` must be accepted and read back exactly as stored;
every one of ``invalid.jsonl`` and the malformed file must be refused with the rule that
failed, and leave nothing behind. Runs on chDB and on the ClickHouse server.

The corpus reuses ids across unrelated fixtures (nine statements share one id), and a
second statement with a known id but other content is a 409 by design; so statements
are spread over schools, the n-th use of an id going to school n. Schools are tenants:
ids are private to each.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from producers.gateway import multipart
from producers.publisher import school_authority
from schemas.xapi.canonical import canonicalize
from schemas.xapi.timefmt import parse_ms
from tests.unit.gateway.harness import LiveGateway

CORPUS = Path("/work/shared/xapi-corpus")
if not CORPUS.exists():  # a checkout next to the shared folder
    CORPUS = Path(__file__).resolve().parents[3] / "shared" / "xapi-corpus"
SIGNATURE = Path(__file__).resolve().parents[1] / "unit" / "gateway" / "data" / "spec-signature.jws"
# Attachment contents of the corpus lines flagged attachment_without_fileUrl, by sha2: the
# php-xapi fixture text and the JWS of the spec's signed-statement example.
CONTENTS = {
    hashlib.sha256(b"some text content").hexdigest(): b"some text content",
    "672fa5fa658017f1b72d65036f13379c6ab05d4ab3b6664908d8acf0b6a0c634": SIGNATURE.read_bytes(),
}


def _lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (CORPUS / name).read_text().splitlines() if line.strip()]


def _version(line: dict) -> str:
    return "2.0.0" if all(v.startswith("2.") for v in line["xapi_version"]) else "1.0.3"


def _multipart(statement: dict, shas: list[str]) -> tuple[bytes, str]:
    b = "corpus-boundary-7f3a"
    chunks = [f"--{b}\r\nContent-Type: application/json\r\n\r\n".encode(), orjson.dumps(statement)]
    for sha in shas:
        chunks += [
            f"\r\n--{b}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
            f"X-Experience-API-Hash: {sha}\r\n\r\n".encode(),
            CONTENTS[sha],
        ]
    chunks.append(f"\r\n--{b}--\r\n".encode())
    return b"".join(chunks), f'multipart/mixed; boundary="{b}"'


@pytest.mark.kafka
def test_gateway_corpus_accepted_rejected_and_read_back_byte_for_byte(settings):
    valid = _lines("valid.jsonl")
    invalid = _lines("invalid.jsonl")
    uses: dict[str, int] = defaultdict(int)
    placed = []  # (line, school)
    for line in valid:
        sid = line["statement"].get("id", "").lower()
        n = uses[sid] if sid else 0
        if sid:
            uses[sid] += 1
        placed.append((line, f"corpus-{n}"))
    schools = sorted({school for _, school in placed})
    gw = LiveGateway(settings, schools)
    with gw:
        accepted = []  # (line, school, id, version)
        for line, school in placed:
            st, version = line["statement"], _version(line)
            headers = gw.headers(school, version)
            needs = [sha for sha in CONTENTS if any(a.get("sha2") == sha and "fileUrl" not in a
                                                    for a in st.get("attachments", ()))]  # fmt: skip
            if any("attachment_without_fileUrl" in f for f in line.get("flags", ())):
                r = gw.http.post(gw.url, json=st, headers=headers)
                assert r.status_code == 400, (line["id"], r.text)
                assert r.json()["error"]["rule"] == "attachments.needs-multipart"
                assert needs, f"{line['id']}: no known content for its attachment"
                body, ctype = _multipart(st, needs)
                r = gw.http.post(gw.url, data=body, headers={**headers, "Content-Type": ctype})
            else:
                r = gw.http.post(gw.url, json=st, headers=headers)
            assert r.status_code == 200, (line["id"], r.text)
            (sid,) = r.json()
            accepted.append((line, school, sid, version))

        for line in invalid:
            r = gw.post(line["statement"], key=schools[0])
            err = r.json()["error"]
            assert r.status_code == 400 and err["rule"] and err["path"].startswith("$"), (line["reason"], r.text)
        raw = (CORPUS / "malformed-cmi5-initialized.json").read_bytes()
        r = gw.http.post(gw.url, data=raw, headers={**gw.headers(schools[0]), "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["rule"] == "json.parse"

        voided = {
            (school, line["statement"]["object"]["id"].lower())
            for line, school, _, _ in accepted
            if line["statement"]["verb"]["id"] == "http://adlnet.gov/expapi/verbs/voided"
        }
        for line, school, sid, version in accepted:
            r = gw.wait_readable(school, sid, voided=(school, sid.lower()) in voided)
            assert r.status_code == 200, (line["id"], r.text)
            # Exactly the bytes the sink stored ...
            (row,) = gw.ch.query(
                "SELECT any(raw) FROM {db}.statements_raw WHERE school = {s:String} AND statement_id = toUUID({i:String})",
                {"s": school, "i": sid},
            )
            assert r.content == row[0].encode(), line["id"]
            # ... which are the canonical form of what was sent: LRS fields set, nothing else changed.
            got = orjson.loads(r.content)
            expected = canonicalize(
                line["statement"],
                authority=school_authority(school),
                stored_ms=parse_ms(got["stored"]),
                version=version,
            )
            expected["id"] = sid  # the id we answered (assigned by the LRS when the statement had none)
            assert orjson.dumps(expected) == r.content, line["id"]

        # Nothing of the refused requests reached ClickHouse: one row per accepted statement.
        (count,) = gw.ch.query("SELECT count() FROM (SELECT DISTINCT school, statement_id FROM {db}.statements_raw)")
        assert int(count[0]) == len(accepted)
        # Attachment contents came back with attachments=true, as multipart parts with their hash.
        for line, school, sid, _ in accepted:
            if any("attachment_without_fileUrl" in f for f in line.get("flags", ())):
                param = "voidedStatementId" if (school, sid.lower()) in voided else "statementId"
                r = gw.get({param: sid, "attachments": "true"}, key=school)
                assert r.status_code == 200 and r.headers["Content-Type"].startswith("multipart/mixed")
                parts = multipart.parse(r.content, multipart.boundary_of(r.headers["Content-Type"]))
                got = {p.headers["x-experience-api-hash"]: p.body for p in parts[1:]}
                wanted = {a["sha2"] for a in line["statement"]["attachments"] if "fileUrl" not in a}
                assert got == {sha: CONTENTS[sha] for sha in wanted}, line["id"]
