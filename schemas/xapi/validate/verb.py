"""The Verb (xAPI 1.0.3 Data §2.4.3)."""

from __future__ import annotations

from ..formats import is_iri
from .values import IRI_OK, check_language_map
from .violations import DATA, Violation, bad_type, iri_error, missing, unknown_properties, unreachable

_VERB_KEYS = frozenset({"id", "display"})


def check_verb(verb: object) -> str:
    if verb.__class__ is not dict:
        bad_type("verb.type", DATA + "2.4.3", "verb", "an object", verb)
    if not _VERB_KEYS.issuperset(verb):
        unknown_properties(verb, _VERB_KEYS, "a Verb")
    vid = verb.get("id")
    if vid.__class__ is not str or (vid not in IRI_OK and not is_iri(vid)):
        if "id" not in verb:
            missing("verb.id.required", DATA + "2.4.3", "verb.id", ".id")
        iri_error(vid, "verb.id.iri", DATA + "2.4.3", "verb.id", ".id")
        unreachable("verb.id.iri")
    if "display" in verb:
        try:
            check_language_map(verb["display"], "verb.display")
        except Violation as e:
            e.keys.append(".display")
            raise
    return vid
