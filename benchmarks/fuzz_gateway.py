"""Fuzz the LRS gateway's parse and validate path: many malformed requests, zero 5xx expected.

Run as ``python -m benchmarks.fuzz_gateway`` (an in-process gateway with in-memory Kafka
and store: the real aiohttp app, parser and validator) or against a running one:
``python -m benchmarks.fuzz_gateway --url http://127.0.0.1:8088 --key lp_… --secret …``.
Bounded: ``--requests`` (default 5,000) or ``--seconds`` (default 300), whichever comes
first; ``--seed`` repeats a run. Prints a table of status codes and rule ids, the rate,
and the first requests that got a 5xx (exit status 1 if any did). The suite runs a
shorter, hypothesis-driven version (tests/unit/gateway/test_gateway_fuzz.py).

Against a running gateway keep in mind its rate limits (429 ``rate.*``/``auth.*``):
raise them for the run, or read those rows as the limits working.
"""

from __future__ import annotations

import argparse
import base64
import logging
import random
import sys
import time
from collections import Counter
from urllib.parse import quote, urlparse

import orjson

from tests.unit.gateway.fuzzing import request_bytes, rule_of, send
from tests.unit.gateway.harness import Harness, statement

KEYS = ["id", "actor", "verb", "object", "result", "context", "timestamp", "stored", "authority", "version",
        "attachments", "objectType", "mbox", "account", "extensions", "definition", "member", "display"]  # fmt: skip
QUERY = ["statementId", "voidedStatementId", "agent", "verb", "activity", "registration", "since", "until", "limit",
         "format", "attachments", "ascending", "more", "method", "related_agents", "content", "x"]  # fmt: skip
ODD_TEXT = ["", " ", "\u0000", "\u00e9", "\u2603", "\udcff", "\ufeff", "%", "\\", '"', "mailto:", "http://", "1e999",
            "-0", "2024-02-30T25:61:00Z", "00000000-0000-0000-0000-000000000000", "x" * 5000]  # fmt: skip


