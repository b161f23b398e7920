"""Value types several xAPI objects share: language maps, extensions, timestamps (Data §4)."""

from __future__ import annotations

from .. import timefmt
from ..formats import _UUID, _good_iris, _good_tags, is_iri, is_language_tag
from .violations import DATA, XAPI2, Violation, bad_type, fail, key_step, show

IRI_OK = _good_iris
TAG_OK = _good_tags
# Bound matchers for the hot path (saves a Python call per check).
uuid_match = _UUID.match
simple_ts_match = timefmt._RFC3339_SIMPLE.match


def check_language_map(value: object, what: str) -> None:
    """xAPI 1.0.3 Data §4.2: keys RFC 5646 tags, values strings."""
    if value.__class__ is not dict:
        bad_type("language-map.type", DATA + "4.2", what, "a language map (an object)", value)
    for tag, text in value.items():
        if tag not in TAG_OK and not is_language_tag(tag):
            fail(
                "language-map.key.rfc5646",
                DATA + "4.2",
                f"language map keys MUST be RFC 5646 language tags; {what} has key {show(tag)}",
                key_step(tag),
            )
        if text.__class__ is not str:
            bad_type("language-map.value.type", DATA + "4.2", f"{what}[{tag!r}]", "a string", text, key_step(tag))


def check_extensions(value: object) -> None:
    """xAPI 1.0.3 Data §4.1: keys MUST be IRIs; values are any JSON (null included)."""
    if value.__class__ is not dict:
        bad_type("extensions.type", DATA + "4.1", "extensions", "an object", value)
    for key in value:
        if key not in IRI_OK and not is_iri(key):
            fail(
                "extensions.key.iri",
                DATA + "4.1",
                f"the keys of an extensions map MUST be IRIs, found {show(key)}",
                key_step(key),
            )


def check_time_property(value: object, v2: bool, name: str) -> None:
    """The ``timestamp`` or ``stored`` property ``name`` that failed the caller's fast look
    (the usual RFC 3339 form), checked in full; a violation's path gets the property."""
    try:
        check_timestamp(value, v2, name)
    except Violation as e:
        e.keys.append(f".{name}")
        raise


def check_timestamp(value: object, v2: bool, name: str) -> None:
    """Full check of a ``timestamp``/``stored`` value; callers try the fast path first."""
    problem = timefmt.timestamp_problem(value, require_offset=v2)
    if problem is None:
        return
    if value.__class__ is not str:
        bad_type(f"{name}.format", DATA + "4.5", name, "an ISO 8601 timestamp string", value)
    if problem == timefmt.TIMEZONE:
        fail(
            f"{name}.timezone.required",
            XAPI2 + "Timestamps",
            f"a Timestamp SHALL be formatted per RFC 3339 with a time-zone offset, found {show(value)}",
        )
    if problem == timefmt.NEGATIVE_ZERO:
        fail(
            f"{name}.offset.negative-zero",
            DATA + "4.5",
            f"a Timestamp MUST be ISO 8601, which forbids the offset -00:00, found {show(value)}",
        )
    if v2:
        fail(
            f"{name}.format",
            XAPI2 + "Timestamps",
            "a Timestamp SHALL be an RFC 3339 date-time with offset (YYYY-MM-DDThh:mm:ss[.fff]±hh:mm), "
            f"found {show(value)}",
        )
    fail(f"{name}.format", DATA + "4.5", f"a Timestamp MUST be an ISO 8601 combined date and time, found {show(value)}")
