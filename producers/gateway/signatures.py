"""Signed statements (xAPI 1.0.3 Data §2.6): the signature attachment must be a well-formed JWS.

The LRS MUST reject a statement whose signature is malformed (400). We check that the
attachment part is a JWS compact serialization, that its algorithm is RS256, RS384 or
RS512 (§2.6.s4), and that its payload is the statement that carries it (before the
signature attachment was added). The RSA signature itself is not verified: the spec
leaves trust decisions to the consumer, and we keep no key store.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from schemas.xapi.compare import same_statement
from schemas.xapi.validate import SIGNATURE_USAGE

from .protocol import bad_request

_ALGS = frozenset({"RS256", "RS384", "RS512"})


def _b64(segment: bytes) -> bytes:
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def _without_signature(statement: dict[str, Any]) -> dict[str, Any]:
    out = dict(statement)
    atts = [a for a in out.get("attachments", ()) if a.get("usageType") != SIGNATURE_USAGE]
    if atts:
        out["attachments"] = atts
    else:
        out.pop("attachments", None)
    return out


def signature_sha2s(statement: dict[str, Any]) -> list[str]:
    return [a["sha2"].lower() for a in statement.get("attachments", ()) if a.get("usageType") == SIGNATURE_USAGE]


def check_signature(statement: dict[str, Any], jws: bytes, path: str) -> None:
    """Raise 400 unless ``jws`` is a well-formed RS256/384/512 JWS over ``statement``."""
    segments = jws.strip().split(b".")
    if len(segments) != 3 or not all(segments[:2]):
        raise bad_request("signature.jws", "the signature attachment is not a JWS compact serialization", path)
    try:
        header = orjson.loads(_b64(segments[0]))
        payload = orjson.loads(_b64(segments[1]))
        _b64(segments[2])
    except (binascii.Error, ValueError) as err:
        raise bad_request("signature.jws", f"the signature attachment is not a valid JWS: {err}", path) from err
    if not isinstance(header, dict) or header.get("alg") not in _ALGS:
        alg = header.get("alg") if isinstance(header, dict) else None
        raise bad_request("signature.alg", f"JWS algorithm must be RS256, RS384 or RS512, found {alg!r}", path)
    if not isinstance(payload, dict):
        raise bad_request("signature.payload", "the JWS payload is not a statement object", path)
    if not same_statement(_without_signature(payload), _without_signature(statement)):
        raise bad_request("signature.payload", "the JWS payload does not match the statement it signs", path)
