"""Pure parts of the alert notifier: decoding, payloads, signatures, routing, classification."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from datetime import UTC, datetime

import orjson
import pytest

from schemas.errors import InvalidStatement
from schemas.records import AlertRecord
from sinks.notifier import (
    ALERTNAME,
    SIGNATURE_HEADER,
    Handled,
    Target,
    alertmanager_alert,
    backoff_s,
    build_request,
    classify,
    decode_alert,
    idempotency_key,
    parse_retry_after,
    sign,
    skip_reason,
    summary_line,
    verify_signature,
    webhook_body,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def alert(state: str = "fired", **over) -> AlertRecord:
    base = {
        "alert_id": "a1b2c3",
        "school": "school-003",
        "course": "Algebra I",
        "cohort": "B",
        "state": state,
        "at_ms": T0 + 3_600_000 * (5 if state == "resolved" else 0),
        "fired_at_ms": T0,
        "learners": 31,
        "disengaged": 13,
        "share": 0.42,
        "threshold": 0.3,
        "disengaged_learners": ("p1", "p2"),
        "version": T0 + 3_600_000 * (5 if state == "resolved" else 0),
    }
    base.update(over)
    return AlertRecord(**base)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


# -- decoding -----------------------------------------------------------------------------
def test_notifier_decode_round_trips_an_alert_record():
    rec = alert()
    assert decode_alert(rec.encode()) == rec


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (b"not json", "alert.json"),
        (b"[1, 2]", "alert.shape"),
        (orjson.dumps({"alert_id": "x"}), "alert.missing"),
        (orjson.dumps({**orjson.loads(alert().encode()), "extra": 1}), "alert.unknown"),
        (orjson.dumps({**orjson.loads(alert().encode()), "share": "42%"}), "alert.type"),
        (None, "alert.json"),
    ],
)
def test_notifier_decode_rejects_undecodable_bytes_with_the_rule(raw, rule):
    with pytest.raises(InvalidStatement) as err:
        decode_alert(raw)
    assert err.value.rule == rule


def test_notifier_decode_rejects_an_unknown_state():
    raw = dataclasses.replace(alert(), state="firing").encode()
    with pytest.raises(InvalidStatement) as err:
        decode_alert(raw)
    assert err.value.rule == "alert.state"
    assert err.value.path == "$.state"


def test_notifier_decode_rejects_an_empty_alert_id():
    with pytest.raises(InvalidStatement) as err:
        decode_alert(alert(alert_id="").encode())
    assert err.value.rule == "alert.id"


# -- human text and webhook body ------------------------------------------------------------
def test_notifier_summary_line_of_a_fired_alert():
    assert summary_line(alert()) == "school-003 / Algebra I / cohort B: 42% of 31 learners disengaged (threshold 30%)"


def test_notifier_summary_line_of_a_resolved_alert_names_the_resolve_level():
    rec = alert("resolved", share=0.125, threshold=0.25, disengaged=4, learners=32)
    assert summary_line(rec) == (
        "school-003 / Algebra I / cohort B: resolved, 12.5% of 32 learners disengaged (resolves at or below 25%)"
    )


def test_notifier_webhook_body_carries_the_record_summary_and_key():
    rec = alert()
    doc = orjson.loads(webhook_body(rec))
    assert doc["schema"] == "learnpulse.alert/1"
    assert doc["idempotency_key"] == "a1b2c3:fired"
    assert doc["summary"] == summary_line(rec)
    # The record, every field, decodes back to itself.
    assert AlertRecord.decode(orjson.dumps(doc["alert"])) == rec


def test_notifier_webhook_body_is_the_same_bytes_for_the_same_record():
    # Redeliveries must be byte-identical (same signature, receivers may compare bodies).
    assert webhook_body(alert()) == webhook_body(decode_alert(alert().encode()))
    assert webhook_body(alert()) != webhook_body(alert("resolved"))


def test_notifier_webhook_body_names_at_most_the_targets_learners_and_counts_the_rest():
    # An alert of a large cohort names thousands of learners: a body of megabytes that common
    # receivers refuse (413), so staff would get nothing. The body names the first ones and
    # says how many it leaves out; the alerts table keeps every name.
    names = [f"{i:064x}" for i in range(2_500)]
    rec = alert(learners=5_000, disengaged=2_500, disengaged_learners=names)
    doc = orjson.loads(webhook_body(rec, max_learners=1_000))
    assert doc["alert"]["disengaged_learners"] == names[:1_000]
    assert doc["alert"]["disengaged"] == 2_500  # the figures stay whole
    assert doc["disengaged_learners_omitted"] == 1_500
    assert len(webhook_body(rec, max_learners=1_000)) < 100_000
    whole = orjson.loads(webhook_body(rec, max_learners=None))
    assert whole["alert"]["disengaged_learners"] == names and whole["disengaged_learners_omitted"] == 0
    # Within the cap nothing changes but the count, and the same record gives the same bytes.
    small = orjson.loads(webhook_body(alert(), max_learners=1_000))
    assert small["alert"]["disengaged_learners"] == list(alert().disengaged_learners)
    assert small["disengaged_learners_omitted"] == 0
    assert webhook_body(rec, max_learners=1_000) == webhook_body(decode_alert(rec.encode()), max_learners=1_000)


def test_notifier_webhook_request_uses_the_targets_cap():
    names = [f"{i:064x}" for i in range(50)]
    rec = alert(learners=100, disengaged=50, disengaged_learners=names)
    target = Target("staff", "webhook", "http://127.0.0.1:9/hook", max_learners=10)
    req = build_request(target, rec, severity="warn", now_ms=T0, ttl_ms=1)
    assert orjson.loads(req.body)["alert"]["disengaged_learners"] == names[:10]


def test_notifier_idempotency_key_is_shared_by_redeliveries_not_by_states():
    assert idempotency_key(alert()) == idempotency_key(alert(learners=99))  # same episode, same change
    assert idempotency_key(alert()) != idempotency_key(alert("resolved"))
    assert idempotency_key(alert()) != idempotency_key(alert(alert_id="other"))


# -- signatures -------------------------------------------------------------------------------
def test_notifier_sign_matches_rfc4231_test_case_2():
    # RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
    assert sign(b"Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_notifier_verify_signature_rejects_tampering_wrong_key_and_absence():
    body = webhook_body(alert())
    header = sign(b"s3cret", body)
    assert verify_signature(b"s3cret", body, header)
    assert not verify_signature(b"s3cret", body.replace(b"42", b"43"), header)
    assert not verify_signature(b"other", body, header)
    assert not verify_signature(b"s3cret", body, None)


def test_notifier_webhook_request_is_signed_only_with_a_secret():
    rec = alert()
    signed = build_request(
        Target("w", "webhook", "http://h/x", secret=b"k"), rec, severity="warning", now_ms=0, ttl_ms=0
    )
    plain = build_request(Target("w", "webhook", "http://h/x"), rec, severity="warning", now_ms=0, ttl_ms=0)
    assert signed.url == "http://h/x"
    assert signed.headers["Idempotency-Key"] == "a1b2c3:fired"
    assert signed.headers["Content-Type"] == "application/json"
    expected = "sha256=" + hmac.new(b"k", signed.body, hashlib.sha256).hexdigest()
    assert signed.headers[SIGNATURE_HEADER] == expected
    assert SIGNATURE_HEADER not in plain.headers
    assert plain.body == signed.body == webhook_body(rec)


# -- Alertmanager ------------------------------------------------------------------------------
def test_notifier_alertmanager_fired_alert_labels_and_times():
    rec = alert()
    now = T0 + 10 * 3_600_000
    a = alertmanager_alert(rec, "page", now_ms=now, ttl_ms=240_000)
    assert a["labels"] == {
        "alertname": ALERTNAME,
        "school": "school-003",
        "course": "Algebra I",
        "cohort": "B",
        "severity": "page",
    }
    assert ms(a["startsAt"]) == rec.fired_at_ms
    assert ms(a["endsAt"]) == now + 240_000  # kept alive by re-sends
    assert a["annotations"]["summary"] == summary_line(rec)
    assert a["annotations"]["alert_id"] == "a1b2c3"
    assert a["startsAt"].endswith("Z")


def test_notifier_alertmanager_resolved_alert_has_the_same_labels_and_ends_at_resolve_time():
    fired, resolved = alert(), alert("resolved")
    now = T0 + 24 * 3_600_000
    a_f = alertmanager_alert(fired, "warning", now_ms=now, ttl_ms=240_000)
    a_r = alertmanager_alert(resolved, "warning", now_ms=now, ttl_ms=240_000)
    assert a_r["labels"] == a_f["labels"]
    assert ms(a_r["startsAt"]) == fired.fired_at_ms
    assert ms(a_r["endsAt"]) == resolved.at_ms < now


def test_notifier_alertmanager_clamps_event_times_ahead_of_the_wall_clock():
    # A fast simulation runs ahead of wall time: a resolved alert must end now, not in the
    # future (it would stay active until then), and never before it starts.
    now = T0 - 3_600_000
    a = alertmanager_alert(alert("resolved"), "warning", now_ms=now, ttl_ms=240_000)
    assert ms(a["startsAt"]) == now
    assert ms(a["endsAt"]) == now
    f = alertmanager_alert(alert(), "warning", now_ms=now, ttl_ms=240_000)
    assert ms(f["startsAt"]) == now and ms(f["endsAt"]) == now + 240_000


def test_notifier_alertmanager_request_posts_a_list_to_api_v2():
    req = build_request(
        Target("alertmanager", "alertmanager", "http://am:9093/"), alert(), severity="warning", now_ms=T0, ttl_ms=1
    )
    assert req.url == "http://am:9093/api/v2/alerts"
    body = orjson.loads(req.body)
    assert isinstance(body, list) and len(body) == 1
    assert body[0]["labels"]["alertname"] == ALERTNAME
    assert "Idempotency-Key" not in req.headers


# -- routing ---------------------------------------------------------------------------------
def test_notifier_target_without_schools_takes_every_school():
    t = Target("w", "webhook", "http://h")
    assert t.accepts("school-001") and t.accepts("anything")


def test_notifier_target_with_schools_takes_only_those():
    t = Target("w", "webhook", "http://h", schools=frozenset({"school-001", "school-004"}))
    assert t.accepts("school-001") and t.accepts("school-004")
    assert not t.accepts("school-002")


# -- classification and backoff -----------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_notifier_classify_2xx_is_accepted(status):
    assert classify(status) == "accepted"


@pytest.mark.parametrize("status", [None, 500, 502, 503, 504, 408, 429])
def test_notifier_classify_no_answer_5xx_408_429_are_retried(status):
    assert classify(status) == "retry"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422, 301, 302, 307])
def test_notifier_classify_other_4xx_and_3xx_are_permanent(status):
    assert classify(status) == "permanent"


def test_notifier_backoff_doubles_and_is_capped():
    assert [backoff_s(n, 0.5, 4.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff_s(10_000, 0.5, 4.0) == 4.0  # no overflow on long outages


def test_notifier_backoff_honours_retry_after_within_the_cap():
    assert backoff_s(0, 0.5, 30.0, retry_after_s=10) == 10
    assert backoff_s(0, 0.5, 30.0, retry_after_s=3600) == 30.0
    assert backoff_s(5, 0.5, 30.0, retry_after_s=1) == 16.0  # the larger wait wins


def test_notifier_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("120") == 120.0
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# -- duplicates and stale records -----------------------------------------------------------------
def test_notifier_skip_nothing_for_a_new_cohort_or_the_next_state():
    fired, resolved = alert(), alert("resolved")
    assert skip_reason(None, fired) is None
    assert skip_reason(Handled(fired.alert_id, "fired", fired.version), resolved) is None


def test_notifier_skip_a_repeated_state_as_duplicate():
    fired = alert()
    assert skip_reason(Handled(fired.alert_id, "fired", fired.version), fired) == "duplicate"


def test_notifier_skip_fired_after_its_resolved_and_older_episodes_as_stale():
    fired, resolved = alert(), alert("resolved")
    assert skip_reason(Handled(resolved.alert_id, "resolved", resolved.version), fired) == "stale"
    older = alert(alert_id="old", fired_at_ms=T0 - 10**8, version=T0 - 10**8, at_ms=T0 - 10**8)
    assert skip_reason(Handled(fired.alert_id, "fired", fired.version), older) == "stale"


def test_notifier_skip_nothing_for_a_new_episode_after_a_resolved_one():
    resolved = alert("resolved")
    again = alert(alert_id="next", fired_at_ms=resolved.at_ms + 3_600_000, at_ms=resolved.at_ms + 3_600_000,
                  version=resolved.at_ms + 3_600_000)  # fmt: skip
    assert skip_reason(Handled(resolved.alert_id, "resolved", resolved.version), again) is None