class Fuzzer:
    def __init__(self, rng: random.Random, auth: bytes) -> None:
        self.rng = rng
        self.auth = auth

    def text(self) -> str:
        r = self.rng
        if r.random() < 0.5:
            return r.choice(ODD_TEXT)
        return "".join(chr(r.choice([r.randint(32, 126), r.randint(0, 0x2FFF), r.randint(0xD800, 0xDFFF)]))
                       for _ in range(r.randint(0, 12)))  # fmt: skip

    def value(self, depth: int = 0) -> object:
        r = self.rng
        kind = r.randint(0, 7 if depth < 3 else 4)
        if kind == 0:
            return None
        if kind == 1:
            return r.choice([True, False, 0, -1, 2**63 - 1, 1.5e300, -0.0])
        if kind in (2, 3, 4):
            return self.text()
        if kind == 5:
            return [self.value(depth + 1) for _ in range(r.randint(0, 3))]
        return {self.text(): self.value(depth + 1) for _ in range(r.randint(0, 3))}

    def statement(self) -> dict:
        r = self.rng
        st = statement()
        for _ in range(r.randint(0, 3)):
            key = r.choice(KEYS)
            where = r.choice([st, st.get("actor"), st.get("verb"), st.get("object")])
            if not isinstance(where, dict):
                continue
            if r.random() < 0.3:
                where.pop(key, None)
            else:
                where[key] = self.value()
        return st

    def body(self) -> bytes:
        r = self.rng
        kind = r.choice(["statement", "statement", "batch", "json", "bytes", "mutated", "mutated", "deep", "dup"])
        if kind == "statement":
            return self.dumps(self.statement())
        if kind == "batch":
            return self.dumps([self.statement() for _ in range(r.randint(0, 5))])
        if kind == "json":
            return self.dumps(self.value())
        if kind == "bytes":
            return r.randbytes(r.randint(0, 300))
        if kind == "deep":
            n = r.choice([r.randint(1, 100), r.randint(100, 300), r.randint(250, 1100)])
            opener, closer = r.choice([(b"[", b"]"), (b'{"a":', b"}")])
            inner = opener * n + b"1" + closer * r.choice([n, n, max(n - 1, 0)])
            return self.dumps(statement(result={"extensions": {"http://e.com/x": "D"}})).replace(b'"D"', inner)
        raw = bytearray(self.dumps(self.statement()))
        if kind == "dup":
            key = r.choice([b'"actor":', b'"verb":', b'"id":', b'"object":', b'"mbox":'])
            return bytes(raw).replace(key, key + b'"dup", ' + key, 1)
        for _ in range(r.randint(1, 5)):
            at = r.randint(0, len(raw))
            raw[at : at + r.randint(0, 3)] = r.randbytes(r.randint(0, 4))
        return bytes(raw)

    @staticmethod
    def dumps(value: object) -> bytes:
        try:
            return orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError):  # lone surrogates: sent as raw (invalid) UTF-8
            return repr(value).encode("utf-8", "surrogatepass")

    def header(self) -> bytes:
        r = self.rng
        if r.random() < 0.5:
            return self.text().encode("utf-8", "surrogatepass")
        return r.randbytes(r.randint(0, 20))

    def request(self, prefix: str) -> tuple[str, bytes, list[tuple[bytes, bytes]], bytes]:
        r = self.rng
        method = r.choice(["POST"] * 5 + ["PUT", "PUT", "GET", "HEAD", "DELETE", "PATCH"])
        target = f"{prefix}/statements"
        if r.random() < 0.4:
            target += "?" + "&".join(f"{n}={quote(self.text(), safe='', errors='surrogatepass')}"
                                     for n in r.sample(QUERY, r.randint(1, 3)))  # fmt: skip
        auth = r.choice([self.auth] * 6 + [b"Basic " + base64.b64encode(r.randbytes(12)), b"Basic " + self.header(),
                                           self.header()])  # fmt: skip
        ctype = r.choice([b"application/json"] * 5 + [b"multipart/mixed; boundary=" + self.header(), self.header(),
                                                      b"text/plain"])  # fmt: skip
        version = r.choice([b"1.0.3"] * 5 + [b"2.0.0", b"1.0", b"0.95", self.header()])
        headers = [(b"Authorization", auth), (b"Content-Type", ctype), (b"X-Experience-API-Version", version)]
        return method, target.encode("utf-8", "surrogatepass"), headers, self.body()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a running gateway (http://host:port); default: one in this process")
    ap.add_argument("--key", help="a credential key of the running gateway")
    ap.add_argument("--secret", help="its secret")
    ap.add_argument("--prefix", default="/xapi")
    ap.add_argument("--requests", type=int, default=5_000)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    # aiohttp logs every request line it cannot parse (answered 400): thousands here.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    local = None
    if args.url:
        u = urlparse(args.url)
        host, port = u.hostname or "127.0.0.1", u.port or 80
        auth = b"Basic " + base64.b64encode(f"{args.key}:{args.secret}".encode())
    else:
        local = Harness()
        local.start()
        host, port = "127.0.0.1", local.port
        auth = b"Basic " + base64.b64encode(b"key-a:secret-key-a")
    fuzzer = Fuzzer(rng, auth)
    counts: Counter[tuple[int, str]] = Counter()
    failures: list[tuple[int, bytes, bytes]] = []
    started = time.monotonic()
    sent = 0
    try:
        while sent < args.requests and time.monotonic() - started < args.seconds:
            method, target, headers, body = fuzzer.request(args.prefix)
            raw = request_bytes(method, target, headers, body, host)
            try:
                status, answer = send(host, port, raw)
            except (OSError, ValueError, IndexError) as err:
                status, answer = 599, repr(err).encode()
            sent += 1
            counts[(status, rule_of(status, answer))] += 1
            if status >= 500 and len(failures) < 5:
                failures.append((status, raw[:400], answer[:300]))
    finally:
        if local is not None:
            local.stop()
    elapsed = time.monotonic() - started
    print(f"{'status':>6}  {'rule':<40}{'requests':>10}{'share':>8}")
    print("-" * 64)
    for (status, rule), n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1])):
        print(f"{status:>6}  {rule:<40}{n:>10}{n / sent:>8.1%}")
    fives = sum(n for (status, _), n in counts.items() if status >= 500)
    print(f"\n{sent} requests in {elapsed:.1f} s ({sent / elapsed:.0f}/s), seed {seed}; 5xx: {fives}")
    for status, raw, answer in failures:
        print(f"\n{status}: {raw!r}\n  -> {answer!r}")
    return 1 if fives else 0


if __name__ == "__main__":
    sys.exit(main())
