"""Errors that cross stage boundaries."""

from __future__ import annotations


class InvalidStatement(Exception):
    """Input that can never be processed, whatever is retried.

    Raised at the edge (→ HTTP 400 naming ``rule`` and ``path``) or inside the pipeline
    (→ the record goes to ``xapi.deadletter`` with this reason and its original bytes).
    ``rule`` is a short stable identifier (e.g. ``"envelope.version"``), ``path`` a JSON
    path into the offending document (``"$.statements[3].actor"``).
    """

    def __init__(self, rule: str, message: str, path: str = "$") -> None:
        super().__init__(f"{rule}: {message} (at {path})")
        self.rule = rule
        self.message = message
        self.path = path

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "message": self.message, "path": self.path}
