"""Turn a school's statements into envelopes on ``xapi.statements``.

Shared by every producer: canonical form (id, stored, authority, version), learner
pseudonym, course/cohort from the school profile, grouping per learner, idempotent send.

Two entry points share the per-statement steps (:class:`_Stamp`):

- :class:`StatementPublisher` for streams of statements (simulator, replay, bridge):
  one statement at a time, grouped across calls by :class:`LearnerBatcher` with linger;
- :class:`RequestEncoder` for one HTTP request (the gateway): all its statements at once,
  grouped per learner into encoded envelopes, with where each statement landed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from schemas.envelope import StatementEntry, StatementEnvelope
from schemas.identity import learner_key
from schemas.profile import SchoolProfile
from schemas.xapi.canonical import canonicalize

from .batching import LearnerBatcher, encode_envelope
from .kafka import StatementProducer

AUTHORITY_HOME = "https://learnpulse.dev/schools"


def school_authority(school: str) -> dict[str, Any]:
    """The authority an LRS credential of ``school`` stamps on its statements."""
    return {"objectType": "Agent", "account": {"homePage": AUTHORITY_HOME, "name": school}}


@lru_cache(maxsize=65_536)
def _hmac_hex(secret: bytes, key: str) -> str:
    # Not the one-shot hmac.digest: it releases the GIL on every call, however short the
    # message, and under the gateway's Kafka and index threads getting it back took 7 % of
    # the event loop's time (py-spy); hmac.new keeps the GIL for short messages.
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def cached_pseudonym(secret: bytes, agent: dict[str, Any]) -> str:
    """``schemas.identity.pseudonym``, with the HMAC remembered per learner.

    A learner sends many statements (ten per learner in a typical batch of 100, hundreds
    in a simulation); the HMAC was a tenth of the publisher's CPU.
    """
    return _hmac_hex(secret, learner_key(agent))


class _Stamp:
    """The per-statement steps every producer shares: canonical form, pseudonym, course/cohort."""

    def __init__(self, secret: bytes, profiles: Mapping[str, SchoolProfile] | None) -> None:
        self.secret = secret
        self.profiles = profiles or {}
        self.default_profile = SchoolProfile()
        self._authorities: dict[str, dict[str, Any]] = {}

    def authority(self, school: str) -> dict[str, Any]:
        # One dict per school, shared by its statements (it is only ever serialized).
        found = self._authorities.get(school)
        if found is None:
            found = self._authorities[school] = school_authority(school)
        return found

    def profile(self, school: str) -> SchoolProfile:
        return self.profiles.get(school, self.default_profile)


class StatementPublisher:
    """Canonicalizes, pseudonymizes, groups and sends; ``flush`` surfaces delivery errors."""

    def __init__(
        self,
        producer: StatementProducer,
        secret: bytes,
        profiles: Mapping[str, SchoolProfile] | None = None,
        max_per_envelope: int = 20,
        linger_s: float = 0.05,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.producer = producer
        self.secret = secret
        self._stamp = _Stamp(secret, profiles)
        self.profiles = self._stamp.profiles
        self.default_profile = self._stamp.default_profile
        self.clock_ms = clock_ms
        # Producers that take pre-encoded envelopes skip serializing each statement twice.
        self.batcher = LearnerBatcher(
            producer.send,
            max_count=max_per_envelope,
            linger_s=linger_s,
            emit_encoded=getattr(producer, "send_encoded", None),
        )

    def publish(
        self,
        school: str,
        statement: dict[str, Any],
        received_ms: int | None = None,
        violations: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Queue one validated statement; returns its canonical (stored) form.

        ``violations``: the rule ids a tolerant policy let it through with (kept beside it).
        """
        received = received_ms if received_ms is not None else self.clock_ms()
        stamp = self._stamp
        stored = canonicalize(statement, authority=stamp.authority(school), stored_ms=received)
        learner = _hmac_hex(self.secret, learner_key(stored["actor"]))
        course, cohort = stamp.profile(school).course_and_cohort(stored)
        self.batcher.add(school, learner, received, StatementEntry(course, cohort, stored, violations))
        return stored

    def poll(self) -> None:
        """Send envelopes past their linger time; raise ``DeliveryFailed`` if Kafka refused any."""
        self.batcher.poll()
        check = getattr(self.producer, "check", None)
        if check is not None:
            check()

    def flush(self) -> None:
        self.batcher.flush()
        self.producer.flush()


