"""Attachments (xAPI 1.0.3 Data §2.4.11) and signature attachments (§2.6)."""

from __future__ import annotations

from ..formats import is_iri, is_media_type, is_sha2_hex
from .values import IRI_OK, check_language_map
from .violations import DATA, Violation, bad_type, fail, format_error, iri_error, missing, show, unknown_properties

SIGNATURE_USAGE = "http://adlnet.gov/expapi/attachments/signature"
_ATTACHMENT_KEYS = frozenset({"usageType", "display", "description", "contentType", "length", "sha2", "fileUrl"})
_ATTACHMENT_REQUIRED = ("usageType", "display", "contentType", "length", "sha2")


def check_attachment(att: object) -> None:
    if att.__class__ is not dict:
        bad_type("attachments.type", DATA + "2.4.11", "an attachment", "an Attachment object", att)
    if not _ATTACHMENT_KEYS.issuperset(att):
        unknown_properties(att, _ATTACHMENT_KEYS, "an Attachment")
    for req in _ATTACHMENT_REQUIRED:
        if req not in att:
            missing(f"attachment.{req}.required", DATA + "2.4.11", f"attachment.{req}", f".{req}")
    usage = att["usageType"]
    if usage.__class__ is not str or (usage not in IRI_OK and not is_iri(usage)):
        iri_error(usage, "attachment.usageType.iri", DATA + "2.4.11", "attachment.usageType", ".usageType")
    for lmap in ("display", "description"):
        if lmap in att:
            try:
                check_language_map(att[lmap], f"attachment.{lmap}")
            except Violation as e:
                e.keys.append(f".{lmap}")
                raise
    ctype = att["contentType"]
    if not is_media_type(ctype):
        format_error(
            "attachment.contentType.media-type",
            DATA + "2.4.11",
            "attachment.contentType",
            "a string",
            ctype,
            f"attachment.contentType MUST be an Internet Media Type (type/subtype), found {show(ctype)}",
            ".contentType",
        )
    length = att["length"]
    if length.__class__ is not int:
        bad_type("attachment.length.type", DATA + "2.4.11", "attachment.length", "an integer", length, ".length")
    if length < 0:
        fail(
            "attachment.length.negative", DATA + "2.4.11", f"attachment.length counts octets, found {length}", ".length"
        )
    sha2 = att["sha2"]
    if not is_sha2_hex(sha2):
        format_error(
            "attachment.sha2.hex",
            DATA + "2.4.11",
            "attachment.sha2",
            "a string",
            sha2,
            f"attachment.sha2 MUST be the hex SHA-2 hash of the data (224/256/384/512 bits), found {show(sha2)}",
            ".sha2",
        )
    if "fileUrl" in att:
        url = att["fileUrl"]
        if url.__class__ is not str or (url not in IRI_OK and not is_iri(url)):
            iri_error(url, "attachment.fileUrl.irl", DATA + "2.4.11", "attachment.fileUrl", ".fileUrl", "IRL")
    if usage == SIGNATURE_USAGE and ctype != "application/octet-stream":
        fail(
            "attachment.signature.contentType",
            DATA + "2.6",
            'a signature Attachment MUST have contentType "application/octet-stream"',
            ".contentType",
        )
