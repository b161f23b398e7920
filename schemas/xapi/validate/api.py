"""What callers use: one statement, a POST body, every violation, tolerant policies."""

from __future__ import annotations

from typing import Any, NoReturn

import orjson

from ...errors import InvalidStatement
from .statement import check_statement
from .violations import (
    COMM,
    CONTINUABLE_RULES,
    MAX_VIOLATIONS,
    HardViolation,
    Violation,
    bad_type,
    collecting,
    show,
)


def _is_v2(version: object) -> bool:
    if version.__class__ is str:
        if version == "1.0.3" or version == "1.0" or version.startswith("1.0."):
            return False
        if version == "2.0.0" or version == "2.0" or version.startswith("2.0."):
            return True
    raise InvalidStatement(
        "version.header",
        f"{COMM}3.3: the X-Experience-API-Version header must be 1.0.x or 2.0.0, found {show(version)}; "
        "the LRS MUST reject other versions with 400 Bad Request",
        "$",
    )


def _raise_at(err: Violation, base: str) -> NoReturn:
    raise InvalidStatement(err.rule, err.message, base + "".join(reversed(err.keys))) from None


def _collect(doc: object, v2: bool, base: str, only: frozenset[str]) -> tuple[list[InvalidStatement], bool]:
    """Every violation of ``doc``, walking past those whose rule is in ``only``.

    One walk per violation found: walk k passes over the k violations already recorded
    and raises the next, which reaches the top with its full path like any violation.
    The list ends with the first violation that cannot be walked past (outside ``only``,
    or a wrong JSON type), or at ``MAX_VIOLATIONS``; the flag says whether the walk got to
    the end past every violation (so that all of them are in ``only``). Only statements
    that failed the strict walk come here, so valid traffic never pays.
    """
    c = collecting
    found: list[InvalidStatement] = []
    only = only & CONTINUABLE_RULES
    while len(found) < MAX_VIOLATIONS:
        c.skip, c.seen, c.continuable = len(found), 0, only
        try:
            check_statement(doc, v2)
            return found, True
        except Violation as err:
            found.append(InvalidStatement(err.rule, err.message, base + "".join(reversed(err.keys))))
            if err.rule not in only or isinstance(err, HardViolation):
                return found, False
        finally:
            c.skip = -1
    return found, False


def _check(doc: object, v2: bool, base: str, tolerate: frozenset[str]) -> tuple[str, ...]:
    """Validate one statement; raise its first violation that ``tolerate`` does not cover.

    Returns the tolerated rule ids it violates (sorted, each once), ``()`` if valid.
    """
    try:
        check_statement(doc, v2)
        return ()
    except Violation as err:
        if err.rule not in tolerate or isinstance(err, HardViolation):
            _raise_at(err, base)
    found, complete = _collect(doc, v2, base, tolerate)
    if len(found) >= MAX_VIOLATIONS:
        raise InvalidStatement(
            "statement.violations.too-many",
            f"the statement breaks at least {MAX_VIOLATIONS} requirements; the first: {found[0].message}",
            found[0].path,
        )
    if not complete:
        raise found[-1]
    return tuple(sorted({v.rule for v in found}))


def statement_violations(doc: object, *, version: str = "1.0.3", path: str = "$") -> list[InvalidStatement]:
    """Every requirement ``doc`` violates, in document order; ``[]`` if it is valid.

    Checking goes on past violations of ``CONTINUABLE_RULES``; the first other violation
    ends the list (what lies below a wrong type or a missing identity cannot be judged).
    A valid statement costs what :func:`validate_statement` costs.
    """
    v2 = _is_v2(version)
    try:
        check_statement(doc, v2)
        return []
    except Violation:
        pass
    return _collect(doc, v2, path, CONTINUABLE_RULES)[0]


def validate_statement(doc: object, *, version: str = "1.0.3", path: str = "$") -> None:
    """Raise ``InvalidStatement`` for the first requirement ``doc`` violates, else return.

    ``doc`` is one statement as parsed JSON. ``version`` is the request's
    X-Experience-API-Version header: ``1.0``/``1.0.x`` selects xAPI 1.0.3 rules,
    ``2.0``/``2.0.x`` IEEE 9274.1.1 (xAPI 2.0) rules; anything else raises
    ``InvalidStatement("version.header", …, "$")``. ``path`` prefixes every reported
    path. LRS-assigned ``stored`` and ``authority`` are accepted when well-formed (the
    LRS overwrites them). Attachments without ``fileUrl`` are accepted here; see
    :func:`attachments_needing_parts` for the transport rule. ``doc`` is not modified.
    """
    v2 = _is_v2(version)
    try:
        check_statement(doc, v2)
    except Violation as err:
        _raise_at(err, path)


