"""Raw HTTP for fuzzing the gateway: requests sent byte for byte, as no HTTP library would.

Used by test_gateway_fuzz.py (hypothesis) and ``python -m benchmarks.fuzz_gateway``.
Header values are bytes (non-ASCII included); CR and LF are removed from them so that a
request stays one request with the Content-Length it declares.
"""

from __future__ import annotations

import socket

import orjson


def request_bytes(method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes, host: str) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: " + host.encode()]
    for name, value in headers:
        lines.append(name + b": " + value.replace(b"\r", b"").replace(b"\n", b""))
    lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def send(host: str, port: int, raw: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """``(status, body)`` of one request on a fresh connection."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split(b" ", 2)[1]), rest.partition(b"\r\n\r\n")[2]


def rule_of(status: int, body: bytes) -> str:
    """The rule id of an error answer: "-" for successes, "(no body)" (HEAD), "(http parser)" for
    aiohttp's plain-text refusals of malformed HTTP, "(no rule)" for any other answer without one."""
    if status < 400:
        return "-"
    if not body:
        return "(no body)"
    if not body.startswith(b"{"):
        # aiohttp refuses malformed HTTP (e.g. control bytes in a header) before any handler runs.
        return "(http parser)" if status == 400 else "(no rule)"
    try:
        return str(orjson.loads(body)["error"]["rule"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "(no rule)"
