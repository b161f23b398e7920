"""Statement References (xAPI 1.0.3 Data §2.4.4.3), as an object and as context.statement."""

from __future__ import annotations

from typing import Any

from ..formats import is_uuid
from .violations import DATA, format_error, missing, show, unknown_properties

_STATEMENTREF_KEYS = frozenset({"objectType", "id"})


def check_statement_ref(ref: dict[str, Any]) -> None:
    """A Statement Reference whose objectType "StatementRef" was already checked."""
    if not _STATEMENTREF_KEYS.issuperset(ref):
        unknown_properties(ref, _STATEMENTREF_KEYS, "a Statement Reference")
    rid = ref.get("id")
    if not is_uuid(rid):
        if "id" not in ref:
            missing("statementref.id.required", DATA + "2.4.4.3", "StatementRef id", ".id")
        format_error(
            "statementref.id.uuid",
            DATA + "2.4.4.3",
            "StatementRef id",
            "a UUID string",
            rid,
            f'a Statement Reference MUST set "id" to the UUID of a Statement, found {show(rid)}',
            ".id",
        )
