"""The validator against real-world statements nobody here wrote (/work/shared/xapi-corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from schemas.errors import InvalidStatement
from schemas.xapi.validate import attachments_needing_parts, parse_statements_json, validate_statement

CORPUS = Path(__file__).parents[3] / ".." / "shared" / "xapi-corpus"
pytestmark = pytest.mark.skipif(
    not (CORPUS / "valid.jsonl").is_file(), reason=f"xAPI corpus not found at {CORPUS.resolve()}"
)


def _lines(name: str) -> list[dict]:
    path = CORPUS / name
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


VALID = _lines("valid.jsonl")
INVALID = _lines("invalid.jsonl")
NEEDS_PARTS = [row for row in VALID if any(f.startswith("attachment_without_fileUrl") for f in row.get("flags", []))]


def _header(corpus_version: str) -> str:
    # The corpus tags statements "1.0.3", "1.0.x" or "2.0.0"; "1.0.x" means any 1.0 patch.
    return "1.0.3" if corpus_version == "1.0.x" else corpus_version


def _cases(rows: list[dict]) -> list:
    return [
        pytest.param(row, _header(v), id=f"{row.get('id', i)}-{v}")
        for i, row in enumerate(rows)
        for v in row["xapi_version"]
    ]


def test_xapi_corpus_is_not_empty() -> None:
    assert len(VALID) >= 100 and INVALID


@pytest.mark.parametrize(("row", "version"), _cases(VALID))
def test_xapi_corpus_valid_statement_accepted(row: dict, version: str) -> None:
    assert validate_statement(row["statement"], version=version) is None


@pytest.mark.parametrize(("row", "version"), _cases(VALID))
def test_xapi_corpus_valid_statement_accepted_from_raw_json(row: dict, version: str) -> None:
    raw = orjson.dumps(row["statement"])
    assert parse_statements_json(raw, version) == [row["statement"]]


@pytest.mark.parametrize(("row", "version"), _cases(INVALID))
def test_xapi_corpus_invalid_statement_rejected(row: dict, version: str) -> None:
    with pytest.raises(InvalidStatement) as err:
        validate_statement(row["statement"], version=version)
    assert err.value.rule and err.value.path.startswith("$")


@pytest.mark.parametrize("row", NEEDS_PARTS, ids=[r["id"] for r in NEEDS_PARTS])
def test_xapi_1_0_3_communication_1_5_2_attachment_without_file_url_needs_a_part(row: dict) -> None:
    statement = row["statement"]
    assert validate_statement(statement) is None
    expected = [a["sha2"] for a in statement["attachments"] if "fileUrl" not in a]
    assert attachments_needing_parts(statement) == list(dict.fromkeys(expected))
    assert expected


def test_xapi_corpus_statements_without_attachments_need_no_parts() -> None:
    plain = [row["statement"] for row in VALID if row not in NEEDS_PARTS]
    assert plain and all(attachments_needing_parts(s) == [] for s in plain if "attachments" not in s)


def test_xapi_1_0_3_communication_3_2_malformed_json_fails_to_parse() -> None:
    raw = (CORPUS / "malformed-cmi5-initialized.json").read_bytes()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)


def test_xapi_1_0_3_communication_3_2_malformed_json_rejected_with_parse_rule() -> None:
    raw = (CORPUS / "malformed-cmi5-initialized.json").read_bytes()
    with pytest.raises(InvalidStatement) as err:
        parse_statements_json(raw, "1.0.3")
    assert err.value.rule == "json.parse"
    assert err.value.path == "$"
    assert "not valid JSON" in err.value.message
    assert isinstance(err.value.__cause__, orjson.JSONDecodeError)
