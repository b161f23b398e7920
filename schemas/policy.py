"""Ingestion policies: what a credential's producer may send that breaks the specification.

``strict`` (the default) refuses every violation. ``tolerant`` accepts a statement whose
ONLY violations are of rules the credential tolerates; the statement is stored
unchanged and the violated rule ids travel beside it (envelope, ClickHouse column,
metric), so that nobody mistakes it for a conformant one.

Only rules the validator can walk past (``schemas.xapi.validate.CONTINUABLE_RULES``)
can be tolerated. Rules that make a statement unusable downstream — no actor, verb or
object identity, unparseable JSON, a bad statement id or timestamp — never can.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .xapi.validate import CONTINUABLE_RULES

STRICT = "strict"
TOLERANT = "tolerant"
MODES = (STRICT, TOLERANT)

# What Open edX's event-routing-backends sends that xAPI 1.0.3 refuses (checked on its
# statements): "objectType": "GroupActivity" on a multi-question problem (the object,
# or contextActivities.parent of each question), activity ids without a scheme (a bare
# GUID) in contextActivities.grouping, an object without an id (enrollment events whose
# course is unknown), and score min = max = 0 for zero-weight problems and subsections.
OPENEDX_RULES = frozenset({"objectType.value", "activity.id.iri", "activity.id.required", "result.score.min-max.equal"})
PRESETS: dict[str, frozenset[str]] = {"openedx": OPENEDX_RULES}

# Why some rules can never be tolerated (prefix of the rule id → reason).
_NEVER = {
    "json.": "the body is not JSON: there is no statement to keep",
    "statements.": "the request itself is malformed",
    "statement.id": "the statement id identifies it everywhere (idempotence, voiding, reads)",
    "statement.actor": "a statement without an actor has no learner",
    "statement.verb": "a statement without a verb says nothing",
    "statement.object": "a statement without an object has nothing it is about",
    "statement.type": "the statement is not a JSON object",
    "actor.": "the actor's identity is the learner's pseudonym",
    "group.": "the actor's identity is the learner's pseudonym",
    "verb.": "the verb id is what every figure is counted by",
    "timestamp.": "event time drives every window, session and alert",
    "stored.": "stored orders the LRS reads",
    "version.header": "the request's xAPI version decides every rule",
    "value.null": "null values cannot be read downstream",
}


class PolicyError(ValueError):
    """A policy that cannot be configured; the message says why, for the operator."""


def _why_never(rule: str) -> str | None:
    for prefix, reason in _NEVER.items():
        if rule == prefix or rule.startswith(prefix):
            return reason
    return None


def check_tolerable(rules: Iterable[str]) -> frozenset[str]:
    """The rules as a frozenset; raises :class:`PolicyError` naming every one that cannot be tolerated."""
    out = frozenset(rules)
    problems = []
    for rule in sorted(out):
        why = _why_never(rule)
        if why is not None:
            problems.append(f"{rule!r} cannot be tolerated: {why}")
        elif rule not in CONTINUABLE_RULES:
            problems.append(f"{rule!r} is not a rule that can be tolerated")
    if problems:
        raise PolicyError(
            "; ".join(problems) + ". Rules that can be tolerated: " + ", ".join(sorted(CONTINUABLE_RULES))
        )
    return out


@dataclass(frozen=True)
class IngestPolicy:
    """A credential's policy: ``mode`` and the rules it tolerates (only used when tolerant)."""

    mode: str = STRICT
    tolerate: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PolicyError(f"policy must be one of {', '.join(MODES)}, not {self.mode!r}")
        check_tolerable(self.tolerate)
        if self.mode == TOLERANT and not self.tolerate:
            raise PolicyError("a tolerant policy needs the rules it tolerates (--tolerate RULE or --preset NAME)")

    @property
    def tolerated(self) -> frozenset[str]:
        """The rules a statement may break and still be accepted (none when strict)."""
        return self.tolerate if self.mode == TOLERANT else frozenset()

    def describe(self) -> str:
        return STRICT if self.mode == STRICT else f"{TOLERANT} ({', '.join(sorted(self.tolerate))})"


STRICT_POLICY = IngestPolicy()


def preset_rules(name: str) -> frozenset[str]:
    try:
        return PRESETS[name]
    except KeyError:
        raise PolicyError(f"unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}") from None


def policy_of(mode: str, tolerate: Iterable[str] = (), presets: Iterable[str] = ()) -> IngestPolicy:
    """A policy from command-line style parts: a preset implies ``tolerant`` rules."""
    rules = set(tolerate)
    for name in presets:
        rules |= preset_rules(name)
    return IngestPolicy(mode, frozenset(rules))
