"""LRS credentials: one HTTP Basic key/secret pair per school, secrets stored hashed.

The file (``<home>/credentials.json`` unless configured) holds, per key, the school it
belongs to and ``scrypt(secret, salt)``; the secret itself is printed once by
``learnpulse credentials add`` and never stored. Writes are atomic (temp file + rename)
under an exclusive lock, the file is mode 0600.

Verifying scrypt on every request would cost ~50 ms of CPU per request, so a verified
pair is remembered in memory — as an HMAC of the secret under a random per-process key,
never the secret — for ``verified_ttl_s`` or until the file changes. Failed pairs are
remembered too (bounded), so a client retrying a wrong secret cannot make the gateway
burn a core on scrypt. An unknown key costs the same scrypt as a wrong secret for a
known one (against a dummy credential): answer times do not tell which keys exist.

Each credential also carries its producer's ingestion policy (``schemas.policy``:
strict, or tolerant of named rules) and, optionally, the xAPI version its clients
speak (answered on requests that carry no usable version header).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.policy import STRICT_POLICY, IngestPolicy, PolicyError

from .errors import UserError
from .homefiles import Locked as _Locked
from .homefiles import file_stamp, write_private

# scrypt cost: N=2^14, r=8, p=1 (16 MiB, ~50 ms here): the interactive-login setting of
# the scrypt paper; the in-memory cache makes it a once-per-process cost per credential.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_KEY_PREFIX = "lp_"
_FAILED_MAX = 10_000


@dataclass(frozen=True)
class Credential:
    key: str
    school: str
    salt: bytes
    digest: bytes
    n: int
    r: int
    p: int
    created: str
    # Browser origins (http(s)://host[:port]) whose pages may use this school's LRS (CORS).
    allow_origins: tuple[str, ...] = ()
    policy: IngestPolicy = STRICT_POLICY
    # "1.0.3" or "2.0.0": what its clients speak (None: the gateway's default).
    xapi_version: str | None = None


XAPI_VERSIONS = ("1.0.3", "2.0.0")


def _policy_from(item: dict) -> IngestPolicy:
    doc = item.get("policy")
    if doc is None:
        return STRICT_POLICY
    return IngestPolicy(doc["mode"], frozenset(doc.get("tolerate", ())))


# What an unknown key is checked against (a digest of zeros: scrypt never yields it).
_UNKNOWN = Credential("", "", salt=bytes(16), digest=bytes(32), created="", **_SCRYPT)


def _hash(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def _load(path: Path) -> dict[str, Credential]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise UserError(f"credentials file {path} is unreadable: {err}") from err
    out = {}
    for item in doc.get("credentials", []):
        try:
            c = Credential(
                key=item["key"], school=item["school"], salt=bytes.fromhex(item["salt"]),
                digest=bytes.fromhex(item["scrypt"]), n=int(item["n"]), r=int(item["r"]), p=int(item["p"]),
                created=item.get("created", ""), allow_origins=tuple(item.get("allow_origins", ())),
                policy=_policy_from(item), xapi_version=item.get("xapi_version"),
            )  # fmt: skip
        except (KeyError, ValueError, TypeError, PolicyError) as err:
            raise UserError(f"credentials file {path} has a malformed entry: {err!r}") from err
        out[c.key] = c
    return out


def _entry(c: Credential) -> dict:
    out = {"key": c.key, "school": c.school, "salt": c.salt.hex(), "scrypt": c.digest.hex(),
           "n": c.n, "r": c.r, "p": c.p, "created": c.created}  # fmt: skip
    if c.policy != STRICT_POLICY:
        out["policy"] = {"mode": c.policy.mode, "tolerate": sorted(c.policy.tolerate)}
    if c.xapi_version is not None:
        out["xapi_version"] = c.xapi_version
    if c.allow_origins:
        out["allow_origins"] = list(c.allow_origins)
    return out


def _dump(path: Path, creds: dict[str, Credential]) -> None:
    doc = {"credentials": [_entry(c) for c in sorted(creds.values(), key=lambda c: (c.school, c.key))]}
    write_private(path, json.dumps(doc, indent=1))


def _origins(values: Sequence[str]) -> tuple[str, ...]:
    from producers.gateway.cors import normalize_origin

    try:
        return tuple(dict.fromkeys(normalize_origin(v) for v in values))
    except ValueError as err:
        raise UserError(str(err)) from err


def _check_version(xapi_version: str | None) -> None:
    if xapi_version is not None and xapi_version not in XAPI_VERSIONS:
        raise UserError(f"xAPI version must be one of {', '.join(XAPI_VERSIONS)}, not {xapi_version!r}")


def add_credential(
    path: Path,
    school: str,
    allow_origins: Sequence[str] = (),
    policy: IngestPolicy = STRICT_POLICY,
    xapi_version: str | None = None,
) -> tuple[str, str]:
    """Create a key/secret for ``school``; returns ``(key, secret)`` — the only time the secret exists."""
    origins = _origins(allow_origins)
    if not school or any(c.isspace() for c in school) or len(school) > 128:
        raise UserError("school must be a non-empty name without spaces (at most 128 characters)")
    _check_version(xapi_version)
    key = _KEY_PREFIX + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    digest = _hash(secret, salt, **_SCRYPT)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with _Locked(path):
        creds = _load(path)
        creds[key] = Credential(key, school, salt, digest, created=created, allow_origins=origins, policy=policy,
                                xapi_version=xapi_version, **_SCRYPT)  # fmt: skip
        _dump(path, creds)
    return key, secret


_KEEP = object()


def update_credential(
    path: Path, key: str, policy: IngestPolicy | None = None, xapi_version: object = _KEEP
) -> Credential:
    """Change ``key``'s policy and/or xAPI version (``None`` version: the gateway's default).

    Gateways pick the change up within their reload interval; the secret is untouched.
    """
    if xapi_version is not _KEEP:
        _check_version(xapi_version)  # type: ignore[arg-type]
    with _Locked(path):
        creds = _load(path)
        old = creds.get(key)
        if old is None:
            raise UserError(f"no credential {key}")
        new = dataclasses.replace(
            old,
            policy=old.policy if policy is None else policy,
            xapi_version=old.xapi_version if xapi_version is _KEEP else xapi_version,  # type: ignore[arg-type]
        )
        creds[key] = new
        _dump(path, creds)
    return new


def remove_credential(path: Path, key: str) -> bool:
    """Delete ``key``; True if it existed. Gateways notice within their reload interval."""
    with _Locked(path):
        creds = _load(path)
        if creds.pop(key, None) is None:
            return False
        _dump(path, creds)
    return True


def update_origins(path: Path, key: str, add: Sequence[str] = (), remove: Sequence[str] = (),
                   clear: bool = False) -> tuple[str, ...]:  # fmt: skip
    """Change the browser origins allowed for ``key``'s school through ``key``; the new list."""
    added, removed = _origins(add), set(_origins(remove))
    with _Locked(path):
        creds = _load(path)
        cred = creds.get(key)
        if cred is None:
            raise UserError(f"no credential {key}")
        kept = () if clear else tuple(o for o in cred.allow_origins if o not in removed)
        origins = tuple(dict.fromkeys(kept + added))
        creds[key] = dataclasses.replace(cred, allow_origins=origins)
        _dump(path, creds)
    return origins


