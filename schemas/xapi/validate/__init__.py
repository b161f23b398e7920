"""xAPI statement validation: every statement requirement of xAPI 1.0.3 and of xAPI 2.0.

Pure functions over already-parsed JSON (dicts, lists, str, int, float, bool, None).
The first violated requirement raises :class:`schemas.errors.InvalidStatement` with

- ``rule``: a short stable id of the requirement (``"actor.ifi.exactly-one"``),
- ``message``: a sentence citing the spec section it comes from,
- ``path``: a JSON path to the offending value (``$.context.contextActivities.parent[0].id``).

Version selection follows the ``X-Experience-API-Version`` header: ``1.0``/``1.0.x``
means xAPI 1.0.3 rules, ``2.0``/``2.0.x`` means IEEE 9274.1.1 (xAPI 2.0) rules, which add
``context.contextAgents``/``contextGroups``, require an RFC 3339 timestamp with a
time-zone offset and accept a statement ``version`` of ``2.0.x`` besides ``1.0.x``.

Rule ids (stable; ``{…}`` is a property name):

- request: ``json.parse``, ``version.header``, ``statements.type``, ``statements.empty``,
  ``statements.id.duplicate``
- any level: ``property.unknown``, ``property.case``, ``value.null``, ``objectType.value``,
  ``language-map.{type,key.rfc5646,value.type}``, ``extensions.{type,key.iri}``
- statement: ``statement.type``, ``statement.{actor,verb,object}.required``,
  ``statement.id.uuid``, ``{timestamp,stored}.{format,timezone.required,offset.negative-zero}``,
  ``authority.group.two-agents``, ``authority.group.anonymous``, ``version.format``
- agents/groups: ``actor.type``, ``actor.ifi.exactly-one``, ``actor.name.type``,
  ``actor.mbox.mailto``, ``actor.mbox_sha1sum.hex``, ``actor.openid.uri``,
  ``actor.account.{type,homePage.required,homePage.irl,name.required,name.type,name.empty}``,
  ``group.member.{required,empty,type,agent}``
- verb: ``verb.{type,id.required,id.iri}``, ``verb.voided.statementref``
- object: ``object.type``, ``activity.{type,id.required,id.iri}``,
  ``activity.definition.{type,type.iri,moreInfo.irl,components.type,components.not-allowed}``,
  ``activity.definition.{interactionType.value,interactionType.required,correctResponsesPattern.type}``,
  ``activity.definition.component.id.{required,type,empty,unique}``,
  ``statementref.{objectType,id.required,id.uuid}``,
  ``substatement.{property.forbidden,nested}``
- result: ``result.type``, ``result.score.type``, ``result.score.{scaled,raw,min,max}.type``,
  ``result.score.{scaled.range,raw.range,min-max,min-max.equal}``, ``result.{success,completion,response}.type``,
  ``result.duration.format``
- context: ``context.type``, ``context.registration.uuid``, ``context.team.group``,
  ``context.contextActivities.type``, ``context.{revision,platform}.{type,activity-only}``,
  ``context.language.rfc5646``, ``context.statement.type``; xAPI 2.0:
  ``context.{contextAgents,contextGroups}.type``, ``context.contextAgent.{objectType,agent.required}``,
  ``context.contextGroup.{objectType,group.required}``, ``context.relevantTypes.{type,empty,iri}``
- attachments: ``attachments.type``, ``attachment.{usageType,display,contentType,length,sha2}.required``,
  ``attachment.usageType.iri``, ``attachment.contentType.media-type``,
  ``attachment.length.{type,negative}``, ``attachment.sha2.hex``, ``attachment.fileUrl.irl``,
  ``attachment.signature.contentType``

How it stays fast (a typical statement costs a few microseconds, see ``benchmarks/``):
hand-written checks over dicts, frozensets of allowed keys, precompiled patterns, and
no path strings on the happy path. An error is raised as ``_Here`` holding the keys
below the object that found it; each caller appends its own key on the way up (``try``
costs nothing in Python 3.11 unless something is raised) and the public functions
turn it into ``InvalidStatement`` with the full path.

Modules, one per xAPI object (none imports a module listed after it):
:mod:`.violations` (errors, paths, the collecting walk), :mod:`.values` (language maps,
extensions, timestamps), :mod:`.agents`, :mod:`.verb`, :mod:`.activity`,
:mod:`.statementref`, :mod:`.result`, :mod:`.context`, :mod:`.attachments`,
:mod:`.statement` (Statement, SubStatement, voiding, version) and :mod:`.api` (what
callers use, re-exported here).
"""

from __future__ import annotations

from .api import (
    attachments_needing_parts,
    parse_statements_json,
    statement_violations,
    validate_statement,
    validate_statement_tolerant,
    validate_statements,
    validate_statements_tolerant,
)
from .attachments import SIGNATURE_USAGE
from .statement import VOIDED
from .violations import CONTINUABLE_RULES, MAX_VIOLATIONS

__all__ = [
    "CONTINUABLE_RULES",
    "MAX_VIOLATIONS",
    "SIGNATURE_USAGE",
    "VOIDED",
    "attachments_needing_parts",
    "parse_statements_json",
    "statement_violations",
    "validate_statement",
    "validate_statement_tolerant",
    "validate_statements",
    "validate_statements_tolerant",
]