def validate_statement_tolerant(
    doc: object, *, version: str = "1.0.3", path: str = "$", tolerate: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """:func:`validate_statement` under a tolerant ingestion policy.

    A statement whose only violations are of rules in ``tolerate`` (see
    ``CONTINUABLE_RULES``) passes: the rule ids it violates are returned, sorted, each
    once (``()`` for a valid statement). Any other violation raises.
    """
    return _check(doc, _is_v2(version), path, tolerate)


def _note_id(seen: dict[str, int], doc: dict[str, Any], i: int) -> None:
    """Remember the id of the valid statement ``doc`` at ``$[i]``; raise if the batch had it already."""
    sid = doc.get("id")
    if sid is not None:
        key = sid.lower()
        if key in seen:
            raise InvalidStatement(
                "statements.id.duplicate",
                f"{COMM}2.1.2: a batch containing two or more Statements with the same id SHOULD* be rejected "
                f"with 400 Bad Request; {sid} repeats the id of $[{seen[key]}]",
                f"$[{i}].id",
            )
        seen[key] = i


def validate_statements(payload: object, *, version: str = "1.0.3") -> list[dict[str, Any]]:
    """Validate a POST /statements body; return its statements as a list.

    ``payload`` is one statement object (returned as a one-element list, path ``$…``)
    or a non-empty array of them (paths ``$[3]…``). All-or-nothing (xAPI 1.0.3
    Communication §3.2.s3.b9): the first invalid statement raises. Two statements with
    the same ``id`` (compared case-insensitively) raise ``statements.id.duplicate``
    (Communication §2.1.2.s2.b6). The statements themselves are returned unmodified.
    """
    v2 = _is_v2(version)
    if payload.__class__ is dict:
        try:
            check_statement(payload, v2)
        except Violation as err:
            _raise_at(err, "$")
        return [payload]
    if payload.__class__ is not list:
        try:
            bad_type(
                "statements.type",
                COMM + "2.1.2",
                "the request body",
                "a Statement object or an array of Statements",
                payload,
            )
        except Violation as err:
            _raise_at(err, "$")
    if not payload:
        raise InvalidStatement(
            "statements.empty",
            f"{COMM}2.1.2: the request body is an empty array; POST needs at least one Statement",
            "$",
        )
    seen: dict[str, int] = {}
    for i, doc in enumerate(payload):
        try:
            check_statement(doc, v2)
        except Violation as err:
            _raise_at(err, f"$[{i}]")
        _note_id(seen, doc, i)
    return payload


def validate_statements_tolerant(
    payload: object, *, version: str = "1.0.3", tolerate: frozenset[str] = frozenset()
) -> tuple[list[dict[str, Any]], list[tuple[str, ...]]]:
    """:func:`validate_statements` under a tolerant ingestion policy.

    Returns the statements and, for each, the ``tolerate`` rule ids it violates (``()``
    when valid). A statement violating any other rule raises as :func:`validate_statements`
    does. Without ``tolerate`` this is :func:`validate_statements` plus empty tuples.
    """
    if not tolerate:
        statements = validate_statements(payload, version=version)
        return statements, [()] * len(statements)
    v2 = _is_v2(version)
    if payload.__class__ is dict:
        return [payload], [_check(payload, v2, "$", tolerate)]
    if payload.__class__ is not list or not payload:
        return validate_statements(payload, version=version), []  # raises statements.type / .empty
    seen: dict[str, int] = {}
    tolerated: list[tuple[str, ...]] = []
    for i, doc in enumerate(payload):
        tolerated.append(_check(doc, v2, f"$[{i}]", tolerate))
        _note_id(seen, doc, i)
    return payload, tolerated


def parse_statements_json(raw: bytes | str, version: str = "1.0.3") -> list[dict[str, Any]]:
    """Parse a JSON request body and validate it as :func:`validate_statements` does.

    Unparseable JSON (syntax errors, invalid UTF-8, NaN/Infinity, an empty body)
    raises ``InvalidStatement("json.parse", …, "$")`` chained to the parser's error.
    Duplicate keys are not detected: the last one wins (xAPI 1.0.3 Data §2.2.s3.b7
    leaves that behaviour undefined).
    """
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidStatement(
            "json.parse",
            f"{COMM}3.2: the request body is not valid JSON ({err}); malformed JSON is a 400 Bad Request",
            "$",
        ) from err
    return validate_statements(payload, version=version)


def attachments_needing_parts(statement: dict[str, Any]) -> list[str]:
    """The ``sha2`` of every Attachment without ``fileUrl``, in order, without repeats.

    xAPI 1.0.3 Communication §1.5.2: such attachments must arrive as parts of a
    multipart/mixed request; a plain application/json request carrying any of them is
    to be rejected (400). Attachments of a SubStatement object count too. The statement
    must already be valid.
    """
    out: list[str] = []
    sources = [statement.get("attachments")]
    obj = statement.get("object")
    if obj.__class__ is dict and obj.get("objectType") == "SubStatement":
        sources.append(obj.get("attachments"))
    for atts in sources:
        for att in atts or ():
            if "fileUrl" not in att and att["sha2"] not in out:
                out.append(att["sha2"])
    return out
