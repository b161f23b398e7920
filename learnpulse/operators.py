"""Operator accounts for the dashboard: a name, a role and its scope, an Argon2id password hash.

``learnpulse operators add|list|remove|passwd`` keep ``<home>/operators.json`` (mode 0600,
atomic writes under a lock, like the researcher tokens and LRS credentials). Passwords are
hashed with argon2-cffi's Argon2id at its default (RFC 9106 low-memory) parameters; a hash
made with other parameters is re-made at the next successful sign-in.

Roles and what each sees (reporting/scope.py):

- ``network``: every school;
- ``school``: the listed schools, whole;
- ``teacher``: the listed (school, course, cohort) triples.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from reporting.scope import Scope

from .errors import UserError
from .homefiles import Locked, file_stamp, write_private

ROLES = ("network", "school", "teacher")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_HASHER = PasswordHasher()


@dataclass(frozen=True)
class Operator:
    name: str
    role: str
    password_hash: str
    schools: tuple[str, ...] = ()
    cohorts: tuple[tuple[str, str, str], ...] = ()  # (school, course, cohort), teachers
    created: str = ""

    def scope(self) -> Scope:
        if self.role == "network":
            return Scope.network()
        if self.role == "school":
            return Scope.of_schools(self.schools)
        return Scope.of_cohorts(self.cohorts)

    def describe(self) -> str:
        if self.role == "network":
            return "every school"
        if self.role == "school":
            return ", ".join(self.schools)
        return ", ".join(" / ".join(c) for c in self.cohorts)


def operators_path(home: Path) -> Path:
    return home / "operators.json"


def _load(path: Path) -> dict[str, Operator]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise UserError(f"operators file {path} is unreadable: {err}") from err
    out = {}
    for item in doc.get("operators", []):
        try:
            op = Operator(item["name"], item["role"], item["password_hash"], tuple(item.get("schools", ())),
                          tuple(tuple(c) for c in item.get("cohorts", ())), item.get("created", ""))  # fmt: skip
        except (KeyError, TypeError) as err:
            raise UserError(f"operators file {path} has a malformed entry: {err!r}") from err
        if op.role not in ROLES or any(len(c) != 3 for c in op.cohorts):
            raise UserError(f"operators file {path}: {op.name!r} has an unknown role or a malformed cohort")
        out[op.name] = op
    return out


def _dump(path: Path, operators: dict[str, Operator]) -> None:
    doc = {"operators": [
        {"name": o.name, "role": o.role, "schools": list(o.schools), "cohorts": [list(c) for c in o.cohorts],
         "password_hash": o.password_hash, "created": o.created}
        for o in sorted(operators.values(), key=lambda o: o.name)
    ]}  # fmt: skip
    write_private(path, json.dumps(doc, indent=2) + "\n")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password may have at most {MAX_PASSWORD} characters")


def parse_cohort(text: str) -> tuple[str, str, str]:
    """``SCHOOL|COURSE|COHORT`` (course IRIs hold ':' and '/', so '|' separates)."""
    parts = text.split("|")
    if len(parts) != 3 or not all(parts):
        raise UserError(f"a cohort is SCHOOL|COURSE|COHORT, got {text!r}")
    return parts[0], parts[1], parts[2]


def add_operator(
    path: Path, name: str, role: str, password: str, schools: tuple[str, ...] = (),
    cohorts: tuple[tuple[str, str, str], ...] = (),
) -> Operator:  # fmt: skip
    if not _NAME.match(name):
        raise UserError(f"invalid operator name {name!r} (allowed: {_NAME.pattern})")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    if role == "network" and (schools or cohorts):
        raise UserError("a network operator sees every school: give no --school or --cohort")
    if role == "school" and (not schools or cohorts):
        raise UserError("a school operator needs --school (one or more) and no --cohort")
    if role == "teacher" and (not cohorts or schools):
        raise UserError("a teacher needs --cohort SCHOOL|COURSE|COHORT (one or more) and no --school")
    check_password(password)
    op = Operator(name, role, _HASHER.hash(password), tuple(dict.fromkeys(schools)), tuple(dict.fromkeys(cohorts)),
                  datetime.now(UTC).isoformat(timespec="seconds"))  # fmt: skip
    with Locked(path):
        found = _load(path)
        if name in found:
            raise UserError(f"operator {name!r} exists (remove it first, or `operators passwd`)")
        found[name] = op
        _dump(path, found)
    return op


def set_password(path: Path, name: str, password: str) -> None:
    check_password(password)
    new_hash = _HASHER.hash(password)
    with Locked(path):
        found = _load(path)
        if name not in found:
            raise UserError(f"no operator {name!r}")
        found[name] = replace(found[name], password_hash=new_hash)
        _dump(path, found)


def remove_operator(path: Path, name: str) -> bool:
    with Locked(path):
        found = _load(path)
        if found.pop(name, None) is None:
            return False
        _dump(path, found)
    return True


def list_operators(path: Path) -> list[Operator]:
    return sorted(_load(path).values(), key=lambda o: o.name)


# What an unknown name is verified against, so that answering costs the same either way.
_DUMMY_HASH = _HASHER.hash("no such operator: " + str(time.time_ns()))


class OperatorAccounts:
    """Checks sign-ins against the file; re-reads it when it changes (adds, removals, new passwords)."""

    def __init__(self, path: Path, reload_every_s: float = 1.0) -> None:
        self.path = path
        self.reload_every_s = reload_every_s
        self._operators: dict[str, Operator] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def _reload(self) -> dict[str, Operator]:
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= self.reload_every_s:
                self._checked = now
                stamp = file_stamp(self.path)
                if stamp != self._stamp:
                    self._operators = _load(self.path) if stamp else {}
                    self._stamp = stamp
            return self._operators

    def get(self, name: str) -> Operator | None:
        """The account as the file has it now (sessions re-check it: removed or re-passworded ends them)."""
        return self._reload().get(name)

    def verify(self, name: str, password: str) -> Operator | None:
        """The operator whose password this is, else None; slow (Argon2) whether or not the name exists."""
        op = self._reload().get(name)
        if len(password) > MAX_PASSWORD:
            return None
        try:
            _HASHER.verify(op.password_hash if op else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if op is None:
            return None
        if _HASHER.check_needs_rehash(op.password_hash):
            op = self._rehash(op, password)
        return op

    def _rehash(self, op: Operator, password: str) -> Operator:
        """The hash was made with other parameters: store one with today's (same password)."""
        new_hash = _HASHER.hash(password)
        with Locked(self.path):
            found = _load(self.path)
            current = found.get(op.name)
            if current is None or current.password_hash != op.password_hash:
                return current or op  # changed meanwhile: leave the newer entry alone
            found[op.name] = replace(current, password_hash=new_hash)
            _dump(self.path, found)
        self._checked = float("-inf")
        return found[op.name]