def list_credentials(path: Path) -> list[Credential]:
    return sorted(_load(path).values(), key=lambda c: (c.school, c.key))


# Writes replace the file (a new inode) and mtime comes from a coarse clock: the stamp has both.
_file_version = file_stamp


class CredentialStore:
    """Checks HTTP Basic pairs against the file; thread-safe; re-reads the file when it changes.

    :meth:`authenticate` may block (scrypt, ~50 ms) on the first use of a pair; callers on
    an event loop run it in a thread unless :meth:`cached` already answered.
    """

    def __init__(
        self, path: Path, reload_every_s: float = 2.0, clock=time.monotonic, verified_ttl_s: float = 300.0
    ) -> None:
        self.path = path
        self.reload_every_s = reload_every_s
        self.verified_ttl_s = verified_ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._pepper = secrets.token_bytes(32)
        self._creds: dict[str, Credential] = {}
        self._version: tuple[int, int, int] | None = None
        self._checked = -1e18
        self._good: dict[str, tuple[bytes, str, float]] = {}  # key -> (hmac of secret, school, expires)
        self._bad: dict[tuple[str, bytes], float] = {}  # (key, hmac of secret) -> expires
        self._reload(force=True)

    def _mark(self, secret: str) -> bytes:
        return hmac.new(self._pepper, secret.encode(), hashlib.sha256).digest()

    def _reload(self, force: bool = False, check_now: bool = False) -> None:
        """Re-read the file if it changed, looking at most every ``reload_every_s`` unless
        ``check_now``; ``force``: re-read it whatever its stamp."""
        now = self.clock()
        if not (force or check_now) and now - self._checked < self.reload_every_s:
            return
        self._checked = now
        version = _file_version(self.path)
        if version == self._version and not force:
            return
        creds = _load(self.path)
        with self._lock:
            self._creds, self._version = creds, version
            # A removed or re-keyed credential must stop working: forget every verdict.
            self._good.clear()
            self._bad.clear()

    def origin_allowed(self, origin: str, school: str | None) -> bool:
        """CORS (``producers.gateway.cors.OriginPolicy``): whether ``school`` (any school when
        None) allows browser pages of ``origin``; default none."""
        from producers.gateway.cors import normalize_origin

        self._reload()
        try:
            origin = normalize_origin(origin)
        except ValueError:
            return False  # "null" (sandboxed pages, file://) and garbage are never allowed
        with self._lock:
            creds = list(self._creds.values())
        return any(origin in c.allow_origins for c in creds if school is None or c.school == school)

    def cached(self, key: str, secret: str) -> tuple[bool, str | None]:
        """``(known, school)`` from memory only: ``known`` False means call :meth:`authenticate`."""
        self._reload()
        mark = self._mark(secret)
        now = self.clock()
        with self._lock:
            good = self._good.get(key)
            if good is not None and good[2] > now and hmac.compare_digest(good[0], mark):
                return True, good[1]
            # Unknown keys are not answered here: that would be faster than a wrong
            # secret for a known key, telling which keys exist.
            if self._bad.get((key, mark), 0.0) > now:
                return True, None
        return False, None

    def policy(self, key: str) -> IngestPolicy:
        """The ingestion policy of ``key`` (strict for an unknown key)."""
        self._reload()
        with self._lock:
            cred = self._creds.get(key)
        return STRICT_POLICY if cred is None else cred.policy

    def xapi_version(self, key: str, secret: str) -> str | None:
        """The xAPI version ``key``'s clients speak, if set, for a pair already verified
        (from memory only: never runs scrypt, never tells a stranger anything)."""
        known, school = self.cached(key, secret)
        if not known or school is None:
            return None
        with self._lock:
            cred = self._creds.get(key)
        return None if cred is None else cred.xapi_version

    def authenticate(self, key: str, secret: str) -> str | None:
        """The school of a valid pair, else None."""
        known, school = self.cached(key, secret)
        if known:
            return school
        with self._lock:
            cred = self._creds.get(key)
        if cred is None:
            # Issued since the last look (an LMS posts the moment it gets its key): refused
            # until the periodic reload, its first requests counted as failed sign-ins and
            # could lock its address out. One stat; unknown keys still cost a scrypt below.
            self._reload(check_now=True)
            with self._lock:
                cred = self._creds.get(key)
        mark = self._mark(secret)
        # The same work for an unknown key: a scrypt against a credential no secret matches.
        checked = cred or _UNKNOWN
        digest = _hash(secret, checked.salt, checked.n, checked.r, checked.p)
        ok = cred is not None and hmac.compare_digest(digest, cred.digest)
        expires = self.clock() + self.verified_ttl_s
        with self._lock:
            if ok:
                self._good[key] = (mark, cred.school, expires)
                return cred.school
            if len(self._bad) >= _FAILED_MAX:
                self._bad.clear()
            self._bad[(key, mark)] = expires
        return None
