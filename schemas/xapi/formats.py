"""String formats xAPI requires: IRIs, UUIDs, mailto IRIs, hashes, RFC 5646 language tags.

Best-effort syntax checks, as xAPI 1.0.3 Data §2.2.s4.b6/b7 allow, written to be cheap:
values that repeat across statements (verb ids, activity ids, extension keys, language
tags) are remembered once they passed, so a warm check is one dict lookup.
"""

from __future__ import annotations

import re

# Absolute IRI (RFC 3987): a scheme, then characters IRIs allow; "%" only as %XX.
# Excluded: whitespace, controls (C0, DEL, C1) and <>"{}|\^` which no IRI may contain.
_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?:[^\s<>\"{}|\\^`%\x00-\x1f\x7f-\x9f]|%[0-9A-Fa-f]{2})+\Z")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\Z")
# mailto IRI holding exactly one address (RFC 6068 without headers): local@domain.
_MAILTO = re.compile(
    r"[mM][aA][iI][lL][tT][oO]:[^\s@<>\"(),;:\\\[\]?#/]+@[^\s@<>\"(),;:\\\[\]?#/.][^\s@<>\"(),;:\\\[\]?#/]*\Z"
)
_SHA1 = re.compile(r"[0-9A-Fa-f]{40}\Z")
# SHA-2 family hex digests: SHA-224, SHA-256, SHA-384, SHA-512.
_SHA2 = re.compile(r"(?:[0-9A-Fa-f]{56}|[0-9A-Fa-f]{64}|[0-9A-Fa-f]{96}|[0-9A-Fa-f]{128})\Z")
# Internet media type (RFC 2046 / RFC 6838 token chars), parameters unchecked.
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z\-]+/[!#$%&'*+.^_`|~0-9A-Za-z\-]+\s*(?:;.*)?\Z", re.DOTALL)

# RFC 5646 §2.1 ABNF, case-insensitive; re.ASCII so that case folding cannot map
# non-ASCII letters (U+017F, U+212A, ...) onto [a-z].: langtag / privateuse / grandfathered.
_LANGTAG = (
    r"(?:[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4}|[a-z]{5,8})"  # language, extlang
    r"(?:-[a-z]{4})?"  # script
    r"(?:-(?:[a-z]{2}|[0-9]{3}))?"  # region
    r"(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*"  # variants
    r"(?:-[0-9a-wy-z](?:-[a-z0-9]{2,8})+)*"  # extensions
    r"(?:-x(?:-[a-z0-9]{1,8})+)?"  # private use
)
_GRANDFATHERED = (
    "en-GB-oed|i-ami|i-bnn|i-default|i-enochian|i-hak|i-klingon|i-lux|i-mingo|i-navajo|i-pwn"
    "|i-tao|i-tay|i-tsu|sgn-BE-FR|sgn-BE-NL|sgn-CH-DE"
    "|art-lojban|cel-gaulish|no-bok|no-nyn|zh-guoyu|zh-hakka|zh-min|zh-min-nan|zh-xiang"
)
_LANGUAGE_TAG = re.compile(rf"(?:{_LANGTAG}|x(?:-[a-z0-9]{{1,8}})+|{_GRANDFATHERED})\Z", re.IGNORECASE | re.ASCII)

# Remembered good values. Bounded: cleared when full, so memory stays flat whatever
# the input; the answer never depends on what is remembered.
_CACHE_MAX = 65_536
_good_iris: dict[str, bool] = {}  # read directly by the validator (validate/values.py) on its hot path
_good_tags: dict[str, bool] = {}


def is_iri(value: object) -> bool:
    """An absolute IRI: scheme, ``:``, IRI characters, well-formed %-escapes, ≤ one ``#``."""
    if value.__class__ is not str:
        return False
    if value in _good_iris:
        return True
    if _IRI.match(value) is None or value.count("#") > 1:
        return False
    if len(_good_iris) >= _CACHE_MAX:
        _good_iris.clear()
    _good_iris[value] = True
    return True


def is_language_tag(value: object) -> bool:
    """An RFC 5646 language tag (well-formed; subtags are not checked against the registry)."""
    if value.__class__ is not str:
        return False
    if value in _good_tags:
        return True
    if _LANGUAGE_TAG.match(value) is None:
        return False
    if len(_good_tags) >= _CACHE_MAX:
        _good_tags.clear()
    _good_tags[value] = True
    return True


def is_uuid(value: object) -> bool:
    """A UUID in standard string form (8-4-4-4-12 hex digits, either case).

    xAPI 1.0.3 Data §4.4 requires the standard string form and only recommends the
    RFC 4122 variant; the spec's own example id (§2.4) is not of that variant.
    """
    return value.__class__ is str and _UUID.match(value) is not None


def is_mailto(value: object) -> bool:
    """``mailto:`` followed by exactly one e-mail address, and an IRI as :func:`is_iri` has it
    (so ``%`` only in well-formed %-escapes, no characters that no IRI may hold)."""
    return value.__class__ is str and _MAILTO.match(value) is not None and is_iri(value)


def is_sha1_hex(value: object) -> bool:
    """40 hexadecimal digits."""
    return value.__class__ is str and _SHA1.match(value) is not None


def is_sha2_hex(value: object) -> bool:
    """Hex digest of SHA-224, SHA-256, SHA-384 or SHA-512."""
    return value.__class__ is str and _SHA2.match(value) is not None


def is_media_type(value: object) -> bool:
    """``type/subtype`` optionally followed by ``;`` parameters."""
    return value.__class__ is str and _MEDIA_TYPE.match(value) is not None