class EncodedRequest(NamedTuple):
    """One request's statements as envelopes ready for Kafka."""

    # The canonical (stored) form of each statement, in request order.
    stored: list[dict[str, Any]]
    # The envelopes with their encoded value, in the order a LearnerBatcher emits them.
    envelopes: list[tuple[StatementEnvelope, bytes]]
    # For each statement (request order): (encoded envelope holding it, its position there).
    positions: list[tuple[bytes, int]]
    # For each statement (request order): its stored JSON as spliced into the envelope,
    # and its actor's learner pseudonym.
    raws: list[bytes]
    learners: list[str]


class StatementTooLarge(Exception):
    """Statement ``index`` of a request is ``size`` bytes as stored, over ``limit``."""

    def __init__(self, index: int, size: int, limit: int) -> None:
        super().__init__(f"statement {index} is {size} bytes as stored; at most {limit}")
        self.index = index
        self.size = size
        self.limit = limit


class RequestEncoder:
    """All statements of one request → envelopes per learner, each encoded once.

    Same envelopes, same order and same bytes as a :class:`StatementPublisher` with an
    infinite linger fed the statements one by one and flushed (tested), for a fraction
    of the work: the school's authority and profile are taken once per request, each
    learner's pseudonym once, and each statement is serialized once (its bytes are
    spliced into the envelope's, see :func:`encode_envelope`).
    """

    def __init__(
        self,
        secret: bytes,
        profiles: Mapping[str, SchoolProfile] | None = None,
        max_per_envelope: int = 100,
        max_bytes: int = 256 * 1024,
        max_statement_bytes: int | None = None,
    ) -> None:
        self._stamp = _Stamp(secret, profiles)
        self.secret = secret
        self.max_per_envelope = max_per_envelope
        self.max_bytes = max_bytes
        # A statement larger than this as stored (JSON) raises StatementTooLarge.
        self.max_statement_bytes = max_statement_bytes

    def encode(
        self,
        school: str,
        statements: Sequence[dict[str, Any]],
        received_ms: int,
        *,
        version: str = "1.0.3",
        owned: bool = False,
        violations: Sequence[tuple[str, ...]] | None = None,
    ) -> EncodedRequest:
        """Canonicalize and group ``statements`` (validated) received at ``received_ms``.

        ``violations``: per statement, the rule ids a tolerant policy let it through with.

        ``owned``: the caller hands the statement dicts over (parsed from the request and
        used for nothing else), so they are completed in place instead of copied.
        """
        stamp = self._stamp
        authority = stamp.authority(school)
        course_and_cohort = stamp.profile(school).course_and_cohort
        secret = self.secret
        max_count = self.max_per_envelope
        max_bytes = self.max_bytes
        max_statement = self.max_statement_bytes
        dumps = orjson.dumps
        pseudonyms: dict[str, str] = {}
        # learner -> [entries, raw JSON of each, total bytes, request indexes]
        open_: dict[str, list[Any]] = {}
        closed: list[tuple[str, list[Any]]] = []
        stored_all: list[dict[str, Any]] = []
        raws_all: list[bytes] = []
        learners_all: list[str] = []
        for index, statement in enumerate(statements):
            stored = canonicalize(statement, authority=authority, stored_ms=received_ms, version=version,
                                  in_place=owned)  # fmt: skip
            stored_all.append(stored)
            key = learner_key(stored["actor"])
            learner = pseudonyms.get(key)
            if learner is None:
                learner = pseudonyms[key] = _hmac_hex(secret, key)
            course, cohort = course_and_cohort(stored)
            raw = dumps(stored)
            if max_statement is not None and len(raw) > max_statement:
                raise StatementTooLarge(index, len(raw), max_statement)
            raws_all.append(raw)
            learners_all.append(learner)
            group = open_.get(learner)
            if group is not None and group[2] + len(raw) > max_bytes:
                closed.append((learner, open_.pop(learner)))
                group = None
            if group is None:
                group = open_[learner] = [[], [], 0, []]
            group[0].append(StatementEntry(course, cohort, stored, violations[index] if violations else ()))
            group[1].append(raw)
            group[2] += len(raw)
            group[3].append(index)
            if len(group[0]) >= max_count:
                closed.append((learner, open_.pop(learner)))
        closed.extend(open_.items())
        envelopes: list[tuple[StatementEnvelope, bytes]] = []
        positions: list[tuple[bytes, int]] = [None] * len(stored_all)  # type: ignore[list-item]
        for learner, (entries, raws, _size, indexes) in closed:
            envelope = StatementEnvelope(school, learner, received_ms, tuple(entries))
            value = encode_envelope(envelope, raws)
            envelopes.append((envelope, value))
            for n, index in enumerate(indexes):
                positions[index] = (value, n)
        return EncodedRequest(stored_all, envelopes, positions, raws_all, learners_all)
