from datetime import UTC, datetime, timedelta, timezone

from schemas.clickhouse.progress import caught_up_ms, read_ms

_AT = datetime(2026, 12, 7, 21, 0, 5, 123000)
_AT_MS = 1_796_677_205_123


def test_read_ms_takes_every_form_a_datetime64_comes_back_in():
    assert read_ms(_AT) == _AT_MS  # clickhouse-driver: naive, the column's zone (UTC)
    assert read_ms(_AT.replace(tzinfo=UTC)) == _AT_MS
    assert read_ms(_AT.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))) == _AT_MS
    assert read_ms("2026-12-07 21:00:05.123") == _AT_MS  # chDB's text
    assert read_ms("2026-12-07 21:00:05.123456") == _AT_MS
    assert read_ms("2026-12-07T21:00:05.1") == _AT_MS - 23
    assert read_ms("2026-12-07 21:00:05") == _AT_MS - 123
    assert read_ms(_AT_MS) == _AT_MS


def test_caught_up_ms_prefers_the_ms_column_and_falls_back_to_whole_seconds():
    assert caught_up_ms(_AT_MS, _AT.replace(microsecond=0)) == _AT_MS
    assert caught_up_ms(0, _AT.replace(microsecond=0)) == _AT_MS - 123  # a row from before migration 0024
    assert caught_up_ms(0, "1970-01-01 00:00:00") == 0  # never caught up
    assert caught_up_ms(None, "1970-01-01 00:00:00.000") == 0
