"""One write of the Statement Resource: reserve ids, Kafka transaction, confirm, answer.

The accepted-id index (``schemas.lrs_store.StatementIndex``, shared by every gateway of a
deployment) decides whether an offered id is new, the same statement again (not stored
again: 204/200), another statement with that id (409), or still held by a write whose
Kafka outcome is unknown (wait; 503 with ``Retry-After`` if it stays held). Nothing here
needs ClickHouse: writes keep being accepted while it is down. The protocol and what each
crash leaves behind are in :mod:`producers.lrsstore.statement_index`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from schemas import metrics
from schemas.lrs_store import AcceptedStatement, Claim, Holder, IndexEntry
from schemas.xapi.compare import same_as_compared, same_statement
from schemas.xapi.validate import VOIDED

from ..publisher import RequestEncoder, StatementTooLarge
from .idindex import IndexClient
from .intake import count_tolerated
from .protocol import XapiError, bad_request
from .sender import KafkaUnavailable, OutcomeUnknown, RecordRefused, TransactionalSender

log = logging.getLogger("learnpulse.gateway.writes")

# Backoff while an offered id is held by another write (its Kafka commit is in flight).
_HELD_FIRST_WAIT_S = 0.005
_HELD_MAX_WAIT_S = 0.25
# Attempts to confirm after Kafka acknowledged (the statements are stored by then).
_CONFIRM_ATTEMPTS = 3
# Metric children every write touches, looked up once.
_RESERVE_SECONDS = metrics.GATEWAY_INDEX_SECONDS.labels("reserve")
_CONFIRM_SECONDS = metrics.GATEWAY_INDEX_SECONDS.labels("confirm")
_NEW_IDS = metrics.GATEWAY_INDEX_VERDICTS.labels("new")


def is_voiding(statement: dict[str, Any]) -> bool:
    obj = statement.get("object")
    return (
        (statement.get("verb") or {}).get("id") == VOIDED
        and isinstance(obj, dict)
        and obj.get("objectType") == "StatementRef"
    )


class InFlight:
    """``stored`` (epoch ms) of the writes not yet answered, and the oldest of them.

    Asked on every answer (Consistent-Through), so the oldest is kept in a heap: a min over
    every write in flight cost O(n) per request, quadratic with 1,000 clients. Finished
    writes leave the heap lazily (when they reach its top, or when it holds mostly them).
    """

    def __init__(self) -> None:
        self._stored: dict[int, int] = {}
        self._heap: list[tuple[int, int]] = []

    def __len__(self) -> int:
        return len(self._stored)

    def add(self, token: int, stored_ms: int) -> None:
        self._stored[token] = stored_ms
        heapq.heappush(self._heap, (stored_ms, token))

    def remove(self, token: int) -> None:
        self._stored.pop(token, None)
        if len(self._heap) > 2 * len(self._stored) + 64:
            self._heap = [(ms, t) for t, ms in self._stored.items()]
            heapq.heapify(self._heap)
        else:
            self._drop_finished()

    def oldest_ms(self) -> int | None:
        self._drop_finished()
        return self._heap[0][0] if self._heap else None

    def _drop_finished(self) -> None:
        heap, stored = self._heap, self._stored
        while heap and heap[0][1] not in stored:
            heapq.heappop(heap)


class StatementWriter:
    """Stores one request's statements all-or-nothing, exactly once per id across gateways."""

    def __init__(
        self,
        index: IndexClient,
        sender: TransactionalSender,
        encoder: RequestEncoder,
        gateway: str,
        clock_ms: Callable[[], int],
    ) -> None:
        self.index = index
        self.sender = sender
        self.encoder = encoder
        # Stable across restarts (the Kafka transactional id): a restart frees its orphans.
        self.gateway = gateway
        self.incarnation = uuid.uuid4().hex
        self.clock_ms = clock_ms
        self._requests = itertools.count(1)
        # request token -> stored (epoch ms) of writes not yet answered: Consistent-Through
        # never passes them (they may reach Kafka later than the sink's progress says).
        self.in_flight = InFlight()
        p = sender.params
        # A reservation older than this has no live holder: its Kafka transaction is
        # decided (the broker aborts it after transaction_timeout_ms) and the holder has
        # given up waiting for it (timeout_s + outcome_timeout_s).
        self.stale_after_ms = p.transaction_timeout_ms + int((p.timeout_s + p.outcome_timeout_s) * 1000) + 10_000
        # How long a write waits for an id held by another write before answering 503.
        self.held_wait_s = p.timeout_s

    def oldest_in_flight_ms(self) -> int | None:
        return self.in_flight.oldest_ms()

    async def release_orphans(self) -> int:
        """Free what an earlier incarnation of this gateway left reserved (call once Kafka fenced it)."""
        freed = await self.index.release_orphans(self.gateway, self.incarnation)
        if freed:
            metrics.GATEWAY_INDEX_ORPHANS.labels("freed_on_restart").inc(freed)
            log.warning("freed %d statement ids a previous run of this gateway left reserved", freed)
        return freed

    async def write(
        self,
        school: str,
        version: str,
        statements: list[dict[str, Any]],
        before_send: Callable[[list[dict[str, Any]], int], Awaitable[None]] | None = None,
        violations: list[tuple[str, ...]] | None = None,
    ) -> list[str] | None:
        """Store the statements; their ids in request order, or None if every one existed.

        ``before_send(new statements, stored_ms)`` runs after the ids are reserved and
        before the Kafka transaction (attachment contents: never readable without them).
        ``violations``: per statement, the rule ids its credential's policy tolerated.
        """
        for s in statements:
            if "id" not in s:
                s["id"] = str(uuid.uuid4())  # the LRS assigns it (Data §2.4.1); needed to reserve
        ids = [s["id"] for s in statements]
        sids = [sid.lower() for sid in ids]
        voiding = [is_voiding(s) for s in statements]
        targets = {s["object"]["id"].lower(): i for i, s in enumerate(statements) if voiding[i]}
        if targets:
            await self._check_voiding_targets(school, sids, voiding, targets)
        token = next(self._requests)
        holder = Holder(self.gateway, self.incarnation, token)
        received = self.clock_ms()
        self.in_flight.add(token, received)
        try:
            new = await self._reserve(school, holder, statements, sids)
            if not new:
                return None
            kept = [violations[i] for i in new] if violations and any(violations) else None
            try:
                await self._send(school, holder, [statements[i] for i in new], [sids[i] for i in new], received,
                                 [voiding[i] for i in new], before_send, kept)  # fmt: skip
            except StatementTooLarge as err:
                metrics.GATEWAY_REFUSALS.labels("statement.too-large").inc()
                at = new[err.index]
                raise XapiError(
                    413, "statement.too-large",
                    f"statement {at} is {err.size} bytes as stored; this LRS accepts at most {err.limit} bytes per "
                    "statement (one Kafka message): send large content as an attachment",
                    f"$[{at}]",
                ) from err  # fmt: skip
        finally:
            self.in_flight.remove(token)
        metrics.GATEWAY_STATEMENTS.inc(len(new))
        if kept:
            count_tolerated("gateway", kept)
        return ids

    async def _check_voiding_targets(
        self, school: str, sids: list[str], voiding: list[bool], targets: dict[str, int]
    ) -> None:
        """A voiding statement cannot target a voiding statement (Data §2.3.2)."""
        batch_voiding = {sid for sid, v in zip(sids, voiding) if v}
        known = await self.index.get(school, [t for t in targets if t not in batch_voiding])
        for target, i in targets.items():
            if target in batch_voiding or (target in known and known[target].voids):
                raise bad_request(
                    "voiding.target-is-voiding",
                    f"statement {target} is itself a voiding statement and cannot be voided (Data §2.3.2)",
                    f"$[{i}].object.id",
                )

    async def _reserve(self, school: str, holder: Holder, statements: list[dict[str, Any]], sids: list[str]) -> list[int]:
        """Reserve the ids; the request positions that are NEW (the others are SAME)."""
        deadline = time.monotonic() + self.held_wait_s
        wait = _HELD_FIRST_WAIT_S
        while True:
            now = self.clock_ms()
            started = time.perf_counter()
            others = await self.index.reserve(Claim(school, holder, sids), now, now - self.stale_after_ms)
            _RESERVE_SECONDS.observe(time.perf_counter() - started)
            if not others:
                _NEW_IDS.inc(len(sids))
                return list(range(len(sids)))
            mine = [sid for sid in sids if sid not in others]
            held = [sid for sid, e in others.items() if not e.accepted]
            try:
                self._compare(others, statements, sids)
            except XapiError:
                await self.index.release(school, holder, mine)
                raise
            if not held:
                metrics.GATEWAY_INDEX_VERDICTS.labels("same").inc(len(others))
                _NEW_IDS.inc(len(mine))
                return [i for i, sid in enumerate(sids) if sid not in others]
            # Another write holds some ids until Kafka answers it: let go of ours (two
            # requests must never wait for each other) and look again shortly.
            metrics.GATEWAY_INDEX_VERDICTS.labels("held").inc(len(held))
            await self.index.release(school, holder, mine)
            if time.monotonic() + wait > deadline:
                raise XapiError(
                    503, "statement.held",
                    f"statement {held[0]} is being stored by another request whose outcome is not known yet; "
                    "retry with the same statement ids",
                    headers={"Retry-After": "5"},
                )  # fmt: skip
            await asyncio.sleep(wait)
            wait = min(wait * 2, _HELD_MAX_WAIT_S)

    @staticmethod
    def _compare(others: dict[str, IndexEntry], statements: list[dict[str, Any]], sids: list[str]) -> None:
        """409 if an accepted id comes with other content (statements are immutable)."""
        for i, sid in enumerate(sids):
            e = others.get(sid)
            if e is None or not e.accepted:
                continue
            if e.body is not None:
                same = same_statement(orjson.loads(e.body), statements[i])
            elif e.compare_key and e.timestamp_ms is not None:  # pruned
                same = same_as_compared(statements[i], e.statement_id, e.compare_key, e.timestamp_ms)
            else:
                continue
            if not same:
                metrics.GATEWAY_INDEX_VERDICTS.labels("conflict").inc()
                raise XapiError(
                    409, "statement.conflict",
                    f"statement {statements[i]['id']} already exists with different content; statements are "
                    "immutable (Communication §2.1.2.s2.b5)",
                    f"$[{i}].id",
                )  # fmt: skip

    async def _send(
        self,
        school: str,
        holder: Holder,
        new: list[dict[str, Any]],
        sids: list[str],
        received: int,
        voiding: list[bool],
        before_send: Callable[[list[dict[str, Any]], int], Awaitable[None]] | None,
        violations: list[tuple[str, ...]] | None,
    ) -> None:
        # The request owns its parsed statements: completed in place, not copied.
        try:
            encoded = self.encoder.encode(school, new, received, owned=True, violations=violations)
        except StatementTooLarge:
            await self.index.release(school, holder, sids)
            raise
        accepted = [
            AcceptedStatement(sid, raw, received, learner, st["object"]["id"].lower() if v else "")
            for sid, raw, learner, st, v in zip(sids, encoded.raws, encoded.learners, new, voiding, strict=True)
        ]
        try:
            if before_send is not None:
                await before_send(new, received)
            job = self.sender.submit(encoded.envelopes)
        except BaseException:
            await self.index.release(school, holder, sids)
            raise
        del encoded, new
        try:
            await self.sender.wait(job)
        except KafkaUnavailable as err:
            await self.index.release(school, holder, sids)  # certain that nothing was written
            raise XapiError(503, "kafka.unavailable", f"statements not stored, nothing was written: {err}",
                            headers={"Retry-After": "5"}) from err  # fmt: skip
        except RecordRefused as err:
            # This request's own records, refused alone (others in its transaction were
            # committed without them): nothing of it was written.
            await self.index.release(school, holder, sids)
            if err.too_large:
                metrics.GATEWAY_REFUSALS.labels("kafka.message-too-large").inc()
                raise XapiError(413, "kafka.message-too-large",
                                f"statements not stored: {err}; Kafka takes at most {err.limit} bytes per message "
                                "(send fewer or smaller statements)") from err  # fmt: skip
            raise XapiError(400, "kafka.record-refused", f"statements not stored: {err}") from err
        except OutcomeUnknown as err:
            # Kept reserved until Kafka decides; then confirmed or freed.
            job.settled.add_done_callback(
                lambda f: asyncio.ensure_future(self._settle(school, holder, accepted, sids, f.result()))
            )
            raise XapiError(503, "kafka.outcome-unknown",
                            "Kafka did not confirm in time; the statements may or may not be stored. Retry with the "
                            "same statement ids (ids make retries safe).",
                            headers={"Retry-After": "10"}) from err  # fmt: skip
        await self._confirm(school, holder, accepted)

    async def _settle(
        self, school: str, holder: Holder, accepted: list[AcceptedStatement], sids: list[str], committed: bool
    ) -> None:
        if committed:
            await self._confirm(school, holder, accepted)
        else:
            await self.index.release(school, holder, sids)

    async def _confirm(self, school: str, holder: Holder, accepted: list[AcceptedStatement]) -> None:
        """Record as accepted what Kafka acknowledged, before the client is answered."""
        for attempt in range(_CONFIRM_ATTEMPTS):
            started = time.perf_counter()
            try:
                await self.index.confirm(school, holder, accepted, self.clock_ms())
                _CONFIRM_SECONDS.observe(time.perf_counter() - started)
                return
            except Exception as err:  # noqa: BLE001 - the statements are stored whatever the index says
                if attempt == _CONFIRM_ATTEMPTS - 1:
                    # Stored in Kafka (the answer stays 200), but the ids stay reserved: a
                    # re-send waits for them to go stale, then is collapsed by the sinks.
                    metrics.GATEWAY_INDEX_CONFIRM_FAILURES.inc(len(accepted))
                    log.error("statement index: %d acknowledged statements not confirmed: %r", len(accepted), err)
                    return
                await asyncio.sleep(0.1 * (attempt + 1))
