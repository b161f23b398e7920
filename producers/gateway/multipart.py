"""multipart/mixed as xAPI uses it (1.0.3 Communication §1.5.2): parse requests, build responses.

Written over bytes rather than a streaming MIME reader so the parts are exactly the
octets sent (no transfer decoding behind our back) and the request size limit applies
to the whole body before any parsing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from .protocol import HASH_HEADER, bad_request

# SHA-2 digest length in hex → hash function (xAPI: SHA-224/256/384/512).
_SHA2_BY_HEX_LEN = {56: hashlib.sha224, 64: hashlib.sha256, 96: hashlib.sha384, 128: hashlib.sha512}


@dataclass(frozen=True)
class Part:
    headers: dict[str, str]  # lower-cased names
    body: bytes


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/mixed`` Content-Type (RFC 2046 §5.1.1)."""
    _, _, params = content_type.partition(";")
    for param in _split_params(params):
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            # RFC 2046 §5.1.1: 1-70 characters, all of them ASCII (bchars); anything else
            # could not even be matched against the body's bytes.
            if 1 <= len(value) <= 70 and all(" " <= ch <= "~" for ch in value):
                return value
    raise bad_request(
        "multipart.boundary", "multipart/mixed request without a valid boundary parameter (RFC 2046 §5.1.1)"
    )


def _split_params(params: str) -> Iterable[str]:
    # Split on ';' outside double quotes: a quoted boundary may contain ';'.
    out, cur, quoted = [], [], False
    for ch in params:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [p for p in out if p.strip()]


def parse(body: bytes, boundary: str) -> list[Part]:
    """Split a multipart body into parts (RFC 2046 §5.1.1: CRLF line breaks, ``--`` close delimiter)."""
    delim = b"--" + boundary.encode("latin-1")
    # The first delimiter may open the body or follow a preamble line.
    if body.startswith(delim):
        pos = len(delim)
    else:
        i = body.find(b"\r\n" + delim)
        if i < 0:
            raise bad_request("multipart.structure", "multipart body does not contain its boundary")
        pos = i + 2 + len(delim)
    parts: list[Part] = []
    sep = b"\r\n" + delim
    while True:
        if body.startswith(b"--", pos):
            break  # close delimiter
        # Transport padding (spaces/tabs) may follow a delimiter, then CRLF.
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise bad_request("multipart.structure", "malformed multipart delimiter line")
        start = eol + 2
        end = body.find(sep, start)
        if end < 0:
            raise bad_request("multipart.structure", "multipart body is not closed by its final boundary")
        parts.append(_part(body[start:end]))
        pos = end + len(sep)
    if not parts:
        raise bad_request("multipart.structure", "multipart body has no parts")
    return parts


def _part(raw: bytes) -> Part:
    if raw.startswith(b"\r\n"):
        head, body = b"", raw[2:]
    else:
        i = raw.find(b"\r\n\r\n")
        if i < 0:
            raise bad_request("multipart.part", "multipart part has no blank line after its headers")
        head, body = raw[:i], raw[i + 4 :]
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n") if head else ():
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise bad_request("multipart.part", f"malformed part header line {line[:80]!r}")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return Part(headers, body)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def attachment_parts(parts: list[Part]) -> dict[str, Part]:
    """Check the attachment parts (all but the first) and index them by declared SHA-2.

    xAPI 1.0.3 Communication §1.5.2.s2.b2: each part after the first carries
    ``X-Experience-API-Hash`` and ``Content-Transfer-Encoding: binary`` (a missing one is
    read as binary, §1.5.2.s3.b6; any other value is refused); §1.5.2.s1.b4: raw
    data is matched to an Attachment only by comparing its SHA-2 with the declared one,
    so the hash of the octets received must equal the header.
    """
    out: dict[str, Part] = {}
    for n, part in enumerate(parts[1:], start=1):
        declared = part.headers.get(HASH_HEADER.lower())
        if not declared:
            raise bad_request(
                "attachments.part.hash-header", f"attachment part {n} has no {HASH_HEADER} header", f"$parts[{n}]"
            )
        declared = declared.lower()
        cte = part.headers.get("content-transfer-encoding")
        if cte is not None and cte.lower() != "binary":
            raise bad_request(
                "attachments.part.transfer-encoding",
                f"attachment part {n} must have Content-Transfer-Encoding: binary (found {cte!r})",
                f"$parts[{n}]",
            )
        algo = _SHA2_BY_HEX_LEN.get(len(declared))
        if algo is None:
            raise bad_request(
                "attachments.part.hash-header", f"{HASH_HEADER} of part {n} is not a SHA-2 hex digest", f"$parts[{n}]"
            )
        if algo(part.body).hexdigest() != declared:
            raise bad_request(
                "attachments.part.hash-mismatch",
                f"the SHA-2 of attachment part {n} does not match its {HASH_HEADER} {declared}",
                f"$parts[{n}]",
            )
        out[declared] = part
    return out


def build(json_body: bytes, attachments: Iterable[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/mixed response: the JSON first, then each ``(sha2, content_type, data)``.

    Returns ``(body, content_type)``. The boundary is random and checked not to occur in
    any part.
    """
    items = list(attachments)
    while True:
        boundary = "xapi-" + secrets.token_hex(16)
        b = boundary.encode()
        if b not in json_body and not any(b in data for _, _, data in items):
            break
    chunks = [b"--", b, b"\r\nContent-Type: application/json\r\n\r\n", json_body]
    for sha2, ctype, data in items:
        chunks += [
            b"\r\n--", b,
            b"\r\nContent-Type: ", ctype.encode("latin-1", "replace"),
            b"\r\nContent-Transfer-Encoding: binary\r\n", HASH_HEADER.encode(), b": ", sha2.encode(), b"\r\n\r\n",
            data,
        ]  # fmt: skip
    chunks += [b"\r\n--", b, b"--\r\n"]
    return b"".join(chunks), f'multipart/mixed; boundary="{boundary}"'
